"""Fill the damage a mask marks: LaMa when the photo-restoration bundle provides it, else Telea.

Both run on native-resolution crops around the damage, never on a resized photo, so memory stays
bounded on a 24 MP scan and LaMa sees the grain and detail it must continue. The photo is cut
into CELL x CELL cells; every cell that holds damage (or LaMa's feathered edge) gives one crop:
the bounding box of its damage plus CONTEXT pixels on every side, at most CROP_SIDE square. A
crop reads the original photo and its whole mask, but writes only the pixels of its own cell, so
every pixel is written once and the crops' order does not matter. Long scratches span several
cells, hence several crops; their context overlaps, so the fills meet without a seam.

LaMa regenerates the damage and a FEATHER-pixel ring around it; the ring is blended into the
original with a weight falling off with distance, which hides the edge of the patch (a damage
mask seldom covers a scratch's anti-aliased fringe exactly). Telea changes masked pixels only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import cv2
import numpy as np

from pipelines.base import ModelUnavailable, StepContext
from pipelines.imaging.pixels import from_unit_float
from pipelines.models.lama import MODEL_ID as LAMA_MODEL_ID
from pipelines.models.lama import inpaint_crop

log = logging.getLogger("restora.inpainting")
STAGE = "Inpainting..."
CROP_SIDE = 512  # LaMa's cost grows with the crop; 512 is a multiple of 8, so padding never enlarges it
CONTEXT = 64  # pixels of undamaged photo around the damage in every crop
CELL = CROP_SIDE - 2 * CONTEXT
FEATHER = 2  # LaMa's blended ring, in pixels outside the mask
# Telea's reach: 3 px on photos up to 2048 px, growing with the long side (a scratch on a larger
# scan is more pixels wide); always well inside CONTEXT.
TELEA_RADIUS = 3
TELEA_REFERENCE_SIDE = 2048

Region = tuple[slice, slice]
WindowFill = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (RGB window, bool holes) -> filled RGB


@dataclass(frozen=True)
class Crop:
    owned: Region  # the pixels this crop writes (inside one cell)
    window: Region  # what the fill reads: the owned box plus context

    @property
    def inner(self) -> Region:
        """``owned`` in the window's coordinates."""
        rows, cols = self.owned
        top, left = self.window[0].start, self.window[1].start
        return slice(rows.start - top, rows.stop - top), slice(cols.start - left, cols.stop - left)


def fill_damage(rgb: np.ndarray, mask: np.ndarray, bit_depth: int, ctx: StepContext) -> tuple[np.ndarray, str]:
    """Float RGB ``rgb`` with the pixels of bool ``mask`` filled, and the method used: "lama",
    "telea", or "none" when the mask is empty (``rgb`` itself is returned then). Reports progress
    once per crop and checks for cancellation before each."""
    if not mask.any():
        return rgb, "none"
    model = _lama(ctx)
    if model is None:
        telea = partial(_telea, radius=telea_radius(mask.shape), bit_depth=bit_depth)
        return _fill_crops(rgb, mask, damage_crops(mask, reach=0), telea, 0, ctx), "telea"
    lama = partial(inpaint_crop, model, device=ctx.device)
    return _fill_crops(rgb, mask, damage_crops(mask, reach=FEATHER), lama, FEATHER, ctx), "lama"


def _lama(ctx: StepContext) -> Any:
    """The loaded LaMa, or None when no provider or no installed bundle offers it: the classical
    fill is the documented behaviour without the bundle, not an error."""
    try:
        return ctx.model(LAMA_MODEL_ID)
    except ModelUnavailable as exc:
        # An install of photo-restoration from before LaMa joined it (1.0.0) lands here too.
        log.info("LaMa unavailable (%s): filling with Telea", exc.message)
        return None


def telea_radius(shape: tuple[int, ...]) -> int:
    return TELEA_RADIUS * -(-max(shape[:2]) // TELEA_REFERENCE_SIDE)


def _fill_crops(rgb: np.ndarray, mask: np.ndarray, crops: list[Crop], fill: WindowFill, feather: int,
                ctx: StepContext) -> np.ndarray:
    repaired = rgb.copy()
    for index, crop in enumerate(crops):
        ctx.check_cancelled()
        weight = feather_weights(mask[crop.window], feather)
        filled = fill(rgb[crop.window], weight > 0)
        _paste(repaired, rgb, filled, weight, crop)
        ctx.progress((index + 1) / len(crops), STAGE)
    return repaired


def feather_weights(mask: np.ndarray, feather: int) -> np.ndarray:
    """1 on the mask, falling linearly to 0 at ``feather + 1`` px (Euclidean) from it. Every
    pixel with a weight lies within ``feather`` px (chessboard) of the mask."""
    if feather == 0:
        return mask.astype(np.float32)
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.clip(1.0 - distance / (feather + 1), 0.0, 1.0).astype(np.float32)


def _paste(target: np.ndarray, source: np.ndarray, filled: np.ndarray, weight: np.ndarray, crop: Crop) -> None:
    """Blend the fill into the crop's owned pixels by ``weight``; weight 1 copies the fill exactly."""
    inner = crop.inner
    share = weight[inner]
    where = share > 0
    share = share[where][:, None]
    region = target[crop.owned]
    region[where] = source[crop.owned][where] * (1.0 - share) + filled[inner][where] * share


def damage_crops(mask: np.ndarray, reach: int) -> list[Crop]:
    """One crop per cell holding a masked pixel or a pixel within ``reach`` px (chessboard) of one."""
    height, width = mask.shape
    crops = []
    for top in range(0, height, CELL):
        for left in range(0, width, CELL):
            owned = _touched_box(mask, top, left, reach)
            if owned is not None:
                crops.append(Crop(owned, _grown(owned, CONTEXT, mask.shape)))
    return crops


def _touched_box(mask: np.ndarray, top: int, left: int, reach: int) -> Region | None:
    """The bounding box of the cell's pixels within ``reach`` of the mask (which may lie outside it)."""
    grown_top, grown_left = max(0, top - reach), max(0, left - reach)
    near = mask[grown_top:top + CELL + reach, grown_left:left + CELL + reach]
    if not near.any():
        return None
    if reach:
        near = cv2.dilate(near.astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)) > 0
    cell = near[top - grown_top:top - grown_top + CELL, left - grown_left:left - grown_left + CELL]
    rows, cols = np.flatnonzero(cell.any(axis=1)), np.flatnonzero(cell.any(axis=0))
    if rows.size == 0:
        return None
    return slice(top + rows[0], top + rows[-1] + 1), slice(left + cols[0], left + cols[-1] + 1)


def _grown(box: Region, margin: int, shape: tuple[int, ...]) -> Region:
    rows, cols = box
    return (slice(max(0, rows.start - margin), min(shape[0], rows.stop + margin)),
            slice(max(0, cols.start - margin), min(shape[1], cols.stop + margin)))


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
