"""Write results: the output in the input's format where it can be, and a small WebP preview."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.base import Picture

# Output format chosen from the input format; anything else becomes PNG.
_MATCHING = {"jpeg": "jpeg", "png": "png", "webp": "webp"}
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
PREVIEW_MAX_SIDE = 1024


def output_format_for(input_format: str) -> str:
    return _MATCHING.get(input_format, "png")


def extension_for(output_format: str) -> str:
    return _EXTENSIONS[output_format]


def to_pil(picture: Picture, *, keep_alpha: bool = True) -> Image.Image:
    rgb8 = _to_uint8(picture.rgb)
    if keep_alpha and picture.alpha is not None:
        return Image.fromarray(np.dstack([rgb8, _to_uint8(picture.alpha)]), "RGBA")
    return Image.fromarray(rgb8, "RGB")


def write_output(picture: Picture, path: Path, output_format: str) -> None:
    keep_alpha = output_format in ("png", "webp")
    img = to_pil(picture, keep_alpha=keep_alpha)
    extra = {k: picture.info[k] for k in ("icc_profile", "exif") if picture.info.get(k)}
    if output_format == "jpeg":
        img.save(path, "JPEG", quality=95, subsampling=0, **extra)
    elif output_format == "webp":
        img.save(path, "WEBP", quality=95, method=4, **extra)
    else:
        img.save(path, "PNG", compress_level=6, **extra)


def write_preview(picture: Picture, path: Path) -> None:
    img = to_pil(picture)
    img.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.LANCZOS)
    img.save(path, "WEBP", quality=80, method=4)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
