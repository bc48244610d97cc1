"""The colorize step through modelscope's real DDColor class, with random weights in the official
format (``{'params': state_dict}`` + ``configuration.json``), loaded by the registered loader.

A 512x512 forward pass costs seconds on two busy cores, so the model is built once per session
and the fake provider remembers its predictions per model input: the tests share one grey photo.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from pipelines.analysis import is_grayscale
from pipelines.base import Cancelled, ModelUnavailable, Picture, StepContext
from pipelines.models.ddcolor import DEFAULT_ENCODER, DDColorColorizer, encoder_name_from_config
from pipelines.models.loaders import load_model
from pipelines.precision import FP32_CPU
from pipelines.steps.colorize import SKIPPED_COLOUR_PHOTO, STEP, lightness, relative_luminance
from tests.model_factories import official_style_config, write_random_ddcolor
from tests.server_process import ROOT

WIDTH, HEIGHT = 301, 517  # odd and not square: the 512x512 model input is squashed both ways


class MemoColorizer:
    """Delegates to the real colorizer; identical model inputs are predicted once."""

    def __init__(self, real: DDColorColorizer):
        self.real = real
        self.calls = 0
        self.last_input: np.ndarray | None = None
        self._predictions: dict[str, np.ndarray] = {}

    def predict_ab(self, grey_rgb: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.last_input = grey_rgb
        key = hashlib.sha256(np.ascontiguousarray(grey_rgb).tobytes()).hexdigest()
        if key not in self._predictions:
            self._predictions[key] = self.real.predict_ab(grey_rgb)
        return self._predictions[key]


class FakeModels:
    def __init__(self, colorizer: Any):
        self.colorizer = colorizer
        self.requested: list[str] = []

    def get(self, model_id: str) -> Any:
        self.requested.append(model_id)
        return self.colorizer


@pytest.fixture(scope="session")
def real_colorizer(tmp_path_factory: pytest.TempPathFactory) -> DDColorColorizer:
    weights = write_random_ddcolor(tmp_path_factory.mktemp("ddcolor"), encoder_name="convnext-t", seed=0)
    return load_model("ddcolor", weights, "cpu")


@pytest.fixture(scope="session")
def memo(real_colorizer: DDColorColorizer) -> MemoColorizer:
    return MemoColorizer(real_colorizer)


def context(colorizer: Any, cancelled: bool = False, progress: list | None = None) -> StepContext:
    report = (lambda fraction, stage: progress.append((fraction, stage))) if progress is not None else (lambda *_: None)
    return StepContext(report=report, is_cancelled=lambda: cancelled, models=FakeModels(colorizer))


@pytest.fixture(scope="session")
def colour_photo() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut(), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


@pytest.fixture(scope="session")
def grey_photo(colour_photo: np.ndarray) -> np.ndarray:
    """The astronaut's own luminance as grey, plus a one-pixel checkerboard patch (fine detail)."""
    from pipelines.steps.colorize import encode_srgb

    grey = encode_srgb(relative_luminance(colour_photo))
    checker = np.indices((40, 40)).sum(axis=0) % 2
    grey[200:240, 100:140] = np.where(checker, 0.65, 0.35)
    return np.repeat(grey[..., None], 3, axis=2)


def toned(grey: np.ndarray, a_mid: float, b_mid: float) -> np.ndarray:
    """A toned print of ``grey``: the same luminance, with chroma a function of lightness that
    peaks at (a_mid, b_mid) in the mid-tones and fades to neutral paper and black, like sepia."""
    from pipelines.steps.colorize import with_chroma

    lightness_values = lightness(grey)
    weight = lightness_values * (100.0 - lightness_values) / 2500.0  # 1 at L = 50, 0 at 0 and 100
    ab = np.stack([a_mid * weight, b_mid * weight], axis=-1).astype(np.float32)
    return with_chroma(relative_luminance(grey), ab)


def colorize(rgb: np.ndarray, strength: float, colorizer: Any, **picture: Any):
    return STEP.run(Picture(rgb=rgb, **picture), STEP.checked({"strength": strength}), context(colorizer))


def chroma(rgb: np.ndarray) -> np.ndarray:
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2Lab)
    return np.hypot(lab[..., 1], lab[..., 2])


def test_loader_reads_the_official_format_into_the_real_class(real_colorizer: DDColorColorizer) -> None:
    from modelscope.models.cv.image_colorization import DDColorForImageColorization

    assert isinstance(real_colorizer.model, DDColorForImageColorization)
    assert real_colorizer.encoder_name == "convnext-t"  # from configuration.json
    assert not real_colorizer.model.training
    assert real_colorizer.precision == FP32_CPU  # bf16 is off on CPUs: it measured no faster


def test_bf16_where_enabled_is_used_only_if_it_matches_fp32(real_colorizer: DDColorColorizer,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.models.ddcolor as ddcolor

    monkeypatch.setattr(ddcolor, "BF16_ON_CPU", True)
    monkeypatch.setattr(ddcolor, "cpu_has_bf16_units", lambda: True)
    chosen = ddcolor.choose_precision(real_colorizer.model, "cpu")
    assert chosen.calibration_psnr_db is not None  # measured on the loaded weights
    assert chosen.name == ("bf16" if chosen.calibration_psnr_db >= ddcolor.BF16_MIN_PSNR_DB else "fp32")
    monkeypatch.setattr(ddcolor, "bf16_agreement_db", lambda model: ddcolor.BF16_MIN_PSNR_DB - 1.0)
    assert ddcolor.choose_precision(real_colorizer.model, "cpu").name == "fp32"
    assert ddcolor.choose_precision(real_colorizer.model, "cuda").name == "fp16"


def test_encoder_comes_from_the_configuration_or_defaults_to_convnext_l() -> None:
    assert encoder_name_from_config({"model": {"type": "ddcolor"}}) == DEFAULT_ENCODER == "convnext-l"
    assert encoder_name_from_config(official_style_config("convnext-t")) == "convnext-t"
    with pytest.raises(ValueError):
        encoder_name_from_config({"model": {"encoder_name": "resnet-50"}})


def test_strength_zero_returns_the_grey_input(grey_photo: np.ndarray, memo: MemoColorizer) -> None:
    outcome = colorize(grey_photo, 0, memo)
    assert outcome.measurements == {"colorized": True, "isGrayscale": True}
    assert outcome.skipped is None
    result = outcome.image.rgb
    assert np.array_equal(result[..., 0], result[..., 1]) and np.array_equal(result[..., 1], result[..., 2])
    assert np.abs(result - grey_photo).max() < 1e-5
    assert np.abs(lightness(result) - lightness(grey_photo)).max() < 1e-3


def test_output_keeps_size_detail_alpha_and_metadata(grey_photo: np.ndarray, memo: MemoColorizer) -> None:
    alpha = np.linspace(0, 1, WIDTH * HEIGHT, dtype=np.float32).reshape(HEIGHT, WIDTH)
    outcome = colorize(grey_photo, 100, memo, alpha=alpha, bit_depth=16, info={"icc": b"x"})
    result = outcome.image
    assert result.rgb.shape == (HEIGHT, WIDTH, 3) and result.rgb.dtype == np.float32
    assert result.alpha is alpha and result.bit_depth == 16 and result.info == {"icc": b"x"}
    assert float(np.median(chroma(result.rgb))) > 3.0  # it did colour the photo
    # The photo's own full-resolution lightness is kept wherever the colour fits in sRGB.
    unclipped = np.all((result.rgb > 1e-6) & (result.rgb < 1.0 - 1e-6), axis=-1)
    assert unclipped.mean() > 0.5
    assert np.abs(lightness(result.rgb) - lightness(grey_photo))[unclipped].max() < 1e-3
    # One-pixel detail keeps its contrast (a prediction at 512 px, upsampled, would blur it away).
    assert pixel_contrast(result.rgb) > 0.95 * pixel_contrast(grey_photo)


def pixel_contrast(rgb: np.ndarray) -> float:
    """Mean lightness step between horizontal neighbours inside the checkerboard patch."""
    patch = lightness(rgb)[200:240, 100:140]
    return float(np.abs(np.diff(patch, axis=1)).mean())


def test_strength_scales_chroma_monotonically(grey_photo: np.ndarray, memo: MemoColorizer) -> None:
    mean_chroma = [float(chroma(colorize(grey_photo, strength, memo).image.rgb).mean())
                   for strength in (0, 25, 50, 85, 100)]
    assert mean_chroma[0] < 0.05
    assert all(lower < higher for lower, higher in zip(mean_chroma, mean_chroma[1:])), mean_chroma


def test_sepia_is_treated_as_grayscale_and_neutralised(grey_photo: np.ndarray, memo: MemoColorizer) -> None:
    sepia = toned(grey_photo, a_mid=8.0, b_mid=24.0)
    assert is_grayscale(sepia)
    assert float(np.median(chroma(sepia))) > 10.0  # a clearly brown print
    # Strength 0 keeps the print's lightness but not its brown.
    flat = colorize(sepia, 0, memo)
    assert flat.measurements["isGrayscale"] is True
    assert np.array_equal(flat.image.rgb[..., 0], flat.image.rgb[..., 2])
    assert np.abs(flat.image.rgb - grey_photo).max() < 1e-4
    # The model sees the neutral photo, so the colours do not depend on the print's tone. (Had
    # the tone been kept, they would differ by about the sepia's own colour, 0.1 and more.)
    sepia_colour = colorize(sepia, 85, memo).image.rgb
    sepia_input = memo.last_input
    grey_colour = colorize(grey_photo, 85, memo).image.rgb
    # OpenCV's float Lab conversion (modelscope's preprocessing) works in steps of ~0.002.
    assert np.abs(sepia_input - memo.last_input).max() < 5e-3
    assert np.abs(sepia_input - memo.last_input).mean() < 1e-4
    assert np.abs(sepia - grey_photo).max() > 0.05
    # The inputs' last-step differences move the colours by a level of 255 or two at most.
    assert np.abs(sepia_colour - grey_colour).max() < 0.02
    assert np.abs(sepia_colour - grey_colour).mean() < 1e-3


def test_a_colour_photo_is_left_alone(colour_photo: np.ndarray) -> None:
    models = FakeModels(colorizer=None)
    image = Picture(rgb=colour_photo)
    outcome = STEP.run(image, STEP.checked({"strength": 85}),
                       StepContext(report=lambda *_: None, is_cancelled=lambda: False, models=models))
    assert outcome.skipped == SKIPPED_COLOUR_PHOTO == "the photo already has colour"
    assert outcome.image is image
    assert outcome.measurements == {"colorized": False, "isGrayscale": False}
    assert models.requested == []  # no model is loaded for a photo that is not coloured


def test_progress_and_cancellation(grey_photo: np.ndarray, memo: MemoColorizer) -> None:
    progress: list = []
    STEP.run(Picture(rgb=grey_photo), STEP.checked({"strength": 50}), context(memo, progress=progress))
    fractions = [fraction for fraction, _ in progress]
    assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {stage for _, stage in progress} == {STEP.stage}
    calls_before = memo.calls
    with pytest.raises(Cancelled):
        STEP.run(Picture(rgb=grey_photo), STEP.checked({"strength": 50}), context(memo, cancelled=True))
    assert memo.calls == calls_before  # cancelled before the model ran


def test_without_models_the_bundle_is_named(grey_photo: np.ndarray) -> None:
    ctx = StepContext(report=lambda *_: None, is_cancelled=lambda: False, models=None)
    with pytest.raises(ModelUnavailable) as raised:
        STEP.run(Picture(rgb=grey_photo), STEP.checked({"strength": 85}), ctx)
    assert raised.value.details["bundle"] == "colorization"


def test_importing_the_step_stays_light() -> None:
    code = ("import sys, pipelines.steps.colorize, pipelines.models.ddcolor; "
            "heavy = {'torch', 'modelscope', 'timm', 'cv2'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
