"""Tiled inference for image-to-image networks with an integer scale, blended without seams.

Geometry, decided per axis:

* The image is reflect-padded by about ``overlap / 2`` on every side, so windows at the true image
  border see mirrored image content instead of the network's zero padding (the padding is cropped
  from the result). The far side gets up to ``mod - 1`` more pixels so every window's sides are a
  multiple of ``mod`` (RRDBNet x2 pixel-unshuffles by 2).
* Windows are ``tile`` pixels *including* their context, so the network never sees more than
  ``tile x tile``. The stride is ``tile - overlap``; the last window is aligned to the padded edge.
  An image that fits in one tile is run as one window (with less padding when it must).
* Between two neighbouring windows there is a cut at the middle of their overlap. The weights
  ramp linearly across the middle half of the overlap; the outer quarters, where a window's output
  is spoiled by its own zero padding, get weight 0. Window weights along an axis therefore sum to
  exactly 1 everywhere, and windows touching the padded edge have weight 1 there.

Because the weights are a partition of unity, each window's weighted output is added straight into
the final array: there is no weight buffer and no second full-size accumulator. Peak memory is the
output, the padded input and one window.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

# Maps an HxWxC float32 window to its (H*scale)x(W*scale)xC float32 result.
WindowFn = Callable[[np.ndarray], np.ndarray]
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class AxisPlan:
    """Where the windows lie along one axis of the padded image."""

    length: int  # of the unpadded image
    pad_before: int
    pad_after: int
    window: int  # every window along this axis has this size
    starts: tuple[int, ...]  # in padded coordinates
    ramp_half_width: float  # input pixels either side of each cut

    def cuts(self) -> list[float]:
        """The middle of each neighbouring pair's overlap, in padded input coordinates."""
        return [(nxt + cur + self.window) / 2 for cur, nxt in zip(self.starts, self.starts[1:])]

    def weights(self, scale: int) -> list[np.ndarray]:
        """Per window, the blend weight of each of its output pixels along this axis."""
        cuts = self.cuts()
        result = []
        for index, start in enumerate(self.starts):
            # Output pixel centres, in padded input coordinates.
            centres = start + (np.arange(self.window * scale) + 0.5) / scale
            rise = _ramp(centres, cuts[index - 1], self.ramp_half_width) if index > 0 else 1.0
            fall = 1.0 - _ramp(centres, cuts[index], self.ramp_half_width) if index < len(cuts) else 1.0
            result.append(np.broadcast_to(rise * fall, centres.shape).astype(np.float32))
        return result

    def placement(self, index: int, scale: int) -> tuple[slice, slice]:
        """(slice of the final output, slice of window ``index``'s output) along this axis."""
        window_lo = self.starts[index] * scale
        lo = max(window_lo, self.pad_before * scale)
        hi = min(window_lo + self.window * scale, (self.pad_before + self.length) * scale)
        hi = max(hi, lo)  # a window lying wholly in the padding contributes nothing
        return slice(lo - self.pad_before * scale, hi - self.pad_before * scale), slice(lo - window_lo, hi - window_lo)


def _ramp(position: np.ndarray, cut: float, half_width: float) -> np.ndarray:
    if half_width <= 0:
        return (position >= cut).astype(np.float64)
    return np.clip((position - (cut - half_width)) / (2 * half_width), 0.0, 1.0)


def plan_axis(length: int, tile: int, overlap: int, mod: int = 1) -> AxisPlan:
    """Padding and window starts along one axis; ``tile`` and ``overlap`` as in :func:`run_tiled`."""
    tile, stride = _aligned_tile_and_stride(tile, overlap, mod)
    pad = context_pad(overlap, mod)
    ramp_half_width = (tile - stride) / 4
    if length + 2 * pad <= tile:
        window = _round_up(length + 2 * pad, mod)
        return AxisPlan(length, pad, window - length - pad, window, (0,), ramp_half_width)
    if length <= tile:
        # It fits only with less context: one window beats four for the cost of thinner padding.
        before = (tile - length) // 2 // mod * mod
        return AxisPlan(length, before, tile - length - before, tile, (0,), ramp_half_width)
    padded = _round_up(length + 2 * pad, mod)
    starts = (*range(0, padded - tile, stride), padded - tile)
    return AxisPlan(length, pad, padded - length - pad, tile, starts, ramp_half_width)


def context_pad(overlap: int, mod: int = 1) -> int:
    """Reflect padding added on each side of the image: half the overlap, a multiple of ``mod``."""
    return _round_up(overlap // 2, mod)


def count_tiles(height: int, width: int, tile: int, overlap: int, mod: int = 1) -> int:
    return len(plan_axis(height, tile, overlap, mod).starts) * len(plan_axis(width, tile, overlap, mod).starts)


def _aligned_tile_and_stride(tile: int, overlap: int, mod: int) -> tuple[int, int]:
    """Window starts must be multiples of ``mod`` so pixel-unshuffle groups the same pixels in
    every window as in the whole image; the stride is rounded down (more overlap) to get there."""
    if mod < 1 or tile < 2 * mod or overlap < 0 or 2 * overlap > tile:
        raise ValueError(f"need mod >= 1, tile >= 2*mod and 0 <= overlap <= tile/2 "
                         f"(tile={tile}, overlap={overlap}, mod={mod})")
    tile = tile // mod * mod
    stride = (tile - overlap) // mod * mod
    return tile, stride


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def run_tiled(image: np.ndarray, network: WindowFn, *, scale: int, tile: int, overlap: int, mod: int = 1,
              on_tile: ProgressFn | None = None, check_cancelled: Callable[[], None] | None = None,
              channels: int | None = None) -> np.ndarray:
    """Run ``network`` over ``image`` (float32 HxWxC) window by window; return (H*s)x(W*s)xC' float32,
    where C' is ``channels`` (default: C, the input's).

    ``on_tile(done, total)`` is called after every window; ``check_cancelled()`` before every
    window (it raises to stop). Windows are at most ``tile`` px per side, context included.
    """
    if image.ndim != 3 or image.dtype != np.float32 or min(image.shape[:2]) < 1:
        raise ValueError(f"expected a float32 HxWxC image, got {image.dtype} {image.shape}")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    rows = plan_axis(image.shape[0], tile, overlap, mod)
    cols = plan_axis(image.shape[1], tile, overlap, mod)
    padded = np.pad(image, ((rows.pad_before, rows.pad_after), (cols.pad_before, cols.pad_after), (0, 0)),
                    mode="reflect")
    channels = image.shape[2] if channels is None else channels
    output = np.zeros((image.shape[0] * scale, image.shape[1] * scale, channels), np.float32)
    _blend_windows(padded, network, output, (rows, cols), scale, on_tile, check_cancelled)
    return output


def _blend_windows(padded: np.ndarray, network: WindowFn, output: np.ndarray, plans: Sequence[AxisPlan],
                   scale: int, on_tile: ProgressFn | None, check_cancelled: Callable[[], None] | None) -> None:
    rows, cols = plans
    row_weights, col_weights = rows.weights(scale), cols.weights(scale)
    total, done = len(rows.starts) * len(cols.starts), 0
    for row, top in enumerate(rows.starts):
        out_rows, win_rows = rows.placement(row, scale)
        for col, left in enumerate(cols.starts):
            if check_cancelled is not None:
                check_cancelled()
            window = padded[top : top + rows.window, left : left + cols.window]
            result = _run_window(network, window, scale, output.shape[2])
            out_cols, win_cols = cols.placement(col, scale)
            weight = row_weights[row][win_rows, None, None] * col_weights[col][None, win_cols, None]
            output[out_rows, out_cols] += result[win_rows, win_cols] * weight
            done += 1
            if on_tile is not None:
                on_tile(done, total)


def _run_window(network: WindowFn, window: np.ndarray, scale: int, channels: int) -> np.ndarray:
    result = network(np.ascontiguousarray(window))
    expected = (window.shape[0] * scale, window.shape[1] * scale, channels)
    if result.shape != expected:
        raise ValueError(f"the network returned {result.shape} for a {window.shape} window; expected {expected}")
    return result
