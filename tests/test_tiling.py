"""The tiling engine: tiled output equals whole-image output for a local network, seams do not show,
progress and cancellation work per tile, odd sizes and x2's even-size requirement are handled."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.base import Cancelled, StepContext
from pipelines.tiling import context_pad, count_tiles, plan_axis, run_tiled

# Float32 rounding of w*a + (1-w)*a and of conv sums computed over different window extents.
EXACT_TOLERANCE = 1e-5


class LocalUpscaler(torch.nn.Module):
    """Two 3x3 convolutions then PixelShuffle: each output pixel sees input pixels within 2 px.

    Its zero padding makes a window's outer 2 px wrong, so a blend that gives them weight fails.
    """

    def __init__(self, scale: int = 4, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.Tanh(),
                                       torch.nn.Conv2d(16, 3 * scale * scale, 3, padding=1),
                                       torch.nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EvenOnlyX2(torch.nn.Module):
    """Like RRDBNet x2: pixel-unshuffle by 2 first, so odd input sides fail. Sees +-3 input px."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.unshuffle = torch.nn.PixelUnshuffle(2)
        self.conv = torch.nn.Conv2d(12, 3 * 16, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0, f"odd input {tuple(x.shape)}"
        return self.shuffle(self.conv(self.unshuffle(x)))


def window_fn(net: torch.nn.Module, seen: list[tuple[int, int]] | None = None):
    def run(window: np.ndarray) -> np.ndarray:
        if seen is not None:
            seen.append(window.shape[:2])
        with torch.inference_mode():
            out = net(torch.from_numpy(window.transpose(2, 0, 1).copy())[None])
        return out[0].permute(1, 2, 0).numpy()
    return run


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((height, width, 3), dtype=np.float32)


def whole_image(net: torch.nn.Module, image: np.ndarray, scale: int, pads: tuple[int, int, int, int]) -> np.ndarray:
    """The reference: the network over the whole reflect-padded image, padding cropped off."""
    top, bottom, left, right = pads
    padded = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    out = window_fn(net)(padded)
    return out[top * scale : (top + image.shape[0]) * scale, left * scale : (left + image.shape[1]) * scale]


def test_tiled_output_equals_whole_image_output():
    net, image = LocalUpscaler(), photo_like(70, 53)
    pad = context_pad(16)
    expected = whole_image(net, image, 4, (pad, pad, pad, pad))
    seen: list[tuple[int, int]] = []
    tiled = run_tiled(image, window_fn(net, seen), scale=4, tile=32, overlap=16)
    assert len(seen) == count_tiles(70, 53, 32, 16) >= 9
    assert max(max(shape) for shape in seen) <= 32  # the tile includes its context
    assert tiled.shape == (280, 212, 3)
    assert np.abs(tiled - expected).max() < EXACT_TOLERANCE
    single = run_tiled(image, window_fn(net), scale=4, tile=128, overlap=16)
    assert np.abs(single - expected).max() < EXACT_TOLERANCE


def naive_tiling(net: torch.nn.Module, image: np.ndarray, scale: int, tile: int) -> np.ndarray:
    """Cut into tiles, run each without context, paste: what a missing blend amounts to."""
    out = np.zeros((image.shape[0] * scale, image.shape[1] * scale, 3), np.float32)
    run = window_fn(net)
    for top in range(0, image.shape[0], tile):
        for left in range(0, image.shape[1], tile):
            result = run(np.ascontiguousarray(image[top : top + tile, left : left + tile]))
            out[top * scale : top * scale + result.shape[0], left * scale : left * scale + result.shape[1]] = result
    return out


def test_naive_tiling_shows_a_seam_where_blended_tiling_does_not():
    net, image, scale = LocalUpscaler(), photo_like(64, 64, seed=1), 4
    pad = context_pad(16)
    expected = whole_image(net, image, scale, (pad, pad, pad, pad))
    naive_error = np.abs(naive_tiling(net, image, scale, 32) - expected).max(axis=2)
    blended_error = np.abs(run_tiled(image, window_fn(net), scale=scale, tile=32, overlap=16) - expected).max(axis=2)
    seam_columns = naive_error[:, 30 * scale : 34 * scale]  # around the naive cut at input x = 32
    assert seam_columns.max() > 0.05
    away_from_seams_and_borders = naive_error[10 * scale : 20 * scale, 10 * scale : 20 * scale]
    assert away_from_seams_and_borders.max() < EXACT_TOLERANCE
    assert blended_error.max() < EXACT_TOLERANCE


class WindowMeanShift(torch.nn.Module):
    """Nearest x2 upscale plus the window's mean: output depends on where the window lies, like a
    real network whose receptive field is larger than the overlap."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest") + x.mean()


def test_blend_ramps_between_windows_that_disagree():
    width, scale = 96, 2
    image = np.broadcast_to(np.linspace(0, 1, width, dtype=np.float32)[None, :, None], (8, width, 3)).copy()
    blended = run_tiled(image, window_fn(WindowMeanShift()), scale=scale, tile=32, overlap=16)
    hard_cut = run_tiled(image, window_fn(WindowMeanShift()), scale=scale, tile=32, overlap=0)
    smooth_step = np.abs(np.diff(np.linspace(0, 1, width * scale))).max()
    blended_step = np.abs(np.diff(blended[4, :, 0])).max()
    hard_step = np.abs(np.diff(hard_cut[4, :, 0])).max()
    assert hard_step > 0.1  # neighbouring windows' means differ by ~0.17
    assert blended_step < hard_step / 4  # spread over a 16-output-px ramp instead of one step
    assert blended_step < 0.03 + 2 * smooth_step


@pytest.mark.parametrize("length, tile, overlap, mod", [(100, 48, 16, 1), (37, 16, 8, 1), (33, 24, 8, 2),
                                                       (257, 256, 32, 1), (481, 256, 32, 1), (10, 64, 16, 1),
                                                       (250, 256, 32, 1), (1000, 128, 64, 2)])
def test_window_weights_sum_to_one_and_are_one_at_the_borders(length, tile, overlap, mod):
    plan, scale = plan_axis(length, tile, overlap, mod), 3
    total = np.zeros((plan.pad_before + length + plan.pad_after) * scale)
    for start, weights in zip(plan.starts, plan.weights(scale)):
        total[start * scale : (start + plan.window) * scale] += weights
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert plan.weights(scale)[0][0] == 1.0 and plan.weights(scale)[-1][-1] == 1.0
    assert plan.window <= tile and plan.window % mod == 0
    assert all(start % mod == 0 for start in plan.starts)
    assert plan.starts[-1] + plan.window == plan.pad_before + length + plan.pad_after


def test_progress_is_reported_per_tile():
    calls: list[tuple[int, int]] = []
    run_tiled(photo_like(100, 70), window_fn(LocalUpscaler(scale=2)), scale=2, tile=48, overlap=16,
              on_tile=lambda done, total: calls.append((done, total)))
    # Padded to 116 x 86 (8 px each side); stride 32: rows start at 0, 32, 64, 68; columns 0, 32, 38.
    assert calls == [(done, 12) for done in range(1, 13)]
    assert count_tiles(100, 70, 48, 16) == 12


def test_cancellation_is_checked_between_tiles():
    requests = {"count": 0}
    ctx = StepContext(report=lambda fraction, stage: None, is_cancelled=lambda: requests["count"] >= 3)
    seen: list[tuple[int, int]] = []
    with pytest.raises(Cancelled):
        run_tiled(photo_like(100, 70), window_fn(LocalUpscaler(scale=2), seen), scale=2, tile=48, overlap=16,
                  on_tile=lambda done, total: requests.update(count=done), check_cancelled=ctx.check_cancelled)
    assert len(seen) == 3


@pytest.mark.parametrize("height, width", [(1, 7), (2, 3), (37, 23), (5, 64), (65, 33)])
def test_odd_sizes_match_the_whole_image(height, width):
    net, image = LocalUpscaler(), photo_like(height, width, seed=height)
    rows, cols = plan_axis(height, 16, 8), plan_axis(width, 16, 8)
    expected = whole_image(net, image, 4, (rows.pad_before, rows.pad_after, cols.pad_before, cols.pad_after))
    tiled = run_tiled(image, window_fn(net), scale=4, tile=16, overlap=8)
    assert tiled.shape == (height * 4, width * 4, 3)
    assert np.abs(tiled - expected).max() < EXACT_TOLERANCE


def test_x2_pixel_unshuffle_gets_even_windows_and_matches_the_whole_image():
    net, image, seen = EvenOnlyX2(), photo_like(45, 39, seed=3), []
    rows, cols = plan_axis(45, 32, 16, mod=2), plan_axis(39, 32, 16, mod=2)
    tiled = run_tiled(image, window_fn(net, seen), scale=2, tile=32, overlap=16, mod=2)
    expected = whole_image(net, image, 2, (rows.pad_before, rows.pad_after, cols.pad_before, cols.pad_after))
    assert tiled.shape == (90, 78, 3)
    assert len(seen) > 1 and all(h % 2 == 0 and w % 2 == 0 for h, w in seen)
    assert np.abs(tiled - expected).max() < EXACT_TOLERANCE


def test_odd_tile_is_rounded_down_for_x2():
    seen: list[tuple[int, int]] = []
    run_tiled(photo_like(61, 61), window_fn(EvenOnlyX2(), seen), scale=2, tile=25, overlap=8, mod=2)
    assert max(max(shape) for shape in seen) <= 24


def test_small_image_runs_as_one_window():
    seen: list[tuple[int, int]] = []
    out = run_tiled(photo_like(10, 12), window_fn(LocalUpscaler(), seen), scale=4, tile=64, overlap=16)
    assert seen == [(26, 28)] and out.shape == (40, 48, 3)


def test_invalid_geometry_is_refused():
    with pytest.raises(ValueError):
        run_tiled(photo_like(40, 40), window_fn(LocalUpscaler()), scale=4, tile=32, overlap=20)
    with pytest.raises(ValueError):
        run_tiled(photo_like(40, 40), lambda window: window, scale=4, tile=32, overlap=8)  # wrong output size
