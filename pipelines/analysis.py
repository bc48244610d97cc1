"""Cheap whole-image measurements used to plan and report a restoration.

``is_grayscale`` answers "is this a black-and-white photo?", counting toned monochrome prints
(sepia, cyanotype, selenium, a grey scan with a colour cast or chroma noise) as black-and-white.
The test: in Lab, a monochrome photo's chroma (a, b) is a function of its lightness L alone (the
toning curve), so predicting (a, b) from L leaves almost nothing; a colour photo, however
muted or dominated by one hue, has colours that lightness cannot explain.

``estimate_noise_sigma`` measures the noise level per channel (Immerkær's estimator on the flatter
half of the pixels), for the denoise step and the scratch detector's contrast threshold.
"""
from __future__ import annotations

import cv2
import numpy as np

# The analysis runs on a copy whose long side is this many pixels: a few milliseconds even for a
# 24 MP photo, and the statistic below is the same whatever the source resolution. Area
# averaging down to 256 px also removes most per-pixel chroma noise from large scans.
ANALYSIS_LONG_SIDE = 256

# The toning curve is estimated as the median (a, b) in this many lightness bins (L is 0..100),
# interpolated linearly between bin centres; bins with fewer pixels than MIN_BIN_PIXELS are too
# noisy to trust and are left out.
LIGHTNESS_BINS = 32
MIN_BIN_PIXELS = 10

# Residuals are averaged over this window (in analysis pixels) before they are measured: chroma
# noise is spatially uncorrelated and averages out, a coloured object does not.
RESIDUAL_SMOOTHING = 5

# Monochrome when the 95th percentile of the smoothed (a, b) residual is below this many Lab
# units. Measured on scikit-image astronaut, coffee, chelsea, rocket, immunohistochemistry,
# stereo_motorcycle and colorwheel:
#   monochrome versions, 3.39 at most: grey 0.05, camera/moon/coins 0.03, linear sepia and
#   cyanotype toning 0.12, the clipped classic sepia matrix 2.67, grey + colour cast + chroma
#   noise (sigma 0.02) through JPEG q60 2.27, sepia + RGB noise of sigma 0.03 1.85 (3.39 after JPEG);
#   colour versions, 4.66 at least: originals 13.3, half saturation 6.5, 60% of the way to a
#   strong orange 5.3 or green 4.66 tint.
# 4.0 sits between the two groups. Known limits: an almost neutral colour photo such as the
# Hubble deep field (3.81, mostly black sky) or a retina photo pushed towards orange (3.34)
# reads as monochrome.
MONOCHROME_RESIDUAL_LIMIT = 4.0
RESIDUAL_PERCENTILE = 95


def is_grayscale(rgb: np.ndarray) -> bool:
    """True for greyscale and toned monochrome photos, False for colour photos.

    ``rgb`` is float32 HxWx3 in [0, 1].
    """
    lab = cv2.cvtColor(_analysis_copy(rgb), cv2.COLOR_RGB2Lab)
    residual = _chroma_unexplained_by_lightness(lab)
    return float(np.percentile(residual, RESIDUAL_PERCENTILE)) < MONOCHROME_RESIDUAL_LIMIT


def _analysis_copy(rgb: np.ndarray) -> np.ndarray:
    # Plain subsampling first, to at most 4x the analysis size: area-averaging all 24 MP costs
    # ~100 ms (memory bound), the subsampled copy ~5 ms, and 4x4 averaging still tames noise.
    stride = max(1, max(rgb.shape[:2]) // (4 * ANALYSIS_LONG_SIDE))
    small = np.ascontiguousarray(rgb[::stride, ::stride, :3], dtype=np.float32)
    height, width = small.shape[:2]
    scale = ANALYSIS_LONG_SIDE / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.clip(small, 0.0, 1.0))


def _chroma_unexplained_by_lightness(lab: np.ndarray) -> np.ndarray:
    """Per-pixel distance in (a, b) from the photo's own lightness-to-chroma curve."""
    lightness, a_channel, b_channel = lab[..., 0], lab[..., 1], lab[..., 2]
    centres, a_curve, b_curve = _toning_curve(lightness.ravel(), a_channel.ravel(), b_channel.ravel())
    a_residual = a_channel - np.interp(lightness, centres, a_curve).astype(np.float32)
    b_residual = b_channel - np.interp(lightness, centres, b_curve).astype(np.float32)
    window = (RESIDUAL_SMOOTHING, RESIDUAL_SMOOTHING)
    return np.hypot(cv2.blur(a_residual, window), cv2.blur(b_residual, window))


def _toning_curve(
    lightness: np.ndarray, a_values: np.ndarray, b_values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median lightness, a and b of each well-populated lightness bin, in lightness order."""
    bins = np.minimum((lightness * (LIGHTNESS_BINS / 100.0)).astype(np.int64), LIGHTNESS_BINS - 1)
    counts = np.bincount(bins, minlength=LIGHTNESS_BINS)
    min_pixels = min(MIN_BIN_PIXELS, int(counts.max()))  # tiny images: keep the fullest bin
    curve = [
        (np.median(lightness[in_bin]), np.median(a_values[in_bin]), np.median(b_values[in_bin]))
        for in_bin in (bins == index for index in np.flatnonzero(counts >= min_pixels))
    ]
    centres, a_curve, b_curve = (np.array(column) for column in zip(*curve))
    return centres, a_curve, b_curve


# Noise estimation: Immerkær's Laplacian-difference kernel cancels smooth image content; for
# Gaussian noise of standard deviation s its response has mean absolute value 6 * s * sqrt(2/pi).
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
_NOISE_SCALE = float(np.sqrt(np.pi / 2.0) / 6.0)
# Edges and texture leak through the kernel, so only the flatter half of the pixels (by Sobel
# gradient) is used. Measured per channel on 13 scikit-image photos (astronaut, coffee, chelsea,
# camera, rocket, immunohistochemistry, coins, moon, page, clock, cell, stereo_motorcycle,
# retina) with Gaussian noise added and stored in 8 bits: clean 0.2..1.9; true 5 -> 4.1..5.7;
# 10 -> 8.0..10.7; 20 -> 15.7..20.5 (the low ends: retina, whose black surround clips the noise).
# Textures read high when clean: gravel 3.7, grass 9.4. Keeping all pixels instead read clean
# photos as 0.3..4.9 and noise 5 as up to 7.7.
_FLAT_FRACTION_PERCENTILE = 50
# Large photos are sampled: up to this many tiles of this size, spread over the image, keep the
# estimate to ~1 MP of work.
_NOISE_TILE = 256
_NOISE_TILES_PER_SIDE = 4


def estimate_noise_sigma(rgb: np.ndarray) -> float:
    """Standard deviation of the photo's noise per channel, in 0..255 units."""
    tiles = _noise_tiles(rgb)
    return float(np.mean([_channel_noise([tile[..., channel] for tile in tiles]) for channel in range(3)]))


def _noise_tiles(rgb: np.ndarray) -> list[np.ndarray]:
    row_spans = _tile_spans(rgb.shape[0])
    col_spans = _tile_spans(rgb.shape[1])
    return [rgb[top:bottom, left:right, :3] for top, bottom in row_spans for left, right in col_spans]


def _tile_spans(length: int) -> list[tuple[int, int]]:
    if length <= _NOISE_TILE * _NOISE_TILES_PER_SIDE:
        return [(0, length)]
    starts = np.linspace(0, length - _NOISE_TILE, _NOISE_TILES_PER_SIDE).astype(int)
    return [(int(start), int(start) + _NOISE_TILE) for start in starts]


def _channel_noise(planes: list[np.ndarray]) -> float:
    responses, gradients = zip(*(_noise_response(plane) for plane in planes))
    response = np.concatenate(responses)
    gradient = np.concatenate(gradients)
    if response.size == 0:
        return 0.0
    cut = int(gradient.size * _FLAT_FRACTION_PERCENTILE / 100)
    flat = gradient <= np.partition(gradient, cut)[cut]  # a percentile, 15x faster than np.percentile
    return _NOISE_SCALE * float(response[flat].mean())


def _noise_response(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|Immerkær kernel| and Sobel gradient magnitude of the interior pixels, flattened."""
    scaled = np.ascontiguousarray(plane, dtype=np.float32) * 255.0
    inner = (slice(1, -1), slice(1, -1))
    response = np.abs(cv2.filter2D(scaled, -1, _NOISE_KERNEL)[inner])
    gradient = np.hypot(cv2.Sobel(scaled, cv2.CV_32F, 1, 0)[inner], cv2.Sobel(scaled, cv2.CV_32F, 0, 1)[inner])
    return response.ravel(), gradient.ravel()
