"""Scratch removal on real photos: clean photos untouched, drawn scratches repaired, bands seamless."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipelines.base import Cancelled, Picture, StepContext
from pipelines.steps.scratch_removal import STEP, scratch_mask
from tests.conftest import photo, step_context
from tests.test_damage_detection import tolerant

BRIGHT, DARK = 0.95, 0.05
# (start, end) as fractions of (width, height), width in pixels at scale 1, value.
SCRATCHES = (
    ((0.05, 0.10), (0.95, 0.35), 1, BRIGHT),
    ((0.20, 0.00), (0.35, 1.00), 2, DARK),
    ((0.00, 0.80), (0.90, 0.55), 3, BRIGHT),
    ((0.90, 0.05), (0.55, 0.95), 4, DARK),
    ((0.62, 0.00), (0.66, 1.00), 3, BRIGHT),  # a fold line across the whole photo
)


def damage(rgb: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The photo with SCRATCHES and a gently bowed bright scratch drawn on it, and their mask."""
    height, width = rgb.shape[:2]
    values = np.full((height, width), -1.0, np.float32)
    for (x0, y0), (x1, y1), thickness, value in SCRATCHES:
        start = (round(x0 * (width - 1)), round(y0 * (height - 1)))
        end = (round(x1 * (width - 1)), round(y1 * (height - 1)))
        cv2.line(values, start, end, value, max(1, round(thickness * scale)))
    ys = np.linspace(0, height - 1, 50)
    xs = (0.45 + 0.02 * (1 - (2 * ys / (height - 1) - 1) ** 2)) * (width - 1)  # bows by 2% of the width
    curve = np.stack([xs, ys], axis=1).round().astype(np.int32)
    cv2.polylines(values, [curve], False, BRIGHT, max(1, round(2 * scale)))
    truth = values >= 0
    damaged = rgb.copy()
    damaged[truth] = values[truth][:, None]
    return damaged, truth


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    error = (a - b) ** 2 if where is None else (a - b)[where] ** 2
    mse = float(error.mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def repair(rgb: np.ndarray, params: dict | None = None, **context_args):
    return STEP.run(Picture(rgb), STEP.checked(params or {}), step_context(**context_args))


# Measured with the learned detector: coverage 0.00-0.14% and PSNR(out, in) 36.1-52.5 dB on these
# (the straight-line detector alone changed no pixel of them, but found no curved damage); the
# rocket's gantry is flagged (1.04%, 32.5 dB).
ROCKET_MISS = pytest.mark.xfail(strict=True, reason="the launch gantry's lattice is flagged (1.04%, measured)")


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera", "immunohistochemistry",
                                  pytest.param("rocket", marks=ROCKET_MISS)])
def test_clean_photos_are_left_alone(name):
    clean = photo(name)
    outcome = repair(clean)
    assert outcome.measurements["scratchCoverage"] < 0.5
    assert psnr(outcome.image.rgb, clean) > 35.0


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
def test_drawn_scratches_are_repaired_and_nothing_else_changes(name):
    clean = photo(name)
    damaged, truth = damage(clean)
    alpha = np.ones(clean.shape[:2], np.float32)
    outcome = STEP.run(Picture(damaged, alpha=alpha, bit_depth=8, info={"source": name}), STEP.checked({}),
                       step_context())
    # Measured gains inside the damaged area (learned detector, 2026-12-04): astronaut 9.3, coffee
    # 12.5, chelsea 11.7, camera 11.2 dB (5.6-8.4 with the straight-line detector before it).
    gain = psnr(outcome.image.rgb, clean, truth) - psnr(damaged, clean, truth)
    assert gain > 7.0
    # Measured coverage / true damaged area: 1.03..1.15.
    assert 0.5 < outcome.measurements["scratchCoverage"] / (100 * truth.mean()) < 2.5
    # Pixels more than 16 px from a scratch barely move: only the detector's few false alarms
    # (bright rims, edges) are filled there.
    near_scratches = cv2.dilate(truth.astype(np.uint8), np.ones((33, 33), np.uint8)) > 0
    assert psnr(outcome.image.rgb, damaged, ~near_scratches) > 34.0
    assert outcome.image.alpha is alpha and outcome.image.info == {"source": name}


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
def test_both_detectors_find_most_of_long_straight_scratches(name):
    clean = photo(name)
    damaged, truth = damage(clean)
    recalls = {}
    for detector in ("standard", "conservative"):
        outcome = repair(damaged, {"detector": detector})
        recalls[detector], precision = tolerant(outcome.damage_mask, truth)
        assert precision >= 0.9
    # Measured: standard recall 0.89-0.96, precision 0.93-0.98; conservative recall 0.62-0.82,
    # precision 0.95-0.98 (gain +1.9..+7.8 dB against +9.3..+12.5): it was fine-tuned with
    # lattices and hatching as negatives, and takes part of a line that crosses the whole photo
    # for one. A known limit (README), held here so that it cannot grow unnoticed.
    assert recalls["standard"] >= 0.85 and recalls["conservative"] >= 0.55


def test_sixteen_bit_photos_are_inpainted_in_sixteen_bits():
    clean = photo("coffee")
    damaged, truth = damage(clean)
    outcome = STEP.run(Picture(damaged, bit_depth=16), STEP.checked({}), step_context())
    assert psnr(outcome.image.rgb, clean, truth) - psnr(damaged, clean, truth) > 4.0
    repaired = outcome.image.rgb[np.any(outcome.image.rgb != damaged, axis=2)]
    off_8bit_grid = np.abs(repaired * 255 - np.round(repaired * 255)) > 0.01
    assert repaired.size > 0 and off_8bit_grid.mean() > 0.5


def test_protect_boxes_leave_their_region_bit_identical():
    damaged, truth = damage(photo("astronaut"))
    box = (280, 150, 400, 300)  # crossed by the fold line and the 4 px dark scratch
    region = (slice(box[1], box[3]), slice(box[0], box[2]))
    unprotected = repair(damaged)
    protected = repair(damaged, {"protect_boxes": [list(box)]})
    assert not np.array_equal(unprotected.image.rgb[region], damaged[region])
    assert np.array_equal(protected.image.rgb[region], damaged[region])
    assert 0 < protected.measurements["scratchCoverage"] < unprotected.measurements["scratchCoverage"]


@pytest.fixture(scope="module")
def large_damaged() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    clean = np.clip(cv2.resize(photo("astronaut"), (3000, 2000), interpolation=cv2.INTER_CUBIC), 0, 1)
    damaged, truth = damage(clean, scale=2.0)
    return clean, damaged, truth


def test_bands_give_the_same_mask_as_one_piece(large_damaged):
    _, damaged, truth = large_damaged
    banded = scratch_mask(damaged)
    assert np.array_equal(banded, scratch_mask(damaged, band_rows=10**6))
    assert banded[truth].mean() > 0.5


def test_large_photo_is_repaired_with_rising_progress(large_damaged):
    clean, damaged, truth = large_damaged
    events: list = []
    outcome = repair(damaged, events=events)
    fractions = [fraction for fraction, _ in events]
    assert len(fractions) >= 8  # 4 bands of 256 detection rows, two passes
    assert all(later > earlier for earlier, later in zip(fractions, fractions[1:]))
    assert fractions[-1] == pytest.approx(1.0)
    assert {stage for _, stage in events} == {"Removing scratches..."}
    # Measured: 5.0 -> 13.7 dB inside the damaged area.
    assert psnr(outcome.image.rgb, clean, truth) - psnr(damaged, clean, truth) > 5.0


@pytest.mark.parametrize("allowed_checks", [0, 3])
def test_cancellation_raises_between_bands(large_damaged, allowed_checks):
    checks = iter(range(allowed_checks + 1))
    with pytest.raises(Cancelled):
        repair(large_damaged[1], is_cancelled=lambda: next(checks) >= allowed_checks)


def test_step_contract():
    assert (STEP.name, STEP.stage, STEP.weight, STEP.bundle) == ("scratch_removal", "Removing scratches...", 2.0, None)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "camera"])
def test_film_grain_neither_hides_scratches_nor_fakes_them(name):
    from skimage import data

    rgb = getattr(data, name)()
    rgb = (np.dstack([rgb] * 3) if rgb.ndim == 2 else rgb[..., :3]).astype(np.float32) / 255
    rng = np.random.default_rng(1)
    grainy = np.clip(rgb + rng.normal(0, 13 / 255, rgb.shape[:2] + (1,)), 0, 1).astype(np.float32)
    ctx = StepContext(report=lambda f, s: None, is_cancelled=lambda: False)
    assert STEP.run(Picture(rgb=grainy), STEP.checked({}), ctx).measurements["scratchCoverage"] < 0.5
    damaged = grainy.copy()
    height, width = damaged.shape[:2]
    for i, level in enumerate((1.0, 0.05, 0.95, 0.1)):  # bright and dark, long, 2 px
        x0 = int(width * (0.15 + 0.2 * i))
        cv2.line(damaged, (x0, 0), (x0 + 40, height - 1), (level,) * 3, 2)
    hit = np.abs(damaged - grainy).max(axis=2) > 0.05
    repaired = STEP.run(Picture(rgb=damaged), STEP.checked({}), ctx).image.rgb

    def psnr(image):
        return 10 * np.log10(1 / np.mean((image[hit] - grainy[hit]) ** 2))

    # Measured +2.9..+9.5 dB on astronaut, coffee, chelsea, camera at grain sigma 13 (0 before the
    # detection copy was smoothed: the grain broke every run).
    assert psnr(repaired) > psnr(damaged) + 2.0
