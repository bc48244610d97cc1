"""remove_background through rembg's real session classes, with a tiny generated ONNX model.

The tiny model computes sigmoid(8 * (red - blue)) on the normalised input, so a red subject on a
blue background has a predictable mask: 1 on the subject, 0 on the background. One file, copied
under each session name (each in its own directory, as the bundle store keeps them), serves all
three quality levels. pooch.retrieve is made to fail for the whole module: nothing may download.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from pipelines.base import ModelUnavailable, Picture, PipelineError, StepContext
from pipelines.models.loaders import load_model
from pipelines.models.rembg_sessions import load_session, warm_up_rembg
from pipelines.steps import remove_background
from pipelines.steps.remove_background import MODEL_FOR_QUALITY, STEP
from pipelines.tools import InputInfo, scaled
from pipelines.tools.remove_bg import resize_factor
from tests.server_process import ROOT
from tests.tiny_onnx import write_tiny_onnx

RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
DOWNLOADS: list[tuple[Any, ...]] = []


def _refuse_download(*args: Any, **kwargs: Any) -> None:
    DOWNLOADS.append(args)
    raise AssertionError(f"rembg tried to download {args}")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rembg-bundle")
    return {model_id: write_tiny_onnx(root / model_id / f"{model_id}.onnx") for model_id in MODEL_FOR_QUALITY.values()}


@pytest.fixture(scope="module", autouse=True)
def no_downloads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """pooch fails loudly, and rembg's own model homes point at an empty directory."""
    import pooch

    empty_home = str(tmp_path_factory.mktemp("empty-u2net-home"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pooch, "retrieve", _refuse_download)
        patch.setenv("U2NET_HOME", empty_home)
        patch.setenv("REMBG_HOME", empty_home)
        yield
    assert DOWNLOADS == []


class LoadedSessions:
    """A ModelProvider over sessions loaded once, as the worker's InstalledModels keeps them."""

    def __init__(self, files: dict[str, Path]):
        self.sessions = {model_id: load_model("rembg", path, "cpu") for model_id, path in files.items()}

    def get(self, model_id: str) -> Any:
        return self.sessions[model_id]


@pytest.fixture(scope="module")
def models(model_files: dict[str, Path]) -> LoadedSessions:
    return LoadedSessions(model_files)


def context(models: Any) -> StepContext:
    return StepContext(report=lambda fraction, stage: None, is_cancelled=lambda: False, models=models)


def red_square(width: int = 96, height: int = 64) -> Picture:
    """Blue everywhere, a red square in the middle third."""
    rgb = np.empty((height, width, 3), np.float32)
    rgb[:] = BLUE
    rgb[height // 3: 2 * height // 3, width // 3: 2 * width // 3] = RED
    return Picture(rgb=rgb, info={"format": "png", "icc_profile": b"profile"})


def params(**overrides: Any) -> dict[str, Any]:
    base = {"quality": "medium", "returnMask": False, "alphaMatting": False, "background": None, "asExtra": False}
    return base | overrides


def run(models: Any, image: Picture, **overrides: Any) -> Any:
    return STEP.run(image, STEP.checked(params(**overrides)), context(models))


def assert_square_mask(mask: np.ndarray) -> None:
    height, width = mask.shape
    assert mask[height // 2, width // 2] > 0.95
    assert mask[2, 2] < 0.05 and mask[-3, -3] < 0.05
    assert 0.08 < np.mean(mask >= 0.5) < 0.14  # the square is a ninth of the image


@pytest.mark.parametrize("quality", ["low", "medium", "high"])
def test_every_quality_cuts_out_the_subject_with_its_model(models: LoadedSessions, quality: str) -> None:
    image = red_square()
    outcome = run(models, image, quality=quality)
    assert outcome.image.rgb.shape == image.rgb.shape
    np.testing.assert_array_equal(outcome.image.rgb, image.rgb)  # colours kept, only alpha added
    assert_square_mask(outcome.image.alpha)
    report = outcome.measurements["backgroundRemoval"]
    assert report["quality"] == quality and report["model"] == MODEL_FOR_QUALITY[quality]
    assert report["resizedTo"] is None and 0.08 < report["foregroundFraction"] < 0.14


def test_session_classes_are_rembgs_own(models: LoadedSessions) -> None:
    from rembg.sessions import sessions

    from pipelines.precision import cpu_has_bf16_units

    # The tiny model's bf16 mask matches ONNX Runtime's (a single convolution), so where the CPU
    # has bf16 units the graph runs in torch; the pre- and post-processing stay rembg's.
    expected = ["torch-bfloat16-cpu"] if cpu_has_bf16_units() else ["CPUExecutionProvider"]
    for model_id, session in models.sessions.items():
        assert isinstance(session, sessions[model_id])
        assert session.inner_session.get_providers() == expected


def test_return_mask_is_greyscale_without_alpha(models: LoadedSessions) -> None:
    outcome = run(models, red_square(), returnMask=True)
    mask = outcome.image
    assert mask.alpha is None and mask.bit_depth == 8 and "icc_profile" not in mask.info
    assert np.array_equal(mask.rgb[..., 0], mask.rgb[..., 1]) and np.array_equal(mask.rgb[..., 0], mask.rgb[..., 2])
    assert_square_mask(mask.rgb[..., 0])


def test_background_colour_replaces_transparency(models: LoadedSessions) -> None:
    outcome = run(models, red_square(), background="#00ff80")
    assert outcome.image.alpha is None
    np.testing.assert_allclose(outcome.image.rgb[2, 2], [0.0, 1.0, 128 / 255], atol=0.05)
    np.testing.assert_allclose(outcome.image.rgb[32, 48], RED, atol=0.05)


def test_input_alpha_is_multiplied_into_the_cutout(models: LoadedSessions) -> None:
    image = red_square()
    alpha = np.ones(image.rgb.shape[:2], np.float32)
    alpha[:, :48] = 0.0
    outcome = run(models, Picture(rgb=image.rgb, alpha=alpha))
    assert outcome.image.alpha[32, 40] == 0.0 and outcome.image.alpha[32, 56] > 0.95


def test_matches_rembg_remove_with_the_same_session(models: LoadedSessions) -> None:
    from PIL import Image
    from rembg import remove

    image = red_square()
    session = models.get("u2netp")
    theirs = remove(Image.fromarray(remove_background.to_uint8(image.rgb)), session=session, only_mask=True)
    ours = run(models, image, quality="low").image.alpha
    np.testing.assert_array_equal(np.round(ours * 255).astype(np.uint8), np.asarray(theirs))


@pytest.mark.parametrize("quality, expected", [("low", [2048, 10]), ("medium", [2048, 10]), ("high", None)])
def test_wide_input_is_resized_to_the_quality_limit(models: LoadedSessions, quality: str,
                                                    expected: list[int] | None) -> None:
    outcome = run(models, red_square(2100, 10), quality=quality)
    assert outcome.measurements["backgroundRemoval"]["resizedTo"] == expected
    promised = scaled(InputInfo(2100, 10, "png"), resize_factor({"quality": quality}, InputInfo(2100, 10, "png")))
    assert (outcome.image.width, outcome.image.height) == promised  # what the tool told the client


def test_resize_keeps_proportions_and_alpha(models: LoadedSessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(remove_background.MAX_INPUT_SIDE, "medium", 48)
    image = red_square(96, 64)
    image = Picture(rgb=image.rgb, alpha=np.ones((64, 96), np.float32))
    outcome = run(models, image)
    assert outcome.measurements["backgroundRemoval"]["resizedTo"] == [48, 32]
    assert outcome.image.rgb.shape == (32, 48, 3) and outcome.image.alpha.shape == (32, 48)
    assert_square_mask(outcome.image.alpha)


def test_as_extra_returns_the_input_and_the_cutout(models: LoadedSessions) -> None:
    image = red_square()
    outcome = run(models, image, asExtra=True, quality="low")
    assert outcome.image is image
    cutout = outcome.extras["background_removed"]
    assert cutout.alpha is not None
    assert_square_mask(cutout.alpha)


def test_alpha_matting_refines_the_edges(models: LoadedSessions) -> None:
    outcome = run(models, red_square(), alphaMatting=True, quality="low")
    assert outcome.measurements["backgroundRemoval"]["alphaMatting"] == "applied"
    assert_square_mask(outcome.image.alpha)


def test_alpha_matting_without_sure_background_keeps_the_model_mask(models: LoadedSessions) -> None:
    image = red_square()
    image.rgb[:] = RED
    image.rgb[:, :3] = BLUE  # a background strip thinner than the trimap's erosion
    outcome = run(models, image, alphaMatting=True, quality="low")
    assert outcome.measurements["backgroundRemoval"]["alphaMatting"].startswith("not applied: ")
    assert outcome.image.alpha[32, 48] > 0.95


def test_missing_model_file_is_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        load_model("rembg", tmp_path / "u2netp" / "u2netp.onnx", "cpu")
    assert caught.value.details["bundle"] == "background-removal"


def test_file_not_named_after_a_session_is_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="not a rembg session name"):
        load_session(write_tiny_onnx(tmp_path / "model.onnx"), "cpu")


def test_corrupt_model_file_is_model_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "u2netp.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        load_session(path, "cpu")


def test_loading_leaves_the_environment_alone(model_files: dict[str, Path]) -> None:
    before = dict(os.environ)
    load_session(model_files["birefnet-general"], "cpu")
    assert dict(os.environ) == before


def test_cuda_device_without_cuda_provider_runs_on_cpu(model_files: dict[str, Path]) -> None:
    session = load_session(model_files["u2netp"], "cuda:0")  # this onnxruntime has no CUDA provider
    assert session.inner_session.get_providers() == ["CPUExecutionProvider"]


def test_cuda_provider_is_chosen_when_onnxruntime_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    from pipelines.models import rembg_sessions

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert rembg_sessions._providers("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert rembg_sessions._providers("cpu") == ["CPUExecutionProvider"]


def test_threads_follow_the_workers_share(model_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.models.rembg_sessions import load_onnxruntime_session

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the pool puts in a worker's environment
    session = load_onnxruntime_session(model_files["u2netp"], "cpu")
    assert session.inner_session.get_session_options().intra_op_num_threads == 1


def test_no_models_is_model_unavailable() -> None:
    with pytest.raises(ModelUnavailable):
        run(None, red_square())


@pytest.mark.parametrize("overrides", [{"quality": "ultra"}, {"background": "red"}])
def test_invalid_parameters_are_refused(models: LoadedSessions, overrides: dict[str, Any]) -> None:
    with pytest.raises(PipelineError) as caught:
        run(models, red_square(), **overrides)
    assert caught.value.code == "INVALID_PARAMS"  # the step's spec refuses it, before any work
    assert [problem["field"] for problem in caught.value.details["fields"]] == list(overrides)


def test_tiny_model_computes_the_documented_function(model_files: dict[str, Path]) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_files["u2netp"]), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).normal(size=(2, 3, 5, 7)).astype(np.float32)
    (mask,) = session.run(None, {"input": batch})
    np.testing.assert_allclose(mask, 1 / (1 + np.exp(-8 * (batch[:, :1] - batch[:, 2:3]))), atol=1e-6)


def test_warm_up_is_cheap_the_second_time() -> None:
    first = warm_up_rembg()
    assert warm_up_rembg() == first


def test_modules_import_neither_rembg_nor_onnxruntime() -> None:
    code = ("import sys, pipelines.steps.remove_background, pipelines.models.rembg_sessions; "
            "print(sorted({'rembg', 'onnxruntime', 'pymatting'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT)
    assert result.stdout.strip() == "[]"
