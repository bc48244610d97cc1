"""Scratch, crack and fold-line repair without a model: detect (:mod:`pipelines.scratch_detection`),
then inpaint only the masked pixels with OpenCV Telea, band by band (8-bit, or 16-bit per channel)."""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

from pipelines.base import Picture, Step, StepContext, StepOutcome
from pipelines.imaging.pixels import from_unit_float
from pipelines.scratch_detection import BandMask, band_masks, scratch_mask

__all__ = ["STEP", "run", "scratch_mask"]
STAGE = "Removing scratches..."
INPAINT_RADIUS = 3


def run(image: Picture, params: Mapping[str, Any], ctx: StepContext) -> StepOutcome:
    repaired = image.rgb
    masked_pixels = 0
    protect = _protected_boxes(image, params, ctx)
    for band in band_masks(image.rgb, protect, ctx, STAGE):
        if band.mask.any():
            repaired = repaired if repaired is not image.rgb else image.rgb.copy()
            _inpaint_band(image.rgb, repaired, band, image.bit_depth)
        masked_pixels += int(np.count_nonzero(band.mask[band.owned]))
    coverage = round(100.0 * masked_pixels / (image.height * image.width), 2)
    measurements: dict[str, Any] = {"scratchCoverage": coverage}
    if params.get("protectFaces"):
        measurements["protectedFaces"] = [list(box) for box in protect]
    return StepOutcome(image=image.with_rgb(repaired), measurements=measurements)


def _protected_boxes(image: Picture, params: Mapping[str, Any], ctx: StepContext) -> list:
    """Explicit boxes, plus detected faces when asked to leave faces untouched (enhance's restore
    mode, seed 000): RetinaFace when the photo-restoration bundle is installed, else Haar."""
    boxes = list(params.get("protect_boxes") or ())
    if params.get("protectFaces"):
        from pipelines.faces import face_boxes
        from pipelines.steps.face_enhancement import detect_boxes

        boxes += face_boxes(image.rgb, ctx, retina=detect_boxes)
    return boxes


STEP = Step(name="scratch_removal", stage=STAGE, run=run, weight=2.0)


def _inpaint_band(source: np.ndarray, target: np.ndarray, band: BandMask, bit_depth: int) -> None:
    """Inpaint the band's rows of `source`; write the masked pixels the band owns into `target`."""
    radius = INPAINT_RADIUS * band.factor  # the same reach, in detection pixels, at any size
    box = _bounding_box(band.mask, margin=radius + 2)  # Telea reads nothing farther than its radius
    filled = _telea(source[band.rows[0]:band.rows[1]][box], band.mask[box], radius, bit_depth)
    write = np.zeros_like(band.mask)
    write[band.owned] = band.mask[band.owned]
    target[band.rows[0]:band.rows[1]][box][write[box]] = filled[write[box]]


def _telea(block: np.ndarray, mask: np.ndarray, radius: int, bit_depth: int) -> np.ndarray:
    """Telea inpainting of float RGB: one 8-bit pass for 8-bit photos, else 16 bits per channel."""
    mask8 = mask.astype(np.uint8)
    if bit_depth == 8:
        quantized = from_unit_float(block, np.uint8)
        return cv2.inpaint(quantized, mask8, radius, cv2.INPAINT_TELEA) / np.float32(255.0)
    filled = np.empty_like(block)
    for channel in range(3):
        plane = from_unit_float(block[..., channel], np.uint16)
        filled[..., channel] = cv2.inpaint(plane, mask8, radius, cv2.INPAINT_TELEA) / np.float32(65535.0)
    return filled


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (
        slice(max(0, rows[0] - margin), rows[-1] + margin + 1),
        slice(max(0, cols[0] - margin), cols[-1] + margin + 1),
    )
