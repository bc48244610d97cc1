"""Decode an image file into a :class:`~pipelines.base.Picture`, for every supported format.

This runs the real decoders (C code) on untrusted bytes: in the server it is only ever called
inside the isolated child (:mod:`pipelines.imaging.isolated`). EXIF orientation is applied; the
ICC profile and EXIF (orientation reset to 1) travel in ``info`` so the encoder can carry them.
16-bit sources stay 16-bit: Pillow reads 16-bit RGB PNG/TIFF as 8-bit, so OpenCV and tifffile
read those pixels while Pillow still reads the metadata.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from pipelines.base import Picture
from pipelines.imaging import native
from pipelines.imaging.errors import ImageTooLarge, Undecodable
from pipelines.imaging.pixels import (Decoded, arrays_from_pil, carried_exif, carried_icc, check_size,
                                      exif_orientation, oriented, split_channels, to_picture)
from pipelines.imaging.sniff import PIL_FORMATS, detect_format

__all__ = ["Undecodable", "ImageTooLarge", "Decoded", "decode_file", "decode_pixels"]

log = logging.getLogger(__name__)
_PNG_BIT_DEPTH_OFFSET = 24  # IHDR: 8 signature + 8 chunk head + 4 width + 4 height
_TIFF_BITS_PER_SAMPLE, _TIFF_PHOTOMETRIC = 258, 262
_MAX_MESSAGE = 200

Decoder = Callable[[Path, str, "int | None"], Decoded]


def decode_file(path: Path, *, max_pixels: int | None = None) -> Picture:
    """The picture as floats in [0, 1]; raises :class:`Undecodable` or :class:`ImageTooLarge`."""
    return to_picture(decode_pixels(path, max_pixels=max_pixels))


def decode_pixels(path: Path, *, max_pixels: int | None = None) -> Decoded:
    """The picture in its source precision (uint8/uint16), displayed orientation."""
    fmt = detect_format(path)
    if fmt is None:
        raise Undecodable("The file is not an image in a supported format.")
    try:
        return _decoder_for(fmt)(path, fmt, max_pixels)
    except (Undecodable, ImageTooLarge, MemoryError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except Exception as exc:  # hostile bytes make third-party decoders raise any type at all
        # The message reaches the client: never with the server's own path in it.
        message = f"{type(exc).__name__}: {exc}".replace(str(path), "the file")[:_MAX_MESSAGE]
        raise Undecodable(f"The {fmt.upper()} image could not be decoded ({message}).") from exc


def _decoder_for(fmt: str) -> Decoder:
    special: dict[str, Decoder] = {"heic": native.decode_heic, "raw": native.decode_raw,
                                   "psd": native.decode_psd, "exr": native.decode_exr, "hdr": native.decode_hdr}
    return special.get(fmt, _decode_with_pillow)


def _decode_with_pillow(path: Path, fmt: str, max_pixels: int | None) -> Decoded:
    with Image.open(path, formats=[PIL_FORMATS[fmt]]) as img:
        check_size(*img.size, max_pixels)
        if _sixteen_bit_source(path, img, fmt):
            exif = _exif_of(img)
            rgb, alpha = _png16_pixels(path) if fmt == "png" else _tiff16_pixels(path, img)
        else:
            img.load()  # first frame of GIF/WebP/APNG, first page of TIFF
            exif = _exif_of(img)
            rgb, alpha = arrays_from_pil(img)
        orientation = exif_orientation(exif)
        info = _carried_info(img, fmt, exif)
    return oriented(Decoded(rgb=rgb, alpha=alpha, info=info), orientation)


def _sixteen_bit_source(path: Path, img: Image.Image, fmt: str) -> bool:
    if fmt == "png":
        with open(path, "rb") as fh:
            fh.seek(_PNG_BIT_DEPTH_OFFSET)
            return fh.read(1) == b"\x10"
    if fmt == "tiff":
        bits = img.tag_v2.get(_TIFF_BITS_PER_SAMPLE, (8,))
        return 16 in (bits if isinstance(bits, tuple) else (bits,))
    return False


def _exif_of(img: Image.Image) -> Image.Exif:
    """The EXIF Pillow found; damaged EXIF is dropped rather than failing a readable picture."""
    if img.format == "PNG" and "exif" not in img.info:
        return Image.Exif()  # asking Pillow would decode the pixels to look after them
    try:
        return img.getexif()
    except (OSError, ValueError, SyntaxError, KeyError, IndexError, TypeError) as exc:
        log.warning("ignoring unreadable EXIF: %s", exc)
        return Image.Exif()


def _carried_info(img: Image.Image, fmt: str, exif: Image.Exif) -> dict:
    info: dict = {"format": fmt}
    icc = carried_icc(img.info.get("icc_profile"))
    if icc:
        info["icc_profile"] = icc
    exif_bytes = carried_exif(exif, from_tiff=fmt == "tiff")
    if exif_bytes:
        info["exif"] = exif_bytes
    return info


def _png16_pixels(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    pixels = _opencv_unchanged(path)
    if pixels is None:
        raise Undecodable("The 16-bit PNG pixels could not be decoded.")
    return split_channels(pixels, bgr=True)


def _tiff16_pixels(path: Path, img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """OpenCV's libtiff reads every compression (tifffile needs imagecodecs for LZW, not installed);
    tifffile covers the layouts OpenCV refuses, such as planar samples or white-is-zero."""
    if img.tag_v2.get(_TIFF_PHOTOMETRIC) in (1, 2):  # grey or RGB
        pixels = _opencv_unchanged(path)
        if pixels is not None:
            return split_channels(pixels, bgr=True)
    return _tiff16_with_tifffile(path)


def _opencv_unchanged(path: Path) -> np.ndarray | None:
    import cv2

    # IMREAD_UNCHANGED keeps 16 bits and alpha, and ignores EXIF orientation (applied by us).
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return pixels if pixels is not None and pixels.dtype == np.uint16 else None


def _tiff16_with_tifffile(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        photometric, axes = page.photometric, page.axes
        pixels = page.asarray()
    if pixels.dtype != np.uint16 or photometric.name not in ("MINISBLACK", "MINISWHITE", "RGB"):
        raise Undecodable(f"16-bit {photometric.name} TIFF images ({pixels.dtype}) are not supported.")
    if axes.startswith("S"):  # planar configuration: one plane per sample
        pixels = np.moveaxis(pixels, 0, -1)
    rgb, alpha = split_channels(pixels)
    if photometric.name == "MINISWHITE":
        rgb = np.iinfo(np.uint16).max - rgb
    return rgb, alpha
