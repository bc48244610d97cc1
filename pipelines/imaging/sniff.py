"""Recognise an image format from its first bytes and read its size from the header only.

The file name and the Content-Type a client sends are never trusted: only the bytes decide.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# (offset, magic, format) checked in order; the first match wins.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (0, b"BM", "bmp"),
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
)
_FTYP_BRANDS = {b"avif": "avif", b"avis": "avif", b"heic": "heic", b"heix": "heic",
                b"heim": "heic", b"heis": "heic", b"hevc": "heic", b"mif1": "heic", b"msf1": "heic"}

HEADER_BYTES = 64


@dataclass(frozen=True)
class ImageHeader:
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
        return _FTYP_BRANDS.get(head[8:12])
    for offset, magic, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    return None


def read_header(path: Path) -> ImageHeader | None:
    """Format and pixel size from the header, without decoding pixel data; None if not an image."""
    with open(path, "rb") as fh:
        fmt = sniff_format(fh.read(HEADER_BYTES))
    if fmt is None:
        return None
    try:
        with warnings.catch_warnings():
            # A huge header makes Pillow warn before it refuses; the caller applies its own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except Image.DecompressionBombError:
        raise
    except (OSError, ValueError, SyntaxError):
        return None
    return ImageHeader(format=fmt, width=int(width), height=int(height))
