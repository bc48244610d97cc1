"""What every decoder shares: integer pixels, the size check, orientation, carried metadata.

Decoders produce :class:`Decoded` (uint8 or uint16, the source's own precision) rather than floats:
it is a quarter of the memory, and it is what crosses from the isolated decoder to the worker.
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from pipelines.base import Picture
from pipelines.imaging.errors import ImageTooLarge

log = logging.getLogger(__name__)
ORIENTATION_TAG = 0x0112
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
# From a TIFF's first directory only these describe the photo; the rest (strip offsets, sample
# formats...) describe the file and would be nonsense in the output's EXIF.
_DESCRIPTIVE_TIFF_TAGS = (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


@dataclass(frozen=True)
class Decoded:
    """Decoded pixels: ``rgb`` HxWx3 and optional ``alpha`` HxW, both uint8 or both uint16."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def bit_depth(self) -> int:
        return 16 if self.rgb.dtype == np.uint16 else 8


def check_size(width: int, height: int, max_pixels: int | None) -> None:
    """Refuse before decoding: the header's size against the limit."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(f"The image ({width}×{height}) has more pixels than the limit of "
                            f"{max_pixels / 1e6:g} megapixels.", details={"maxPixels": max_pixels})


def to_picture(decoded: Decoded) -> Picture:
    """Floats in [0, 1] as the pipeline wants them; one allocation per plane."""
    return Picture(rgb=to_unit_float(decoded.rgb), bit_depth=decoded.bit_depth, info=decoded.info,
                   alpha=None if decoded.alpha is None else to_unit_float(decoded.alpha))


def to_unit_float(values: np.ndarray) -> np.ndarray:
    out = np.empty(values.shape, np.float32)
    np.divide(values, np.float32(np.iinfo(values.dtype).max), out=out)
    return out


def from_unit_float(values: np.ndarray, dtype: type) -> np.ndarray:
    """The inverse of to_unit_float: integers of ``dtype``, rounded half up, out-of-range clipped.

    Clipping before scaling gives the same integers as clipping after (0 and the maximum either
    way); every quantiser in the pipeline shares this one so their roundings cannot drift apart.
    """
    return (np.clip(values, 0.0, 1.0) * np.iinfo(dtype).max + 0.5).astype(dtype)


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels (HxW or HxWxC) into display orientation, as EXIF tag 274 asks."""
    if orientation == 2:
        pixels = pixels[:, ::-1]
    elif orientation == 3:
        pixels = pixels[::-1, ::-1]
    elif orientation == 4:
        pixels = pixels[::-1]
    elif orientation == 5:
        pixels = pixels.swapaxes(0, 1)
    elif orientation == 6:
        pixels = np.rot90(pixels, -1)
    elif orientation == 7:
        pixels = np.rot90(pixels, 2).swapaxes(0, 1)
    elif orientation == 8:
        pixels = np.rot90(pixels, 1)
    return np.ascontiguousarray(pixels)


def oriented(decoded: Decoded, orientation: int) -> Decoded:
    if orientation not in range(2, 9):
        return decoded
    alpha = None if decoded.alpha is None else apply_orientation(decoded.alpha, orientation)
    return Decoded(rgb=apply_orientation(decoded.rgb, orientation), alpha=alpha, info=decoded.info)


def arrays_from_pil(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB and alpha arrays from any Pillow mode; 16-bit grey stays 16-bit."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "F":
        grey = _grey16(img)
        return np.repeat(grey[..., None], 3, axis=2), None
    has_alpha = img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img if img.mode == "RGBA" else img.convert("RGBA"))
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB")), None


def split_channels(pixels: np.ndarray, *, bgr: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB and alpha from an HxW, HxWx1 (grey), HxWx2 (grey+alpha), HxWx3 or HxWx4 array."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"unexpected pixel layout {pixels.shape}")
    channels = pixels.shape[2]
    if channels <= 2:
        rgb = np.repeat(pixels[..., :1], 3, axis=2)
    else:
        rgb = np.ascontiguousarray(pixels[..., 2::-1] if bgr else pixels[..., :3])
    alpha = np.ascontiguousarray(pixels[..., -1]) if channels in (2, 4) else None
    return rgb, alpha


def _grey16(img: Image.Image) -> np.ndarray:
    if img.mode == "F":  # float samples are meant as 0..1
        return from_unit_float(np.asarray(img), np.uint16)
    return np.clip(np.asarray(img), 0, 65535).astype(np.uint16)


def carried_icc(profile: object) -> bytes | None:
    """The ICC profile, if it describes RGB: the output is RGB, so a CMYK or grey profile would lie."""
    if isinstance(profile, bytes) and len(profile) >= 20 and profile[16:20] == b"RGB ":
        return profile
    return None


def exif_orientation(exif: Image.Exif) -> int:
    value = exif.get(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) else 1


def carried_exif(exif: Image.Exif, *, from_tiff: bool = False) -> bytes | None:
    """EXIF for the output, orientation reset to 1 (the pixels are turned already)."""
    if from_tiff:
        exif = _descriptive_exif(exif)
    if not len(exif):
        return None
    exif[ORIENTATION_TAG] = 1
    try:
        return exif.tobytes()
    except (ValueError, TypeError, KeyError, struct.error) as exc:  # values Pillow read but cannot write
        log.warning("dropping EXIF that cannot be written back: %s", exc)
        return None


def _descriptive_exif(tiff_tags: Image.Exif) -> Image.Exif:
    exif = Image.Exif()
    for tag in _DESCRIPTIVE_TIFF_TAGS:
        if tag in tiff_tags:
            exif[tag] = tiff_tags[tag]
    for pointer in (_EXIF_IFD, _GPS_IFD):
        if pointer in tiff_tags and tiff_tags.get_ifd(pointer):
            exif[pointer] = dict(tiff_tags.get_ifd(pointer))
    return exif


def exif_from_bytes(data: bytes | None) -> Image.Exif:
    """Parsed EXIF; damaged EXIF reads as empty rather than failing a readable picture."""
    exif = Image.Exif()
    if not data:
        return exif
    try:
        exif.load(data)
    except (OSError, ValueError, SyntaxError, KeyError, IndexError, TypeError, struct.error) as exc:
        log.warning("ignoring unreadable EXIF: %s", exc)
        return Image.Exif()
    return exif
