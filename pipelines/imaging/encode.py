"""Write results: the output in the input's format where it can be, and a small WebP preview.

ICC profile and EXIF (orientation already reset by the decoder) are carried where the format
holds them. 16-bit pictures are written as 16-bit PNG (OpenCV, with the ICC profile and EXIF
added as iCCP/eXIf chunks, which OpenCV cannot write) or 16-bit TIFF (tifffile: ICC profile and
the descriptive EXIF tags; tifffile cannot write an EXIF sub-directory).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.base import Picture
from pipelines.imaging.pixels import exif_from_bytes, from_unit_float

WRITABLE = ("jpeg", "png", "webp", "avif", "tiff")
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif", "tiff": "tif"}
_DEFAULT_QUALITY = {"jpeg": 95, "webp": 95, "avif": 80}
_PIL_NAMES = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "tiff": "TIFF"}
PREVIEW_MAX_SIDE = 1024
_JPEG_MAX_EXIF = 65533  # one APP1 segment; Pillow refuses more
_PNG_SIGNATURE_AND_IHDR = 8 + 25
# EXIF tags tifffile can write in a TIFF's first directory (ASCII), by tag number.
_TIFF_ASCII_TAGS = (0x010F, 0x0110, 0x0132, 0x013B, 0x8298)


def output_format_for(input_format: str) -> str:
    """The input's format when it is a common writable one (JPEG, PNG, WebP, AVIF, TIFF), else PNG.

    PNG for RAW, PSD, EXR, HDR, TGA, BMP, GIF and HEIC: lossless, 16-bit capable, read everywhere.
    """
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
    if output_format == "jpeg" and len(options.get("exif", b"")) > _JPEG_MAX_EXIF:
        del options["exif"]  # cannot fit in JPEG at all; the pixels matter more than the metadata
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
    rgb8 = from_unit_float(rgb, np.uint8)
    if keep_alpha and picture.alpha is not None:
        return Image.fromarray(np.dstack([rgb8, from_unit_float(picture.alpha, np.uint8)]), "RGBA")
    return Image.fromarray(rgb8, "RGB")


def _write_16bit(picture: Picture, path: Path, output_format: str) -> None:
    channels = [picture.rgb] if picture.alpha is None else [picture.rgb, picture.alpha[..., None]]
    data = from_unit_float(np.concatenate(channels, axis=2), np.uint16)
    if output_format == "tiff":
        _write_tiff16(picture, data, path)
        return
    import cv2

    order = [2, 1, 0, 3] if picture.alpha is not None else [2, 1, 0]  # OpenCV writes BGR(A)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(data[..., order]))
    if not ok:
        raise OSError(f"could not encode a 16-bit PNG for {path}")
    path.write_bytes(png_with_metadata(encoded.tobytes(), picture.info.get("icc_profile"), picture.info.get("exif")))


def _write_tiff16(picture: Picture, data: np.ndarray, path: Path) -> None:
    import tifffile

    exif = exif_from_bytes(picture.info.get("exif"))
    extratags = [(tag, "s", 0, _ascii_tag(exif, tag), True) for tag in _TIFF_ASCII_TAGS if _ascii_tag(exif, tag)]
    tifffile.imwrite(path, data, photometric="rgb", compression="zlib", metadata=None,
                     iccprofile=picture.info.get("icc_profile"), extratags=extratags,
                     software=_ascii_tag(exif, 0x0131) or False, description=_ascii_tag(exif, 0x010E),
                     extrasamples=("unassalpha",) if picture.alpha is not None else None)


def _ascii_tag(exif: Image.Exif, tag: int) -> str | None:
    """A text tag tifffile can write (7-bit ASCII only), or None."""
    value = exif.get(tag)
    if not (isinstance(value, str) and value.isascii()):
        return None
    return value.strip("\x00") or None


def png_with_metadata(png: bytes, icc_profile: bytes | None, exif: bytes | None) -> bytes:
    """Insert iCCP and eXIf chunks right after IHDR, where the PNG specification wants them."""
    chunks = b""
    if icc_profile:
        chunks += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile))
    if exif:
        # PNG's eXIf holds the TIFF structure itself, without JPEG's "Exif\0\0" marker.
        chunks += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    return png[:_PNG_SIGNATURE_AND_IHDR] + chunks + png[_PNG_SIGNATURE_AND_IHDR:]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
