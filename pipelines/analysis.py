"""Cheap whole-image measurements used to plan and report a restoration.

``read_tone`` answers "is this a black-and-white photo, and how is it toned?": ``grey``,
``sepia``, ``cyanotype``, ``toned`` (selenium and other tints) or ``colour``; ``is_grayscale``
and ``tone`` are its two answers. The test: in Lab, a monochrome print's chroma (a, b) is a
function of its lightness L alone (the toning curve), so predicting (a, b) from L leaves almost
nothing; a colour photo, however muted, dark or dominated by one hue, has colours that lightness
cannot explain. What is left is judged after smoothing (chroma noise averages out), above the
photo's own noise floor, weighted by chroma (a few coloured galaxies on a black sky count), and
without the chroma a print loses towards neutral (scratches, dust, clipped highlights).

``estimate_noise_sigma`` measures the noise level per channel (Immerkær's estimator on the flatter
half of the pixels), for the denoise step and the scratch detector's contrast threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# The analysis runs on a copy whose long side is this many pixels: a few milliseconds even for a
# 24 MP photo, and the statistic below is the same whatever the source resolution. Area
# averaging down to 256 px also removes most per-pixel chroma noise from large scans. Smaller
# photos are still halved: averaging 2x2 pixels undoes 4:2:0 JPEG's half-resolution chroma and
# tames noise (without it, monochrome prints with sigma 6 noise through JPEG read up to 3.5 at
# 128 px and 2.8 at 256 px; halved, 1.8 at most, while 25%-saturated colour falls to 3.3 at 200 px).
ANALYSIS_LONG_SIDE = 256
MIN_REDUCTION = 2

# The toning curve is estimated as the median (a, b) in this many lightness bins (L is 0..100),
# interpolated linearly between bin centres; bins with fewer pixels than MIN_BIN_PIXELS are too
# noisy to trust and are left out.
LIGHTNESS_BINS = 32
MIN_BIN_PIXELS = 10

# Residuals from the curve are averaged over this window (in analysis pixels) before they are
# measured: chroma noise is spatially uncorrelated and averages out, a coloured object does not.
# Averaging the residual (not the chroma) also cancels 4:2:0 JPEG's chroma bleeding: it moves
# chroma across an edge, too much on one side and too little on the other, without creating any.
RESIDUAL_SMOOTHING = 5
# What noise is left after averaging is measured per pixel (the chroma minus its 3x3 mean, over
# this window) and this many of its standard deviations are taken off each residual.
NOISE_WINDOW = 15
NOISE_MARGIN = 2.5

# Colour when the 95th percentile of the residual, each pixel weighted by its (smoothed) chroma,
# reaches this many Lab units: between monochrome photos (2.4 at most) and colour ones (3.9 at
# least), measured as docs/NOTES.md ("Colour or monochrome") records, with the known limits.
COLOUR_LIMIT = 3.0
RESIDUAL_PERCENTILE = 95
# Pixels with less chroma than this count as if they had this much, so that in a grey photo the
# noise's own chroma (a few JPEG blocks gone faintly blue or yellow) cannot weight itself up.
WEIGHT_FLOOR = 1.5

# A monochrome photo whose mean toning colour has less chroma than this (Lab units) is grey:
# a grey scan with a slight cast is 2.8..3.6, selenium 8.5..13, sepia 10..19, cyanotype 22..31.
GREY_TINT_LIMIT = 5.0
# Lab hue angles (degrees) of the mean toning colour: sepia and other browns, then the blues
# of a cyanotype; any other tint (selenium's purple-brown, about 350) is just "toned". Measured:
# sepia 70..78, the classic sepia matrix 85..90, cyanotype 271..278, selenium 349..353.
SEPIA_HUES = (35.0, 100.0)
CYANOTYPE_HUES = (180.0, 310.0)


@dataclass(frozen=True)
class ToneReading:
    """A photo's tone and the measurements it was decided by (Lab units, hue in degrees)."""

    tone: str  # "grey", "sepia", "cyanotype", "toned" or "colour"
    unexplained_chroma: float  # the statistic compared with COLOUR_LIMIT
    tint_chroma: float  # chroma of the mean toning colour
    tint_hue: float

    @property
    def is_grayscale(self) -> bool:
        return self.tone != "colour"


def read_tone(rgb: np.ndarray) -> ToneReading:
    """Tone of a float32 HxWx3 RGB photo in [0, 1]; monochrome ones carry their tint."""
    lab = cv2.cvtColor(_analysis_copy(rgb), cv2.COLOR_RGB2Lab)
    lightness = lab[..., 0]
    centres, a_curve, b_curve = _toning_curve(lightness.ravel(), lab[..., 1].ravel(), lab[..., 2].ravel())
    tone_a = np.interp(lightness, centres, a_curve).astype(np.float32)
    tone_b = np.interp(lightness, centres, b_curve).astype(np.float32)
    unexplained = _unexplained_chroma(lab, tone_a, tone_b)
    tint_a, tint_b = float(tone_a.mean()), float(tone_b.mean())
    tint_chroma = float(np.hypot(tint_a, tint_b))
    tint_hue = float(np.degrees(np.arctan2(tint_b, tint_a)) % 360.0)
    return ToneReading(_tone_label(unexplained, tint_chroma, tint_hue), unexplained, tint_chroma, tint_hue)


def is_grayscale(rgb: np.ndarray) -> bool:
    """True for greyscale and toned monochrome photos, False for colour photos."""
    return read_tone(rgb).is_grayscale


def tone(rgb: np.ndarray) -> str:
    """"grey", "sepia", "cyanotype", "toned" or "colour"."""
    return read_tone(rgb).tone


def _tone_label(unexplained: float, tint_chroma: float, tint_hue: float) -> str:
    if unexplained >= COLOUR_LIMIT:
        return "colour"
    if tint_chroma < GREY_TINT_LIMIT:
        return "grey"
    if SEPIA_HUES[0] <= tint_hue < SEPIA_HUES[1]:
        return "sepia"
    if CYANOTYPE_HUES[0] <= tint_hue < CYANOTYPE_HUES[1]:
        return "cyanotype"
    return "toned"


def _analysis_copy(rgb: np.ndarray) -> np.ndarray:
    # Plain subsampling first, to at most 4x the analysis size: area-averaging all 24 MP costs
    # ~100 ms (memory bound), the subsampled copy ~5 ms, and 4x4 averaging still tames noise.
    stride = max(1, max(rgb.shape[:2]) // (4 * ANALYSIS_LONG_SIDE))
    small = np.ascontiguousarray(rgb[::stride, ::stride, :3], dtype=np.float32)
    height, width = small.shape[:2]
    scale = min(ANALYSIS_LONG_SIDE / max(height, width), 1.0 / MIN_REDUCTION)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.clip(small, 0.0, 1.0))


def _unexplained_chroma(lab: np.ndarray, tone_a: np.ndarray, tone_b: np.ndarray) -> float:
    """Chroma-weighted high percentile of the smoothed chroma that the toning curve misses."""
    a_channel, b_channel = lab[..., 1], lab[..., 2]
    window = (RESIDUAL_SMOOTHING, RESIDUAL_SMOOTHING)
    a_residual, b_residual = _without_fading(
        cv2.blur(a_channel - tone_a, window), cv2.blur(b_channel - tone_b, window),
        cv2.blur(tone_a, window), cv2.blur(tone_b, window))
    residual = np.hypot(a_residual, b_residual) - NOISE_MARGIN * _smoothed_noise(a_channel, b_channel)
    chroma = np.hypot(cv2.blur(a_channel, window), cv2.blur(b_channel, window))
    weights = np.maximum(chroma, WEIGHT_FLOOR)
    return _weighted_percentile(np.maximum(residual, 0.0), weights, RESIDUAL_PERCENTILE)


def _without_fading(
    a_residual: np.ndarray, b_residual: np.ndarray, tone_a: np.ndarray, tone_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The residuals less any part that only moves a pixel from the print's tone towards neutral.

    Damage to a toned print (white scratches, dust, dark dirt) and clipped highlights take the
    tone away; they never add another hue. A colour photo's colours differ in other directions too.
    """
    strength = np.maximum(np.hypot(tone_a, tone_b), 1e-6)
    unit_a, unit_b = tone_a / strength, tone_b / strength
    fading = np.clip(-(a_residual * unit_a + b_residual * unit_b), 0.0, strength)
    return a_residual + fading * unit_a, b_residual + fading * unit_b


def _smoothed_noise(a_channel: np.ndarray, b_channel: np.ndarray) -> np.ndarray:
    """Local standard deviation of the chroma noise left after RESIDUAL_SMOOTHING, per pixel."""
    a_fine = a_channel - cv2.blur(a_channel, (3, 3))
    b_fine = b_channel - cv2.blur(b_channel, (3, 3))
    # For white noise of deviation s, a pixel minus its 3x3 mean has variance s^2 * 8/9; a box
    # of w x w pixels divides the deviation by w.
    variance = cv2.blur((a_fine**2 + b_fine**2) / 2, (NOISE_WINDOW, NOISE_WINDOW)) * (9 / 8)
    return np.sqrt(np.maximum(variance, 0.0)) / RESIDUAL_SMOOTHING


def _weighted_percentile(values: np.ndarray, weights: np.ndarray, percentile: float) -> float:
    order = np.argsort(values, axis=None)
    cumulative = np.cumsum(weights.ravel()[order], dtype=np.float64)
    index = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0))
    return float(values.ravel()[order[min(index, order.size - 1)]])


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
# gradient) is used: clean photos read 0.2..1.9, true noise 5 reads 4.1..5.7 (docs/NOTES.md,
# "Noise estimate"; all pixels read clean photos as up to 4.9).
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
