"""Recognise an image format from its bytes and read its size from the header only.

The file name and the Content-Type a client sends are never trusted: only the bytes decide.
:func:`read_header` runs inside the server process, so it only ever parses in pure Python
(Pillow's pure-Python plugins for JPEG/PNG/GIF/BMP/TIFF/TGA, :mod:`.headers` for the rest). The
formats whose header only C code can read (HEIC, AVIF, camera RAW) raise
:class:`ProbeNeedsIsolation`: :func:`pipelines.imaging.isolated.probe_header` handles both.
"""
from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from PIL import Image

from pipelines.imaging import headers
from pipelines.imaging.errors import ProbeNeedsIsolation

__all__ = ["HEADER_BYTES", "ImageHeader", "ProbeNeedsIsolation", "NEEDS_ISOLATION", "PIL_FORMATS",
           "sniff_format", "detect_format", "read_header"]

# Enough for every magic number, an ftyp box's brand list and, usually, a TIFF's first IFD.
HEADER_BYTES = 64 * 1024

# (offset, magic, format) checked in order; the first match wins. RAW markers come before TIFF.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (0, b"FUJIFILMCCD-RAW", "raw"),  # RAF
    (0, b"IIRO", "raw"),  # ORF
    (0, b"IIRS", "raw"),  # ORF
    (0, b"MMOR", "raw"),  # ORF
    (0, b"IIU\x00", "raw"),  # RW2
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, b"8BPS", "psd"),
    (0, b"\x76\x2f\x31\x01", "exr"),
    (0, b"#?RADIANCE", "hdr"),
    (0, b"#?RGBE", "hdr"),
)
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_CR3_BRAND = b"crx "
# A BMP's second header starts with its own size; these are the sizes that exist.
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}

# Formats whose header is read by C code: never parsed inside the server process.
NEEDS_ISOLATION = frozenset({"heic", "avif", "raw"})
PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF",
               "tga": "TGA", "webp": "WEBP", "avif": "AVIF"}
_PURE_PYTHON_PIL = ("jpeg", "png", "gif", "bmp", "tiff", "tga")
_OWN_PARSERS: dict[str, Callable[[BinaryIO], tuple[int, int]]] = {
    "webp": headers.webp_size, "psd": headers.psd_size, "hdr": headers.hdr_size, "exr": headers.exr_size}
# What a malformed header makes Pillow's pure-Python plugins or our parsers raise.
HEADER_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError,
                 TypeError, ZeroDivisionError, OverflowError, UnicodeDecodeError)
_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageHeader:
    """Format and size as displayed (after EXIF/HEIF/RAW orientation where the header says)."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def sniff_format(head: bytes) -> str | None:
    """Return a short format name for the leading bytes of a file, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return _ftyp_format(head)
    for offset, magic, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return _refine_tiff(io.BytesIO(head)) if name == "tiff" else name
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in _BMP_DIB_SIZES:
        return "bmp"
    return "tga" if _plausible_tga(head) else None


def detect_format(path: Path) -> str | None:
    """The format of a file: :func:`sniff_format` plus a full read of a TIFF's first directory."""
    with open(path, "rb") as fh:
        fmt = sniff_format(fh.read(HEADER_BYTES))
        # The head may have ended before the TIFF directory; the whole file settles it.
        return _refine_tiff(fh) if fmt == "tiff" else fmt


def read_header(path: Path) -> ImageHeader | None:
    """Format and pixel size from the header, without decoding pixels; None if not a readable image.

    Raises :class:`ProbeNeedsIsolation` for HEIC/AVIF/RAW, and lets Pillow's
    ``DecompressionBombError`` through (the caller answers "too many pixels").
    """
    fmt = detect_format(path)
    if fmt is None:
        return None
    if fmt in NEEDS_ISOLATION:
        raise ProbeNeedsIsolation(fmt)
    try:
        width, height = _pil_size(path, fmt) if fmt in _PURE_PYTHON_PIL else _own_size(path, fmt)
    except Image.DecompressionBombError:
        raise
    except HEADER_ERRORS:
        return None  # the magic matched but the header is unreadable: not an image we can take
    return ImageHeader(format=fmt, width=int(width), height=int(height))


def _pil_size(path: Path, fmt: str) -> tuple[int, int]:
    with warnings.catch_warnings():
        # A huge header makes Pillow warn before it refuses; the caller applies its own limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path, formats=[PIL_FORMATS[fmt]]) as img:
            width, height = img.size
            if fmt == "tiff":
                return width, height  # Pillow's TIFF plugin reports (and loads) the turned size itself
            # PNG keeps EXIF after the pixels at times; reading it there would decode them.
            exif_known = fmt != "png" or "exif" in img.info
            turned = exif_known and _turns_quarter(img.getexif)
    return (height, width) if turned else (width, height)


def _own_size(path: Path, fmt: str) -> tuple[int, int]:
    with open(path, "rb") as fh:
        width, height = _OWN_PARSERS[fmt](fh)
        exif = headers.webp_exif(fh) if fmt == "webp" else None
    return (height, width) if exif and _turns_quarter(lambda: _parse_exif(exif)) else (width, height)


def _parse_exif(data: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.load(data)  # Pillow's EXIF reader is pure Python
    return exif


def _turns_quarter(read_exif: Callable[[], Image.Exif]) -> bool:
    """Whether EXIF orientation turns the picture by a quarter; damaged EXIF turns nothing."""
    try:
        return read_exif().get(_ORIENTATION) in (5, 6, 7, 8)
    except HEADER_ERRORS:
        return False  # as the decoder does: the picture stays readable without its EXIF


def _refine_tiff(fh: BinaryIO) -> str:
    try:
        return "raw" if headers.tiff_is_camera_raw(fh) else "tiff"
    except (ValueError, struct.error):
        return "tiff"  # the directory is out of reach or damaged: the TIFF decoder will say so


def _ftyp_format(head: bytes) -> str | None:
    """ISO-BMFF: the major brand and the compatible brands of the leading ``ftyp`` box."""
    size = min(struct.unpack(">I", head[:4])[0], len(head), 4096)
    brands = {head[8:12]} | {head[i:i + 4] for i in range(16, size - 3, 4)}
    if head[8:12] == _CR3_BRAND:
        return "raw"
    if brands & _AVIF_BRANDS:
        return "avif"
    return "heic" if brands & _HEIC_BRANDS else None


def _plausible_tga(head: bytes) -> bool:
    """TGA has no magic number: accept only a header whose every field is self-consistent."""
    if len(head) < 18:
        return False
    has_map, kind = head[1], head[2]
    map_size, depth, descriptor = head[7], head[16], head[17]
    width, height = struct.unpack("<HH", head[12:16])
    if has_map not in (0, 1) or kind not in (1, 2, 3, 9, 10, 11) or width == 0 or height == 0:
        return False
    if (has_map == 1) != (kind in (1, 9)) or descriptor & 0xC0 or (descriptor & 0x0F) not in (0, 1, 8):
        return False
    if has_map:
        return map_size in (15, 16, 24, 32) and struct.unpack("<H", head[5:7])[0] > 0 and depth in (8, 16)
    if any(head[3:8]):
        return False  # no colour map, so its description must be empty
    return depth in ((15, 16, 24, 32) if kind in (2, 10) else (8, 16))
