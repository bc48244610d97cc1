"""Colorize (issue 6): DDColor colour for greyscale and toned monochrome photos, at full resolution.

DDColor predicts colour, as Lab (a, b), for a 512x512 grey image. Colour varies slowly across a
photo while its detail lives in the lightness, so only the predicted (a, b) is upsampled to the
photo's size and combined with the photo's own full-resolution L: a 4000 px scan keeps every
pixel of its detail. The tone of a sepia or cyanotype print is dropped by working from L alone.

The model input is built exactly as modelscope's DDColor pipeline builds it (resize the photo to
512x512 with cv2's default bilinear filter, take L, convert Lab (L, 0, 0) back to RGB); only the
way back differs: (a, b) is upsampled bilinearly instead of by nearest neighbour, which would
leave 8x8 blocks of colour on a 4000 px photo.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from pipelines.base import Picture, Step, StepContext, StepOutcome
from pipelines.params import Param

BUNDLE = "colorization"
MODEL_ID = "ddcolor-weights"
STAGE = "Colorizing..."
SKIPPED_COLOUR_PHOTO = "the photo already has colour"
STRENGTH = Param("strength", "number", 85, "Colour intensity: 0 leaves the photo grey, 100 applies the model's "
                 "full colour.", 0, 100)


def run(image: Picture, params: Mapping[str, Any], ctx: StepContext) -> StepOutcome:
    from pipelines.analysis import is_grayscale

    strength = params["strength"]
    if not is_grayscale(image.rgb):
        return StepOutcome(image=image, measurements={"colorized": False, "isGrayscale": False},
                           skipped=SKIPPED_COLOUR_PHOTO)
    ctx.progress(0.05, STAGE)
    colorizer = ctx.model(MODEL_ID, BUNDLE)
    rgb = colorize(image.rgb, strength, colorizer, ctx)
    ctx.progress(1.0, STAGE)
    return StepOutcome(image=image.with_rgb(rgb), measurements={"colorized": True, "isGrayscale": True})


def colorize(rgb: np.ndarray, strength: float, colorizer: Any, ctx: StepContext) -> np.ndarray:
    """Full-resolution colour for a monochrome photo; ``strength`` (0-100) scales the chroma."""
    from pipelines.models.ddcolor import INPUT_SIDE

    # Luminance alone: the print's tone (sepia, cyanotype) is neutralised here.
    luminance = relative_luminance(rgb)
    model_input = model_input_from_neutral(encode_srgb(luminance), INPUT_SIDE)
    ctx.progress(0.15, STAGE)
    ctx.check_cancelled()
    predicted_ab = colorizer.predict_ab(model_input)
    ctx.check_cancelled()
    ctx.progress(0.85, STAGE)
    ab = upsample_ab(predicted_ab, luminance.shape) * np.float32(strength / 100.0)
    return with_chroma_in_bands(luminance, ab)


# Rows combined at a time: keeps the dozen full-size float temporaries of the colour maths small
# (a 24 MP photo would otherwise hold about 2 GB of them at once).
BAND_ROWS = 256


def with_chroma_in_bands(luminance: np.ndarray, ab: np.ndarray) -> np.ndarray:
    result = np.empty(luminance.shape + (3,), np.float32)
    for top in range(0, luminance.shape[0], BAND_ROWS):
        band = slice(top, top + BAND_ROWS)
        result[band] = with_chroma(luminance[band], ab[band])
    return result


def model_input_from_neutral(neutral: np.ndarray, side: int) -> np.ndarray:
    """modelscope's DDColor preprocessing of a neutral photo (HxW, one channel), step for step.

    Resize to side x side (cv2's default, bilinear), convert to Lab with cv2, keep L, convert
    Lab (L, 0, 0) back to RGB with cv2. For a grey photo ``neutral`` equals the photo itself, so
    the model sees exactly what modelscope's pipeline would feed it.
    """
    import cv2

    from pipelines.models.ddcolor import grey_from_lightness, lightness_of

    # cv2 resizes each channel alike, so one channel resized and copied equals the grey RGB resized.
    resized = cv2.resize(np.ascontiguousarray(neutral, dtype=np.float32), (side, side))
    return grey_from_lightness(lightness_of(np.repeat(resized[..., None], 3, axis=2)))


def upsample_ab(ab: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(a, b) resized bilinearly to ``shape`` (height, width): smooth colour, no blocks."""
    import cv2

    height, width = shape[:2]
    resized = cv2.resize(ab.astype(np.float32, copy=False), (width, height), interpolation=cv2.INTER_LINEAR)
    return resized.reshape(height, width, 2)


# Exact sRGB / CIE Lab (D65) at full resolution, with OpenCV's constants. OpenCV's own float
# conversion interpolates its gamma curve: a round trip moved pixels by up to 0.002 (half an 8-bit
# level, 128 levels of a 16-bit file) and L by up to 0.25, so it is used only where modelscope
# uses it, on the 512x512 model input.
_LUMINANCE_WEIGHTS = np.array([0.212671, 0.715160, 0.072169], np.float32)
_WHITE_X, _WHITE_Z = 0.950456, 1.088754
# XYZ -> linear sRGB, columns for X and Z only: Y's column is applied as the neutral part itself.
_RGB_FROM_X = np.array([3.240479, -0.969256, 0.055648], np.float32)
_RGB_FROM_Z = np.array([-0.498535, 0.041556, 1.057311], np.float32)
_LAB_EPSILON = 0.008856  # (6/29)^3: below it Lab's cube root turns into a straight line


def relative_luminance(rgb: np.ndarray) -> np.ndarray:
    """CIE Y (linear, 0..1) of float32 sRGB in [0, 1]; HxW float32."""
    return decode_srgb(np.clip(rgb[..., :3], 0.0, 1.0)) @ _LUMINANCE_WEIGHTS


def with_chroma(luminance: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] with this luminance and Lab chroma (a, b); out-of-gamut colours clip.

    Written as the neutral grey plus what (a, b) adds, so zero chroma gives R = G = B exactly, with
    the input's own luminance (the standard Lab -> RGB matrices are only neutral to ~2e-6).
    """
    lab_fy = _lab_f(luminance)
    # Against f^-1(f(Y)) rather than Y, so zero chroma cancels bit for bit despite rounding.
    neutral = _lab_f_inverse(lab_fy)
    delta_x = _WHITE_X * (_lab_f_inverse(lab_fy + ab[..., 0] / 500.0) - neutral)
    delta_z = _WHITE_Z * (_lab_f_inverse(lab_fy - ab[..., 1] / 200.0) - neutral)
    linear = luminance[..., None] + delta_x[..., None] * _RGB_FROM_X + delta_z[..., None] * _RGB_FROM_Z
    return encode_srgb(np.clip(linear, 0.0, 1.0))


def decode_srgb(encoded: np.ndarray) -> np.ndarray:
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4).astype(np.float32)


def encode_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055).astype(np.float32)


def _lab_f(ratio: np.ndarray) -> np.ndarray:
    return np.where(ratio > _LAB_EPSILON, np.cbrt(ratio), 7.787 * ratio + 16.0 / 116.0).astype(np.float32)


def _lab_f_inverse(value: np.ndarray) -> np.ndarray:
    return np.where(value > 6.0 / 29.0, value**3, (value - 16.0 / 116.0) / 7.787).astype(np.float32)


def lightness(rgb: np.ndarray) -> np.ndarray:
    """CIE L (0..100) of float32 sRGB, exactly; for measurements and tests."""
    return 116.0 * _lab_f(relative_luminance(rgb)) - 16.0


STEP = Step(name="colorize", stage=STAGE, run=run, params=(STRENGTH,), bundle=BUNDLE, weight=2.0)
