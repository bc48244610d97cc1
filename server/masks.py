"""The caller's repair mask (restore-photo's ``mask`` part), checked and normalised before queueing.

A mask is any image the decoders read, white = repair here. It is decoded in the same isolated,
limited child as photos, so a hostile mask can only fail its request. Where the mask has
transparency, its opaque pixels (alpha > 0.5) are the ones to repair (a painted layer); else its
light pixels (luminance > 0.5). Its aspect ratio must match the photo's; any other size is scaled
to the photo's (nearest). It is stored as a black-and-white 8-bit PNG at the photo's size, so
the worker only has to decode and threshold it.
"""
from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.base import Picture, PipelineError
from pipelines.imaging.isolated import decode_isolated, probe_header
from pipelines.imaging.sniff import ImageHeader
from server.errors import InvalidParams
from server.settings import Settings
from server.uploads import StoredUpload

MASK_FILE = "mask.png"
# Aspect ratios within 1% are the same picture (rounding when a client scaled the mask).
ASPECT_TOLERANCE = 0.01
# A mask painted at twice the photo's size (a high-DPI canvas) is fine; far more is an attack.
MAX_MASK_PIXEL_RATIO = 4
# Rec. 601 weights, as Pillow's "L" conversion: how light a pixel looks.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


async def normalised_mask(mask: StoredUpload, photo: ImageHeader, settings: Settings,
                          probes: asyncio.Semaphore) -> StoredUpload:
    """The mask as a black/white PNG at the photo's size in the temporary folder (fsynced: the job is
    durable once we answer 202). Raises 400 INVALID_MASK or MASK_ASPECT_MISMATCH. ``probes`` bounds
    the isolated probes and decodes running at once."""
    if mask.size == 0:
        raise _invalid("The mask file is empty.")
    try:
        async with probes:
            header = await probe_header(mask.path, timeout_s=settings.probe_timeout_s, max_pixels=settings.max_pixels)
            if header is None:
                raise _invalid("The mask is not an image in a supported format.")
            _check_aspect(header, photo)
            _check_pixels(header, photo)
            picture = await asyncio.to_thread(decode_isolated, mask.path, settings.tmp_dir,
                                              timeout_s=settings.decode_timeout_s, max_pixels=settings.max_pixels)
    except (PipelineError, Image.DecompressionBombError) as exc:
        raise _invalid(f"The mask could not be read: {getattr(exc, 'message', exc)}") from None
    path = await asyncio.to_thread(_write_mask, repair_pixels(picture), (photo.width, photo.height), settings.tmp_dir)
    return StoredUpload(path=path, filename=MASK_FILE, size=path.stat().st_size)


def repair_pixels(picture: Picture) -> np.ndarray:
    """Bool HxW: True where the mask asks for a repair."""
    if picture.alpha is not None and bool((picture.alpha < 0.5).any()):
        return picture.alpha > 0.5
    return picture.rgb @ _LUMA > 0.5


def _check_aspect(mask: ImageHeader, photo: ImageHeader) -> None:
    mask_ratio, photo_ratio = mask.width / mask.height, photo.width / photo.height
    if abs(mask_ratio - photo_ratio) > ASPECT_TOLERANCE * photo_ratio:
        raise InvalidParams(f"The mask is {mask.width}×{mask.height} pixels, which is not the shape of the "
                            f"{photo.width}×{photo.height} photo; send it at the photo's size.",
                            code="MASK_ASPECT_MISMATCH", field="mask", maskSize=[mask.width, mask.height],
                            photoSize=[photo.width, photo.height])


def _check_pixels(mask: ImageHeader, photo: ImageHeader) -> None:
    """A mask needs no more pixels than its photo: refuse one over MAX_MASK_PIXEL_RATIO times as many
    before decoding it (a tiny all-black PNG can claim 100 megapixels)."""
    if mask.width * mask.height > MAX_MASK_PIXEL_RATIO * photo.width * photo.height:
        raise InvalidParams(f"The mask is {mask.width}×{mask.height} pixels, far larger than the "
                            f"{photo.width}×{photo.height} photo; send it at the photo's size.",
                            code="MASK_TOO_LARGE", field="mask", maskSize=[mask.width, mask.height],
                            photoSize=[photo.width, photo.height])


def _write_mask(repair: np.ndarray, size: tuple[int, int], folder: Path) -> Path:
    image = Image.fromarray(np.where(repair, np.uint8(255), np.uint8(0)), "L")
    if image.size != size:
        image = image.resize(size, Image.Resampling.NEAREST)
    # "upload-" like every upload: a crash before the job takes it leaves it to the start-up sweep.
    path = folder / f"upload-{uuid.uuid4().hex}-mask.png"
    try:
        with open(path, "wb") as out:
            image.save(out, "PNG")
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _invalid(message: str) -> InvalidParams:
    return InvalidParams(message, code="INVALID_MASK", field="mask")
