"""Scene-linear floats (OpenEXR, Radiance HDR) to display-referred 16-bit sRGB.

OpenCV's Reinhard/Drago operators produced NaNs on real files, so the operator is spelled out:
NaN and negatives become 0, the exposure is normalised by the 99th-percentile luminance, each
channel goes through Reinhard ``x / (1 + x)`` (written ``1 - 1/(1 + x)`` so +inf gives 1, not NaN),
then the sRGB curve, then a clip. It is scale-invariant: the same scene at any exposure gives the
same picture.
"""
from __future__ import annotations

import numpy as np

# The 99th-percentile luminance lands here before Reinhard: 2/(1+2) = 0.67 linear, 0.84 in sRGB,
# which leaves the brightest 1% room to roll off towards white instead of clipping.
TARGET_P99 = 2.0
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # Rec. 709 / sRGB primaries
_SAMPLE_PIXELS = 1 << 20  # the percentile of a strided sample is as good and far cheaper
_CHUNK_PIXELS = 1 << 20  # bounded temporaries: about 12 MB per float plane at a time


def tone_map(linear: np.ndarray) -> np.ndarray:
    """HxWx3 linear floats, any range (NaN and inf included), to HxWx3 uint16 sRGB."""
    if linear.ndim != 3 or linear.shape[2] != 3:
        raise ValueError(f"tone_map needs HxWx3 floats, got shape {linear.shape}")
    scale = exposure_scale(linear)
    out = np.empty(linear.shape, np.uint16)
    rows = max(1, _CHUNK_PIXELS // max(1, linear.shape[1]))
    for top in range(0, linear.shape[0], rows):
        out[top:top + rows] = _map_block(np.array(linear[top:top + rows], np.float32), scale)
    return out


def exposure_scale(linear: np.ndarray) -> float:
    """The factor that brings the 99th-percentile luminance to :data:`TARGET_P99`."""
    step = max(1, int(np.sqrt(linear.shape[0] * linear.shape[1] / _SAMPLE_PIXELS)))
    sample = _clean(np.array(linear[::step, ::step], np.float32))
    luminance = sample.reshape(-1, 3) @ _LUMA
    luminance = luminance[np.isfinite(luminance)]  # +inf pixels must not drag the exposure to 0
    p99 = float(np.percentile(luminance, 99)) if luminance.size else 0.0
    if not p99 > 0:  # mostly black: fall back to the brightest pixel, or leave black as black
        p99 = float(luminance.max()) if luminance.size else 0.0
    return TARGET_P99 / p99 if p99 > 0 else 1.0


def _clean(block: np.ndarray) -> np.ndarray:
    np.nan_to_num(block, copy=False, nan=0.0, posinf=np.inf, neginf=0.0)
    return np.maximum(block, 0.0, out=block)


def _map_block(block: np.ndarray, scale: float) -> np.ndarray:
    x = _clean(block)
    x *= np.float32(scale)
    x += 1.0
    np.reciprocal(x, out=x)
    np.subtract(1.0, x, out=x)  # Reinhard: 1 - 1/(1+x) == x/(1+x), and inf -> 1
    return _quantize16(_srgb_encode(x))


def _srgb_encode(x: np.ndarray) -> np.ndarray:
    low = x <= 0.0031308
    encoded = np.power(x, np.float32(1 / 2.4))
    encoded *= 1.055
    encoded -= 0.055
    encoded[low] = x[low] * 12.92
    return encoded


def _quantize16(x: np.ndarray) -> np.ndarray:
    np.clip(x, 0.0, 1.0, out=x)
    x *= 65535.0
    x += 0.5
    return x.astype(np.uint16)
