"""Where the damage is: the repair mask restore-photo fills.

(Work in progress: today this is the straight-line pass of :mod:`pipelines.scratch_detection`;
the curved-damage pass is added next.)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pipelines.base import StepContext
from pipelines.scratch_detection import band_masks

STAGE = "Finding damage..."


def detect_damage(rgb: np.ndarray, protect_boxes: Sequence[Sequence[float]], ctx: StepContext) -> np.ndarray:
    """A bool HxW mask (True = repair here) for float RGB ``rgb`` in [0, 1]. Pixels inside
    ``protect_boxes`` ([x0, y0, x1, y1]) are never marked. Reports progress 0..1 on ``ctx``."""
    full = np.zeros(rgb.shape[:2], bool)
    for band in band_masks(rgb, protect_boxes, ctx, STAGE):
        first = band.rows[0] + band.owned.start
        full[first:band.rows[0] + band.owned.stop] = band.mask[band.owned]
    return full
