"""Write results: the output in the input's format where it can be, and a small WebP preview.

ICC profile and EXIF (orientation already reset by the decoder) are carried where the format
holds them. 16-bit pictures are written as 16-bit PNG or TIFF.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.base import Picture

WRITABLE = ("jpeg", "png", "webp", "avif", "tiff")
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif", "tiff": "tif"}
_DEFAULT_QUALITY = {"jpeg": 95, "webp": 95, "avif": 80}
_PIL_NAMES = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "tiff": "TIFF"}
PREVIEW_MAX_SIDE = 1024


def output_format_for(input_format: str) -> str:
    """The input's format when it is a common writable one, else PNG."""
    return input_format if input_format in WRITABLE else "png"


def extension_for(output_format: str) -> str:
    return _EXTENSIONS[output_format]


def write_output(picture: Picture, path: Path, output_format: str, quality: int | None = None) -> None:
    if picture.bit_depth == 16 and output_format in ("png", "tiff"):
        _write_16bit(picture, path, output_format)
        return
    keep_alpha = output_format != "jpeg"
    img = to_pil(picture, keep_alpha=keep_alpha)
    options = {k: picture.info[k] for k in ("icc_profile", "exif") if picture.info.get(k)}
    if output_format in _DEFAULT_QUALITY:
        options["quality"] = quality or _DEFAULT_QUALITY[output_format]
    if output_format == "jpeg":
        options["subsampling"] = 0 if options["quality"] >= 90 else 2
    elif output_format == "png":
        options["compress_level"] = 6
    elif output_format == "tiff":
        options["compression"] = "tiff_deflate"
    img.save(path, _PIL_NAMES[output_format], **options)


def write_preview(picture: Picture, path: Path) -> None:
    img = to_pil(picture)
    img.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.LANCZOS)
    img.save(path, "WEBP", quality=80, method=4)


def to_pil(picture: Picture, *, keep_alpha: bool = True) -> Image.Image:
    rgb = picture.rgb
    if picture.alpha is not None and not keep_alpha:
        # JPEG has no alpha: composite onto white rather than exposing whatever RGB hides under it.
        alpha = picture.alpha[..., None]
        rgb = rgb * alpha + (1.0 - alpha)
    rgb8 = _quantize(rgb, 255, np.uint8)
    if keep_alpha and picture.alpha is not None:
        return Image.fromarray(np.dstack([rgb8, _quantize(picture.alpha, 255, np.uint8)]), "RGBA")
    return Image.fromarray(rgb8, "RGB")


def _write_16bit(picture: Picture, path: Path, output_format: str) -> None:
    channels = [picture.rgb] if picture.alpha is None else [picture.rgb, picture.alpha[..., None]]
    data = _quantize(np.concatenate(channels, axis=2), 65535, np.uint16)
    if output_format == "tiff":
        import tifffile

        tifffile.imwrite(path, data, photometric="rgb", compression="zlib",
                         iccprofile=picture.info.get("icc_profile"),
                         extrasamples=("unassalpha",) if picture.alpha is not None else None)
        return
    import cv2

    order = [2, 1, 0, 3] if picture.alpha is not None else [2, 1, 0]  # OpenCV writes BGR(A)
    if not cv2.imwrite(str(path) + ".png", np.ascontiguousarray(data[..., order])):
        raise OSError(f"could not write {path}")
    Path(str(path) + ".png").replace(path)


def _quantize(arr: np.ndarray, top: int, dtype: type) -> np.ndarray:
    return (np.clip(arr, 0.0, 1.0) * top + 0.5).astype(dtype)
