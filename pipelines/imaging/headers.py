"""Small pure-Python header parsers, safe to run on hostile bytes inside the server process.

Each reads a bounded number of bytes, never allocates in proportion to a number taken from the
file, and raises ``ValueError`` on anything implausible. Pillow covers JPEG/PNG/GIF/BMP/TIFF/TGA;
these cover the formats whose Pillow plugin (WebP) or decoder (PSD, EXR, HDR) is C code, plus the
TIFF tag check that tells a camera RAW (DNG, NEF, ARW...) from an ordinary TIFF.
"""
from __future__ import annotations

import struct
from typing import BinaryIO

# Headers are small; a "header" longer than this is garbage, not an image.
_MAX_TEXT_HEADER = 64 * 1024
_MAX_EXR_HEADER = 1024 * 1024
_MAX_EXR_ATTRIBUTES = 4096
_MAX_TIFF_ENTRIES = 4096
_MAX_WEBP_CHUNKS = 64

_TIFF_PHOTOMETRIC, _TIFF_MAKE, _TIFF_SUBIFDS, _TIFF_DNG_VERSION = 262, 271, 330, 50706
_CFA_PHOTOMETRICS = (32803, 34892)  # colour filter array, linear raw: sensor data, not a picture
# Makers whose TIFF-structured raw files (NEF, ARW, PEF, SRW...) keep the sensor data in a SubIFD.
_CAMERA_MAKES = ("NIKON", "SONY", "CANON", "PENTAX", "RICOH", "SAMSUNG", "OLYMPUS", "LEICA",
                 "HASSELBLAD", "PHASE ONE", "KODAK", "MINOLTA", "KONICA MINOLTA", "MAMIYA", "LEAF",
                 "EPSON", "SIGMA", "FUJIFILM", "PANASONIC")


def read_exact(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("the header is truncated")
    return data


def _positive(width: int, height: int) -> tuple[int, int]:
    if width <= 0 or height <= 0:
        raise ValueError(f"implausible image size {width}x{height}")
    return width, height


def webp_size(fh: BinaryIO) -> tuple[int, int]:
    """Canvas size from the first chunk: VP8X (extended), VP8L (lossless) or VP8 (lossy)."""
    head = read_exact(fh, 0, 30)
    chunk = head[12:16]
    if chunk == b"VP8X":
        return _positive(1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little"))
    if chunk == b"VP8L":
        if head[20] != 0x2F:
            raise ValueError("bad VP8L signature")
        bits = int.from_bytes(head[21:25], "little")
        return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8 ":
        if head[23:26] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        return _positive(int.from_bytes(head[26:28], "little") & 0x3FFF,
                         int.from_bytes(head[28:30], "little") & 0x3FFF)
    raise ValueError("unknown WebP chunk")


def webp_exif(fh: BinaryIO) -> bytes | None:
    """The EXIF chunk of an extended (VP8X) WebP, which usually follows the image data."""
    head = read_exact(fh, 0, 21)
    if head[12:16] != b"VP8X" or not head[20] & 0x08:  # the VP8X "has EXIF" flag
        return None
    offset = 12
    for _ in range(_MAX_WEBP_CHUNKS):
        kind, size = struct.unpack("<4sI", read_exact(fh, offset, 8))
        if kind == b"EXIF":
            return read_exact(fh, offset + 8, min(size, _MAX_TEXT_HEADER))
        offset += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def psd_size(fh: BinaryIO) -> tuple[int, int]:
    """Photoshop file header: signature, version 1 (PSD) or 2 (PSB), channels, size, depth."""
    signature, version, channels, height, width, depth = struct.unpack(">4sH6xHIIH", read_exact(fh, 0, 24))
    if signature != b"8BPS" or version not in (1, 2):
        raise ValueError("not a PSD header")
    if not 1 <= channels <= 56 or depth not in (1, 8, 16, 32):
        raise ValueError("implausible PSD channels or depth")
    return _positive(width, height)


def hdr_size(fh: BinaryIO) -> tuple[int, int]:
    """Radiance RGBE: text lines, an empty line, then a resolution line such as ``-Y 480 +X 640``."""
    fh.seek(0)
    data = fh.read(_MAX_TEXT_HEADER)
    blank = data.find(b"\n\n")
    line_end = data.find(b"\n", blank + 2) if blank >= 0 else -1
    if line_end < 0:
        raise ValueError("no Radiance resolution line")
    tokens = data[blank + 2:line_end].split()
    if len(tokens) != 4 or tokens[0] not in (b"-Y", b"+Y", b"-X", b"+X") or tokens[2][1:] not in (b"X", b"Y"):
        raise ValueError("bad Radiance resolution line")
    if tokens[0][1:] == tokens[2][1:] or not (tokens[1].isdigit() and tokens[3].isdigit()):
        raise ValueError("bad Radiance resolution line")
    first, second = int(tokens[1]), int(tokens[3])
    # The first axis named is the slow one: "-Y H +X W" is the usual top-to-bottom layout.
    return _positive(second, first) if tokens[0][1:] == b"Y" else _positive(first, second)


def exr_size(fh: BinaryIO) -> tuple[int, int]:
    """OpenEXR: the ``dataWindow`` attribute (box2i) of the first part's header."""
    fh.seek(0)
    data = fh.read(_MAX_EXR_HEADER)
    if data[:4] != b"\x76\x2f\x31\x01" or len(data) < 8:
        raise ValueError("not an OpenEXR header")
    if data[5] & 0x08:  # deep data: no flat picture to show
        raise ValueError("deep OpenEXR images are not supported")
    pos = 8
    for _ in range(_MAX_EXR_ATTRIBUTES):
        name, pos = _c_string(data, pos)
        if not name:
            break
        type_name, pos = _c_string(data, pos)
        (size,) = struct.unpack_from("<i", data, pos)
        pos += 4
        if size < 0 or pos + size > len(data):
            raise ValueError("bad OpenEXR attribute size")
        if name == b"dataWindow" and type_name == b"box2i" and size == 16:
            xmin, ymin, xmax, ymax = struct.unpack_from("<4i", data, pos)
            return _positive(xmax - xmin + 1, ymax - ymin + 1)
        pos += size
    raise ValueError("OpenEXR header has no dataWindow")


def _c_string(data: bytes, pos: int) -> tuple[bytes, int]:
    end = data.find(b"\x00", pos, pos + 256)
    if end < 0:
        raise ValueError("unterminated OpenEXR attribute name")
    return data[pos:end], end + 1


def tiff_is_camera_raw(fh: BinaryIO) -> bool:
    """True for TIFF-structured camera RAWs: CR2, DNG, and maker files (NEF, ARW...) by their tags.

    An ordinary TIFF has none of: the CR2 marker, a DNGVersion tag, CFA photometric, or a camera
    maker's name together with SubIFDs (where NEF/ARW keep the sensor data). A header that cannot
    be read is "not raw": the TIFF decoder will then report it as damaged.
    """
    head = read_exact(fh, 0, 10)
    if head[:4] == b"II*\x00" and head[8:10] == b"CR":
        return True
    endian = "<" if head[:2] == b"II" else ">"
    entries = _ifd0_entries(fh, endian, struct.unpack(endian + "I", head[4:8])[0])
    if _TIFF_DNG_VERSION in entries:
        return True
    photometric = entries.get(_TIFF_PHOTOMETRIC)
    if photometric and photometric[0] == 3 and _short(endian, photometric[2]) in _CFA_PHOTOMETRICS:
        return True
    if _TIFF_SUBIFDS not in entries or _TIFF_MAKE not in entries:
        return False
    make = _ascii(fh, endian, entries[_TIFF_MAKE]).upper()
    return make.startswith(_CAMERA_MAKES)


def _ifd0_entries(fh: BinaryIO, endian: str, offset: int) -> dict[int, tuple[int, int, bytes]]:
    """tag -> (type, count, the 4 value-or-offset bytes) of the first IFD."""
    (count,) = struct.unpack(endian + "H", read_exact(fh, offset, 2))
    if count > _MAX_TIFF_ENTRIES:
        raise ValueError("implausible TIFF directory")
    raw = read_exact(fh, offset + 2, 12 * count)
    entries = {}
    for index in range(count):
        tag, kind, number = struct.unpack_from(endian + "HHI", raw, 12 * index)
        entries[tag] = (kind, number, raw[12 * index + 8:12 * index + 12])
    return entries


def _short(endian: str, value: bytes) -> int:
    return struct.unpack(endian + "H", value[:2])[0]


def _ascii(fh: BinaryIO, endian: str, entry: tuple[int, int, bytes]) -> str:
    kind, count, value = entry
    if kind != 2:
        return ""
    count = min(count, 64)  # a maker's name is short; never read what the file claims blindly
    data = value[:count] if count <= 4 else read_exact(fh, struct.unpack(endian + "I", value)[0], count)
    return data.split(b"\x00", 1)[0].decode("latin-1").strip()
