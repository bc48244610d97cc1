"""Background removal (issue 7, seed 003): a cutout with alpha, a greyscale mask, or a cutout on a colour.

The mask comes from a rembg session of the background-removal bundle (``ctx.models``), one model
per quality level. Inputs larger than the quality's maximum side are resized down proportionally
first, exactly as the remove-bg tool predicts its output size. rembg itself is imported only when
a session is loaded or alpha matting runs, never at module import (its first import is slow).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

import numpy as np

from pipelines.base import Picture, Step, StepContext, StepOutcome, scaled_size
from pipelines.imaging.pixels import from_unit_float
from pipelines.params import Param

BUNDLE = "background-removal"
MODEL_FOR_QUALITY = {"low": "u2netp", "medium": "isnet-general-use", "high": "birefnet-general"}
# Seed 003: larger inputs are resized down proportionally before processing (the remove-bg tool
# promises its output size from these).
MAX_INPUT_SIDE = {"low": 2048, "medium": 2048, "high": 4096}
EXTRA_RESULT = "background_removed"
# rembg.remove's alpha-matting defaults (8-bit trimap thresholds, erosion in pixels), for parity.
MATTING_FOREGROUND_THRESHOLD = 240
MATTING_BACKGROUND_THRESHOLD = 10
MATTING_ERODE_SIZE = 10

QUALITY = Param("quality", "string", "medium", "low: u2netp; medium: isnet-general-use; high: BiRefNet (fine edges).",
                choices=tuple(MODEL_FOR_QUALITY))
RETURN_MASK = Param("returnMask", "boolean", False, "Return a greyscale mask (white = foreground) instead of the "
                    "cutout.")
ALPHA_MATTING = Param("alphaMatting", "boolean", False, "Refine fine edges (hair, fur) with alpha matting.")
BACKGROUND = Param("background", "string", None, "Composite onto this colour (#rrggbb) instead of transparency.",
                   pattern="#[0-9a-fA-F]{6}")
PARAMS = (QUALITY, RETURN_MASK, ALPHA_MATTING, BACKGROUND,
          Param("asExtra", "boolean", False, "Keep the image and return the cutout as an extra result."))


def run(image: Picture, params: Mapping[str, Any], ctx: StepContext) -> StepOutcome:
    quality = params["quality"]
    model_id = MODEL_FOR_QUALITY[quality]
    background = parse_colour(params["background"])
    ctx.progress(0.05, "Loading the background-removal model...")
    session = ctx.model(model_id, BUNDLE)
    ctx.check_cancelled()
    working, resized_to = limit_size(image, MAX_INPUT_SIDE[quality])
    ctx.progress(0.2, "Finding the subject...")
    rgb, alpha, matting = _cut_out(working, session, params["alphaMatting"], ctx)
    ctx.check_cancelled()
    result = _render(working, rgb, alpha, params["returnMask"], background)
    measurements = {"backgroundRemoval": {
        "quality": quality, "model": model_id, "resizedTo": resized_to,
        "foregroundFraction": round(float(np.mean(alpha >= 0.5)), 4), "alphaMatting": matting}}
    if params["asExtra"]:
        return StepOutcome(image=image, measurements=measurements, extras={EXTRA_RESULT: result})
    return StepOutcome(image=result, measurements=measurements)


def parse_colour(value: str | None) -> np.ndarray | None:
    """'#rrggbb' (the spec's pattern) → float32 RGB in [0, 1]; None stays None (keep transparency)."""
    if value is None:
        return None
    return np.array([int(value[i:i + 2], 16) for i in (1, 3, 5)], np.float32) / 255.0


def limit_size(image: Picture, max_side: int) -> tuple[Picture, list[int] | None]:
    """Resize down proportionally so the long side is at most ``max_side``; returns the new [w, h].

    The rounding matches the remove-bg tool's ``output_size``, so the promised size is the real one.
    """
    factor = max_side / max(image.width, image.height)
    if factor >= 1.0:
        return image, None
    import cv2

    size = scaled_size(image.width, image.height, factor)
    # INTER_AREA averages the pixels each output pixel covers: no aliasing when shrinking.
    rgb = cv2.resize(image.rgb, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], 3)
    alpha = None
    if image.alpha is not None:
        alpha = cv2.resize(image.alpha, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0])
    return replace(image, rgb=rgb, alpha=alpha), list(size)


def _cut_out(working: Picture, session: Any, alpha_matting: bool,
             ctx: StepContext) -> tuple[np.ndarray, np.ndarray, str]:
    """The foreground colours, the final alpha (model or matting, times any input alpha), and
    what became of alpha matting."""
    from PIL import Image

    pil = Image.fromarray(to_uint8(working.rgb), "RGB")
    mask = session.predict(pil)[0]
    rgb, alpha, matting = working.rgb, np.asarray(mask, np.float32) / 255.0, "off"
    if alpha_matting:
        ctx.check_cancelled()
        ctx.progress(0.6, "Refining edges...")
        rgb, alpha, matting = _matte(pil, mask, rgb, alpha)
    if working.alpha is not None:
        alpha = alpha * working.alpha  # what was already transparent stays transparent
    return rgb, alpha, matting


def _matte(pil: Any, mask: Any, rgb: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """rembg's closed-form alpha matting: a finer alpha and de-fringed foreground colours.

    pymatting raises ValueError when the trimap has no sure foreground or background (an empty or
    full mask) or its solver does not converge; the model's mask is then kept and the reason is
    reported in the measurements.
    """
    from rembg.bg import alpha_matting_cutout

    try:
        cutout = alpha_matting_cutout(pil, mask, MATTING_FOREGROUND_THRESHOLD,
                                      MATTING_BACKGROUND_THRESHOLD, MATTING_ERODE_SIZE)
    except ValueError as exc:
        return rgb, alpha, f"not applied: {exc}"
    rgba = np.asarray(cutout, np.float32) / 255.0
    return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]), "applied"


def _render(working: Picture, rgb: np.ndarray, alpha: np.ndarray, return_mask: bool,
            background: np.ndarray | None) -> Picture:
    if return_mask:
        # A mask is data, not colour: no ICC profile, and 8 bits is all the model gives.
        info = {key: value for key, value in working.info.items() if key != "icc_profile"}
        return Picture(rgb=np.repeat(alpha[..., None], 3, axis=2), alpha=None, bit_depth=8, info=info)
    if background is not None:
        coverage = alpha[..., None]
        composite = rgb * coverage + background * (1.0 - coverage)
        return replace(working, rgb=composite.astype(np.float32), alpha=None)
    return replace(working, rgb=rgb, alpha=alpha.astype(np.float32))


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return from_unit_float(rgb, np.uint8)


STEP = Step(name="remove_background", stage="Removing background...", run=run, params=PARAMS, bundle=BUNDLE,
            weight=2.0)
