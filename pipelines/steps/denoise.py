"""Noise reduction: OpenCV non-local means, strength derived from the measured noise.

1. The noise standard deviation σ (per channel, 0..255 units) is estimated with
   :func:`pipelines.analysis.estimate_noise_sigma`. Below NOISE_FLOOR the photo is returned
   unchanged, skipped with the reason "no noticeable noise (σ≈1.3)".
2. ``params["strength"]`` (0..100, default 25) sets the filter strength h:

       h = σ · BEST_RATIO · sqrt(strength / 25)

   strength 0 changes nothing (skipped, "strength 0"); 25 (moderate) is the h that gave the best
   PSNR against the clean photo in our measurements; 100 (strong) doubles it. h grows
   monotonically with strength, so higher strength always smooths more.
3. The filter is ``cv2.fastNlMeansDenoising`` over the RGB channels jointly with the L1 patch
   norm, in uint8 for 8-bit photos and uint16 for 16-bit ones (OpenCV takes uint16 only with
   NORM_L1), so both depths get the same filter; it beat ``fastNlMeansDenoisingColored`` (Lab) by
   0.7..4.7 dB PSNR (docs/NOTES.md, "Denoise"). Photos whose three channels are identical are
   filtered as one channel (a third of the work).
4. The photo is processed in horizontal bands with BAND_OVERLAP rows of context, more than the
   filter's reach (search radius 10 + patch radius 3), so the result equals whole-image filtering.
"""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

from pipelines.analysis import estimate_noise_sigma
from pipelines.base import Picture, Step, StepContext, StepOutcome
from pipelines.imaging.pixels import from_unit_float
from pipelines.params import Param

STAGE = "Reducing noise..."
MODERATE_STRENGTH = 25  # the default: h = σ · BEST_RATIO exactly
STRENGTH = Param("strength", "number", MODERATE_STRENGTH, "Denoising strength.", 0, 100)

# Estimated σ below which the photo counts as clean. Measured (see analysis.py): 13 clean
# scikit-image photos read 0.2..1.9; the same photos with noise of σ 5 read 4.1..5.7.
NOISE_FLOOR = 3.0
# h / σ at strength 25 for three channels jointly (L1 norm). PSNR-best measured h/σ (σ 5, 10, 20):
# astronaut 1.6 / 1.6 / 1.3, coffee 1.3 / 1.3 / 1.3, chelsea 1.6 / 1.3 / 1.3.
BEST_RATIO = 1.3
# One channel instead of three: OpenCV divides the squared L1 patch distance (summed over the
# channels) by h² x channels, so equal weights need h / sqrt(3) (measured best h/σ for `camera`
# as one channel: 0.8 for σ 5, 10 and 20).
SINGLE_CHANNEL_SCALE = 1.0 / np.sqrt(3.0)
TEMPLATE_SIZE = 7
SEARCH_SIZE = 21
BAND_ROWS = 512
BAND_OVERLAP = 16  # > SEARCH_SIZE // 2 + TEMPLATE_SIZE // 2 = 13


def run(image: Picture, params: Mapping[str, Any], ctx: StepContext) -> StepOutcome:
    strength = params["strength"]
    if strength <= 0:
        return StepOutcome(image=image, skipped="strength 0")
    sigma = estimate_noise_sigma(image.rgb)
    measurements: dict[str, Any] = {"noiseSigma": round(sigma, 2)}
    if sigma < NOISE_FLOOR:
        reason = f"no noticeable noise (σ≈{sigma:.1f})"
        return StepOutcome(image=image, measurements=measurements, skipped=reason)
    filter_strength = filter_strength_for(sigma, strength)
    measurements["filterStrength"] = round(filter_strength, 2)
    denoised = denoise_rgb(image.rgb, filter_strength, image.bit_depth, ctx)
    return StepOutcome(image=image.with_rgb(denoised), measurements=measurements)


STEP = Step(name="denoise", stage=STAGE, run=run, params=(STRENGTH,), weight=3.0)


def filter_strength_for(sigma: float, strength: float) -> float:
    """The non-local means h (0..255 units, three channels) for noise σ and strength 0..100."""
    return sigma * BEST_RATIO * float(np.sqrt(max(strength, 0.0) / MODERATE_STRENGTH))


def denoise_rgb(rgb: np.ndarray, filter_strength: float, bit_depth: int, ctx: StepContext) -> np.ndarray:
    """Band-by-band non-local means of float RGB in [0, 1]; the result is a new float32 array."""
    height = rgb.shape[0]
    single_channel = _channels_identical(rgb)
    result = np.empty(rgb.shape, np.float32)
    starts = range(0, height, BAND_ROWS)
    for index, start in enumerate(starts):
        ctx.check_cancelled()
        stop = min(height, start + BAND_ROWS)
        top, bottom = max(0, start - BAND_OVERLAP), min(height, stop + BAND_OVERLAP)
        filtered = _filter_block(rgb[top:bottom], filter_strength, bit_depth, single_channel)
        result[start:stop] = filtered[start - top:stop - top]
        ctx.progress((index + 1) / len(starts), STAGE)
    return result


def _filter_block(
    block: np.ndarray, filter_strength: float, bit_depth: int, single_channel: bool
) -> np.ndarray:
    """Non-local means of one float RGB block at the photo's own bit depth."""
    scale = 255.0 if bit_depth == 8 else 65535.0
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    channels = block[..., :1] if single_channel else block
    quantized = np.ascontiguousarray(from_unit_float(channels, dtype))
    h = float(filter_strength * (SINGLE_CHANNEL_SCALE if single_channel else 1.0) * (scale / 255.0))
    filtered = cv2.fastNlMeansDenoising(quantized, [h], None, TEMPLATE_SIZE, SEARCH_SIZE, cv2.NORM_L1)
    filtered = filtered.reshape(channels.shape).astype(np.float32) / np.float32(scale)
    return np.repeat(filtered, 3, axis=2) if single_channel else filtered


def _channels_identical(rgb: np.ndarray) -> bool:
    """True for a grey photo stored as RGB; compared band by band to avoid a full-size temporary."""
    for start in range(0, rgb.shape[0], BAND_ROWS):
        rows = rgb[start:start + BAND_ROWS]
        if not (np.array_equal(rows[..., 0], rows[..., 1]) and np.array_equal(rows[..., 0], rows[..., 2])):
            return False
    return True
