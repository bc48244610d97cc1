"""rembg's ONNX graphs run by torch (pipelines/models/onnx_torch.py) against ONNX Runtime itself.

The models are generated here: u2netp at its real shapes with random weights (tests/rembg_models.py,
4.6 MB, a few seconds) and small graphs for single operators, all written by torch's ONNX exporter
as rembg's files were. bf16 decisions are forced on (``cpu_has_bf16_units``) so the tests decide
the same on every CPU; torch runs bf16 everywhere, only slower without AMX.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipelines import precision
from pipelines.models import rembg_sessions
from pipelines.models.onnx_torch import TorchOnnxSession, UnsupportedGraph
from pipelines.models.precision_cache import PrecisionCache
from pipelines.models.rembg_sessions import load_onnxruntime_session, load_session
from tests.rembg_models import calibration_batch, export_onnx, write_rembg_onnx
from tests.tiny_onnx import write_tiny_onnx


@pytest.fixture(scope="module")
def u2netp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rembg_onnx(tmp_path_factory.mktemp("u2netp") / "u2netp.onnx", "u2netp")


@pytest.fixture(autouse=True)
def bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)


def onnxruntime_outputs(path: Path, batch: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})


def torch_outputs(path: Path, batch: np.ndarray, dtype: torch.dtype = torch.float32) -> list[np.ndarray]:
    session = TorchOnnxSession(path, "cpu", dtype)
    return session.run(None, {session.get_inputs()[0].name: batch})


def export(module: nn.Module, path: Path, side: int = 24, **options: object) -> Path:
    return export_onnx(module, path, side, **options)


def operator_types(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_u2netp_in_torch_fp32_gives_onnxruntimes_outputs(u2netp_file: Path) -> None:
    batch = calibration_batch(320).numpy()
    reference = onnxruntime_outputs(u2netp_file, batch)
    ours = torch_outputs(u2netp_file, batch)
    assert [a.shape for a in ours] == [a.shape for a in reference] == [(1, 1, 320, 320)] * 7
    for mine, theirs in zip(ours, reference):
        # fp32 sums in another order differ by ~1e-6, which this random network's depth amplifies
        # to ~1e-4 (measured up to 1.8e-4); a wrong operator moves outputs by tenths.
        assert np.abs(mine - theirs).max() < 1e-3
    # The file exercises the shape arithmetic around Resize, pooling with ceil_mode, concatenation.
    assert {"Resize", "Shape", "Slice", "MaxPool", "Concat"} <= operator_types(u2netp_file)


class ConvNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.norm = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.norm.running_mean.uniform_(-1, 1)
        self.norm.running_var.uniform_(0.5, 2)
        self.norm.weight.data.uniform_(0.5, 1.5)
        self.norm.bias.data.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(F.max_pool2d(torch.relu(self.norm(self.conv(x))), 3, stride=2, ceil_mode=True))


def test_batch_norm_is_folded_into_its_convolution(tmp_path: Path) -> None:
    path = export(ConvNorm(), tmp_path / "norm.onnx", training=torch.onnx.TrainingMode.PRESERVE,
                  do_constant_folding=False)
    assert "BatchNormalization" in operator_types(path)
    session = TorchOnnxSession(path, "cpu", torch.float32)
    assert "BatchNormalization" not in {node.op for node in session.nodes}
    batch = np.random.default_rng(0).normal(size=(1, 3, 24, 24)).astype(np.float32)
    np.testing.assert_allclose(torch_outputs(path, batch)[0], onnxruntime_outputs(path, batch)[0], atol=1e-5)


class Upsampler(nn.Module):
    def __init__(self, mode: str, align_corners: bool | None, size: tuple[int, int] | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=2, dilation=2)
        self.mode, self.align_corners, self.size = mode, align_corners, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = None if self.size else 2.0
        return F.interpolate(self.conv(x), size=self.size, scale_factor=scale, mode=self.mode,
                             align_corners=self.align_corners)


@pytest.mark.parametrize("mode, align_corners, size", [("nearest", None, None), ("bilinear", False, None),
                                                        ("bilinear", True, None), ("bilinear", False, (37, 41))])
def test_resize_modes_match_onnxruntime(tmp_path: Path, mode: str, align_corners: bool | None,
                                        size: tuple[int, int] | None) -> None:
    torch.manual_seed(1)
    path = export(Upsampler(mode, align_corners, size), tmp_path / "resize.onnx")
    batch = np.random.default_rng(1).normal(size=(1, 3, 24, 24)).astype(np.float32)
    np.testing.assert_allclose(torch_outputs(path, batch)[0], onnxruntime_outputs(path, batch)[0], atol=1e-5)


class WithErf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(self.conv(x))


def test_a_graph_with_an_unknown_operator_stays_on_onnxruntime(tmp_path: Path) -> None:
    path = export(WithErf(), tmp_path / "u2netp" / "u2netp.onnx")
    with pytest.raises(UnsupportedGraph, match="Erf"):
        TorchOnnxSession(path)
    assert load_session(path, "cpu").inner_session.get_providers() == ["CPUExecutionProvider"]


def test_a_file_that_is_not_onnx_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "u2netp.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(UnsupportedGraph):
        TorchOnnxSession(path)


def test_bf16_runs_where_its_mask_matches_and_the_decision_is_kept(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_tiny_onnx(tmp_path / "u2netp" / "u2netp.onnx")
    cache = PrecisionCache(tmp_path / "decisions.json")
    session = load_session(path, "cpu", cache)
    assert session.inner_session.get_providers() == ["torch-bfloat16-cpu"]
    [decision] = json.loads(cache.path.read_text()).values()
    assert decision["name"] == "bf16" and decision["calibration_psnr_db"] >= precision.BF16_MIN_PSNR_DB

    def measure_again(*args: object) -> None:
        raise AssertionError("the decision was measured again")
    monkeypatch.setattr(rembg_sessions, "bf16_decision", measure_again)
    assert load_session(path, "cpu", cache).inner_session.get_providers() == ["torch-bfloat16-cpu"]


def test_bf16_is_refused_where_its_mask_differs(u2netp_file: Path, tmp_path: Path) -> None:
    # Random weights at depth are chaotic: bf16 rounding moves the mask by tens of levels (measured
    # 22 dB against ONNX Runtime), far below the bar, so ONNX Runtime keeps the model.
    cache = PrecisionCache(tmp_path / "decisions.json")
    session = load_session(u2netp_file, "cpu", cache)
    assert session.inner_session.get_providers() == ["CPUExecutionProvider"]
    [decision] = json.loads(cache.path.read_text()).values()
    assert decision["name"] == "fp32" and decision["calibration_psnr_db"] < precision.BF16_MIN_PSNR_DB


def test_a_stored_onnxruntime_decision_does_not_build_the_torch_graph(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = export(WithErf(), tmp_path / "u2netp" / "u2netp.onnx")
    cache = PrecisionCache(tmp_path / "decisions.json")
    assert load_session(path, "cpu", cache).inner_session.get_providers() == ["CPUExecutionProvider"]
    assert [d["name"] for d in json.loads(cache.path.read_text()).values()] == ["fp32"]

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the torch graph was built again")
    monkeypatch.setattr("pipelines.models.onnx_torch.TorchOnnxSession", no_build)
    assert load_session(path, "cpu", cache).inner_session.get_providers() == ["CPUExecutionProvider"]


def test_no_bf16_units_or_cuda_means_onnxruntime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_tiny_onnx(tmp_path / "u2netp" / "u2netp.onnx")
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: False)
    assert load_session(path, "cpu").inner_session.get_providers() == ["CPUExecutionProvider"]
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    assert load_session(path, "cuda:0").inner_session.get_providers() == ["CPUExecutionProvider"]


def test_the_torch_session_answers_rembgs_calls(tmp_path: Path) -> None:
    path = write_tiny_onnx(tmp_path / "u2netp" / "u2netp.onnx")
    reference = load_onnxruntime_session(path, "cpu").inner_session
    ours = TorchOnnxSession(path, "cpu", torch.float32)
    assert [port.name for port in ours.get_inputs()] == [port.name for port in reference.get_inputs()]
    assert [port.name for port in ours.get_outputs()] == [port.name for port in reference.get_outputs()]
    batch = np.random.default_rng(2).normal(size=(1, 3, 16, 20)).astype(np.float32)
    feeds: dict[str, np.ndarray] = {"input": batch}
    first: Callable[[object], np.ndarray] = lambda session: session.run(None, feeds)[0]  # noqa: E731
    np.testing.assert_allclose(first(ours), first(reference), atol=1e-6)


def test_intermediates_are_freed_once_read_for_the_last_time(u2netp_file: Path) -> None:
    from pipelines.models.onnx_torch import Runner

    session = TorchOnnxSession(u2netp_file, "cpu", torch.float32)
    feeds = {session.get_inputs()[0].name: calibration_batch(320).numpy()}
    left = set(Runner(session).evaluate(feeds)) - set(session.constants)
    # Only the graph's outputs outlive the evaluation (the feed too is freed): holding every intermediate
    # made IS-Net at 1024 px keep gigabytes and run 2x slower, noisily (docs/NOTES.md, "rembg").
    assert left == {port.name for port in session.get_outputs()}


class ManyOperators(nn.Module):
    """Shape arithmetic (exported with dynamic sizes), pooling, reshapes and elementwise maths."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(3, 4, 3, padding=1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(torch.tanh(F.leaky_relu(self.conv(x), 0.2)), 2, ceil_mode=True)
        b, c, h, w = y.shape
        z = y.reshape(b, c, h * w).transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)
        z = torch.clamp(z, -0.5, 0.5) / 2.0 + F.adaptive_avg_pool2d(y, 1)
        z = torch.sqrt(z * z + 1.0) - torch.exp(-z) + torch.floor(z * 3) ** 2
        z = z[:, 1:3, : h // 2 + 1]
        return torch.sigmoid(F.interpolate(z, size=(h * 2 + 1, w * 3), mode="bilinear", align_corners=False))


def test_shape_arithmetic_and_elementwise_operators_match_onnxruntime(tmp_path: Path) -> None:
    path = export(ManyOperators(), tmp_path / "many.onnx", dynamic_axes={"input.1": {2: "h", 3: "w"}})
    assert {"Gather", "Unsqueeze", "Cast", "Reshape", "Transpose", "Div", "Clip", "Pow", "AveragePool",
            "GlobalAveragePool", "Floor", "Neg", "Exp", "Sqrt", "LeakyRelu", "Tanh"} <= operator_types(path)
    for size in ((24, 24), (30, 22), (17, 29)):  # odd sizes: ceil_mode, integer division, slicing
        batch = np.random.default_rng(5).normal(size=(1, 3, *size)).astype(np.float32)
        reference = onnxruntime_outputs(path, batch)[0]
        ours = torch_outputs(path, batch)[0]
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, atol=1e-5)


def hand_made(path: Path, nodes: list, initializers: list) -> Path:
    """A graph ``input`` (1, 3, H, W) -> ``mask`` written with onnx.helper (cases torch never exports)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "case", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "H", "W"])],
                              [helper.make_tensor_value_info("mask", TensorProto.FLOAT, None)], initializers)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def weight(name: str = "w") -> object:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array([4.0, 0.0, -4.0], np.float32).reshape(1, 3, 1, 1), name)


def test_cases_it_does_not_implement_are_refused_not_approximated(tmp_path: Path) -> None:
    from onnx import helper

    batch = {"input": np.ones((1, 3, 8, 8), np.float32)}
    asymmetric = hand_made(tmp_path / "pads.onnx", [helper.make_node("Conv", ["input", "w"], ["mask"],
                                                                     pads=[0, 0, 1, 1])], [weight()])
    with pytest.raises(UnsupportedGraph, match="asymmetric pads"):
        TorchOnnxSession(asymmetric).run(None, batch)
    computed = hand_made(tmp_path / "computed.onnx", [helper.make_node("Identity", ["w"], ["w2"]),
                                                      helper.make_node("Conv", ["input", "w2"], ["mask"])], [weight()])
    with pytest.raises(UnsupportedGraph, match="computed in the graph"):
        TorchOnnxSession(computed)


def half_pixel_nearest(path: Path) -> Path:
    """Resize with nearest and half_pixel coordinates: ONNX's default rounding, which torch lacks."""
    from onnx import helper, numpy_helper

    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    return hand_made(path, [helper.make_node("Conv", ["input", "w"], ["logit"]),
                            helper.make_node("Resize", ["logit", "", "scales"], ["up"], mode="nearest"),
                            helper.make_node("Sigmoid", ["up"], ["mask"])], [weight(), scales])


def test_a_graph_that_fails_in_torch_at_the_check_stays_on_onnxruntime(tmp_path: Path) -> None:
    path = half_pixel_nearest(tmp_path / "u2netp" / "u2netp.onnx")
    TorchOnnxSession(path)  # every operator is known: the failure comes only when it runs
    cache = PrecisionCache(tmp_path / "decisions.json")
    session = load_session(path, "cpu", cache)
    assert session.inner_session.get_providers() == ["CPUExecutionProvider"]
    assert [d["name"] for d in json.loads(cache.path.read_text()).values()] == ["fp32"]
    from PIL import Image

    red_to_blue = np.zeros((30, 40, 3), np.uint8)
    red_to_blue[..., 0], red_to_blue[..., 2] = np.linspace(0, 255, 40, dtype=np.uint8), 128
    assert session.predict(Image.fromarray(red_to_blue))[0].size == (40, 30)  # ONNX Runtime is back in place


def test_a_stored_bf16_decision_the_interpreter_cannot_honour_keeps_onnxruntime(tmp_path: Path) -> None:
    path = half_pixel_nearest(tmp_path / "u2netp" / "u2netp.onnx")
    cache = PrecisionCache(tmp_path / "decisions.json")
    cache.decided(path, rembg_sessions._decision_device("cpu"), lambda: precision.Precision("bf16", "cpu", True, 60.0))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pipelines.models.onnx_torch.TorchOnnxSession.__init__", _refuse)
        assert load_session(path, "cpu", cache).inner_session.get_providers() == ["CPUExecutionProvider"]


def _refuse(*args: object, **kwargs: object) -> None:
    raise UnsupportedGraph("refused by the test")
