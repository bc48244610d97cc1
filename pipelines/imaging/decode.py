"""Decode an image file into a :class:`~pipelines.base.Picture`.

EXIF orientation is applied; the ICC profile and EXIF travel in ``Picture.info`` so the encoder
can carry them into the output.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipelines.base import Picture, PipelineError
from pipelines.imaging.sniff import sniff_format, HEADER_BYTES


class Undecodable(PipelineError):
    code = "UNDECODABLE"


def decode_file(path: Path) -> Picture:
    with open(path, "rb") as fh:
        fmt = sniff_format(fh.read(HEADER_BYTES))
    if fmt is None:
        raise Undecodable("The file is not an image in a supported format.")
    try:
        with Image.open(path) as img:
            img.seek(0)  # first frame of GIF/TIFF
            info = _carried_info(img, fmt)
            img = ImageOps.exif_transpose(img)
            return _to_picture(img, info)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise Undecodable(f"The image could not be decoded: {exc}") from exc


def _carried_info(img: Image.Image, fmt: str) -> dict:
    info: dict = {"format": fmt}
    if img.info.get("icc_profile"):
        info["icc_profile"] = img.info["icc_profile"]
    exif = img.getexif()
    if exif:
        exif[0x0112] = 1  # orientation is applied to the pixels, so reset it
        info["exif"] = exif.tobytes()
    return info


def _to_picture(img: Image.Image, info: dict) -> Picture:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(img, dtype=np.float32) / 65535.0
        rgb = np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=2)
        return Picture(rgb=np.ascontiguousarray(rgb), bit_depth=16, info=info)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    img = img.convert("RGBA" if has_alpha else "RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    alpha = np.ascontiguousarray(arr[..., 3]) if has_alpha else None
    return Picture(rgb=np.ascontiguousarray(arr[..., :3]), alpha=alpha, bit_depth=8, info=info)
