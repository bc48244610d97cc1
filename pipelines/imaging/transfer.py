"""How decoded pixels cross from the isolated child to the worker: .npy files and a JSON note.

The child writes the pixels in their source precision (uint8/uint16: a quarter of float32) and
the parent memory-maps them and converts straight into the float planes the pipeline uses. The
parent trusts nothing it reads: shapes, types and the pixel count are checked again.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pipelines.base import Picture
from pipelines.imaging.errors import Undecodable
from pipelines.imaging.pixels import Decoded, to_unit_float

RGB_FILE, ALPHA_FILE, META_FILE = "rgb.npy", "alpha.npy", "meta.json"
_PIXEL_TYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def write_decoded(decoded: Decoded, out_dir: Path) -> dict[str, Any]:
    """Write the pixels and the note; returns the note."""
    np.save(out_dir / RGB_FILE, decoded.rgb, allow_pickle=False)
    if decoded.alpha is not None:
        np.save(out_dir / ALPHA_FILE, decoded.alpha, allow_pickle=False)
    height, width = decoded.rgb.shape[:2]
    meta = {"format": decoded.info.get("format"), "bit_depth": decoded.bit_depth, "width": width,
            "height": height, "has_alpha": decoded.alpha is not None, "info": encode_info(decoded.info)}
    (out_dir / META_FILE).write_text(json.dumps(meta))
    return meta


def read_picture(out_dir: Path, max_pixels: int) -> Picture:
    """The picture the child left in ``out_dir``, as floats; the files may be deleted afterwards."""
    meta = json.loads((out_dir / META_FILE).read_text())
    rgb = _load_plane(out_dir / RGB_FILE, ndim=3)
    height, width = rgb.shape[:2]
    if rgb.shape[2] != 3 or width * height > max_pixels:
        raise Undecodable(f"The decoder returned pixels of an unexpected shape {rgb.shape}.")
    alpha = _load_plane(out_dir / ALPHA_FILE, ndim=2) if meta.get("has_alpha") else None
    if alpha is not None and (alpha.shape != rgb.shape[:2] or alpha.dtype != rgb.dtype):
        raise Undecodable(f"The decoder returned an alpha plane of an unexpected shape {alpha.shape}.")
    return Picture(rgb=to_unit_float(rgb), alpha=None if alpha is None else to_unit_float(alpha),
                   bit_depth=16 if rgb.dtype == np.uint16 else 8, info=decode_info(meta.get("info", {})))


def _load_plane(path: Path, *, ndim: int) -> np.ndarray:
    plane = np.load(path, mmap_mode="r", allow_pickle=False)
    if plane.ndim != ndim or plane.dtype not in _PIXEL_TYPES:
        raise Undecodable(f"The decoder returned pixels of an unexpected type {plane.dtype}{plane.shape}.")
    return plane


def encode_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe info: bytes (ICC profile, EXIF) become ``{"base64": ...}``."""
    return {key: {"base64": base64.b64encode(value).decode("ascii")} if isinstance(value, bytes) else value
            for key, value in info.items()}


def decode_info(info: Mapping[str, Any]) -> dict[str, Any]:
    return {key: base64.b64decode(value["base64"]) if isinstance(value, dict) and "base64" in value else value
            for key, value in info.items()}
