"""Scratch, crack and fold-line repair: find the damage (:mod:`pipelines.damage_detection`), add
the caller's own mask, then fill it (:mod:`pipelines.inpainting`: LaMa when the photo-restoration
bundle is installed, else Telea). Only the repaired pixels change (LaMa: plus a feathered edge)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from pipelines.base import Picture, Step, StepContext, StepOutcome
from pipelines.damage_detection import DETECTORS, detect_damage
from pipelines.faces import face_boxes
from pipelines.inpainting import fill_damage
from pipelines.params import Param
from pipelines.scratch_detection import scratch_mask

__all__ = ["STEP", "run", "scratch_mask"]
STAGE = "Removing scratches..."
DETECT_SHARE = 0.5  # of the step's progress bar; the fill has the rest, one report per crop
DETECTOR = Param("detector", "string", "standard", "Damage detector: standard, or conservative (leaves letters, "
                 "dials, lattices and fine patterns alone; finds less damage).", choices=tuple(DETECTORS))
PARAMS = (
    Param("detect", "boolean", True, "Find the damage (off: repair only the caller's mask)."),
    DETECTOR,
    Param("protectFaces", "boolean", False, "Leave detected faces untouched (enhance's restore mode)."),
    Param("protect_boxes", "boxes", (), "Pixel boxes [x0, y0, x1, y1] left untouched."),
)


def run(image: Picture, params: Mapping[str, Any], ctx: StepContext) -> StepOutcome:
    protect = _protected_boxes(image, params, ctx)
    mask = _damage_mask(image, protect, params, ctx)
    repaired, method = fill_damage(image.rgb, mask, image.bit_depth, _share_of(ctx, DETECT_SHARE, 1.0))
    coverage = round(100.0 * np.count_nonzero(mask) / mask.size, 2)
    measurements: dict[str, Any] = {"scratchCoverage": coverage, "inpainting": method}
    if params["protectFaces"]:
        measurements["protectedFaces"] = [list(box) for box in protect]
    return StepOutcome(image=image.with_rgb(repaired), measurements=measurements, damage_mask=mask)


def _damage_mask(image: Picture, protect: Sequence[Sequence[float]], params: Mapping[str, Any],
                 ctx: StepContext) -> np.ndarray:
    if params["detect"]:
        mask = detect_damage(image.rgb, protect, _share_of(ctx, 0.0, DETECT_SHARE), params["detector"])
    else:
        mask = np.zeros((image.height, image.width), bool)
    if ctx.user_mask is not None:
        # What a person painted is repaired even inside protected (face) boxes: they asked for it.
        mask = mask | ctx.user_mask.astype(bool)
    return mask


def _share_of(ctx: StepContext, start: float, stop: float) -> StepContext:
    """``ctx`` reporting into [start, stop] of this step's bar, always under the step's stage text."""
    return replace(ctx, report=lambda fraction, _stage: ctx.progress(start + fraction * (stop - start), STAGE))


def _protected_boxes(image: Picture, params: Mapping[str, Any], ctx: StepContext) -> list:
    """Explicit boxes, plus detected faces when asked to leave faces untouched (enhance's restore
    mode, seed 000): RetinaFace when the photo-restoration bundle is installed, else Haar."""
    boxes = list(params["protect_boxes"])
    if params["protectFaces"]:
        boxes += face_boxes(image.rgb, ctx)
    return boxes


STEP = Step(name="scratch_removal", stage=STAGE, run=run, params=PARAMS, weight=2.0)
