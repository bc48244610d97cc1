"""Decoders built on libraries other than Pillow: HEIC, camera RAW, PSD, OpenEXR, Radiance HDR.

Each library is imported inside its function: importing them costs time and memory, and the
isolated child should load only the decoder the file needs. Every decoder checks the header's
pixel count against the limit before it decodes a single pixel. Like :mod:`.decode`, this runs
only inside the isolated child when called from the server.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.imaging import headers
from pipelines.imaging.errors import Undecodable
from pipelines.imaging.pixels import (Decoded, arrays_from_pil, carried_exif, carried_icc, check_size,
                                      exif_from_bytes, exif_orientation, from_unit_float, split_channels)
from pipelines.imaging.tonemap import tone_map


def native_size(path: Path, fmt: str) -> tuple[int, int]:
    """Displayed width and height of a HEIC, AVIF or RAW file, read by its C library."""
    if fmt == "heic":
        import pillow_heif

        return tuple(pillow_heif.open_heif(str(path)).size)  # after libheif's irot/imir
    if fmt == "avif":
        with Image.open(path, formats=["AVIF"]) as img:
            width, height = img.size
            turned = exif_orientation(img.getexif()) in (5, 6, 7, 8)  # Pillow maps irot to EXIF
        return (height, width) if turned else (width, height)
    if fmt == "raw":
        import rawpy

        with rawpy.imread(str(path)) as raw:
            return _raw_display_size(raw.sizes)
    raise ValueError(f"{fmt} has no native header reader")


def decode_heic(path: Path, fmt: str, max_pixels: int | None) -> Decoded:
    import pillow_heif

    heif = pillow_heif.open_heif(str(path), convert_hdr_to_8bit=False)
    check_size(*heif.size, max_pixels)
    rgb, alpha = split_channels(np.asarray(heif))  # 10/12-bit arrive scaled to uint16
    # libheif has applied irot/imir already; HEIF makes the EXIF orientation informative only.
    info: dict[str, Any] = {"format": fmt}
    icc = carried_icc(heif.info.get("icc_profile"))
    if icc:
        info["icc_profile"] = icc
    exif_bytes = carried_exif(exif_from_bytes(heif.info.get("exif")))
    if exif_bytes:
        info["exif"] = exif_bytes
    return Decoded(rgb=rgb, alpha=alpha, info=info)


def decode_raw(path: Path, fmt: str, max_pixels: int | None) -> Decoded:
    """Camera white balance, sRGB primaries and curve, 16 bits; LibRaw turns it upright."""
    import rawpy

    with rawpy.imread(str(path)) as raw:
        check_size(*_raw_display_size(raw.sizes), max_pixels)
        rgb = raw.postprocess(use_camera_wb=True, output_color=rawpy.ColorSpace.sRGB,
                              output_bps=16, gamma=(2.4, 12.92))
    return Decoded(rgb=np.ascontiguousarray(rgb), info={"format": fmt})


def _raw_display_size(sizes: Any) -> tuple[int, int]:
    turned = sizes.flip in (5, 6)  # LibRaw's flip codes for a quarter turn
    return (sizes.height, sizes.width) if turned else (sizes.width, sizes.height)


def decode_psd(path: Path, fmt: str, max_pixels: int | None) -> Decoded:
    """The flattened composite Photoshop stored, with its ICC profile carried (not applied)."""
    from psd_tools import PSDImage
    from psd_tools.constants import Resource

    with open(path, "rb") as fh:
        check_size(*headers.psd_size(fh), max_pixels)
    psd = PSDImage.open(path)
    composite = psd.topil(apply_icc=False)
    if composite is None:
        raise Undecodable("The PSD file holds no flattened image.")
    rgb, alpha = arrays_from_pil(composite)
    info: dict[str, Any] = {"format": fmt}
    icc = carried_icc(psd.image_resources.get_data(Resource.ICC_PROFILE))
    if icc:
        info["icc_profile"] = icc
    return Decoded(rgb=rgb, alpha=alpha, info=info)


def decode_exr(path: Path, fmt: str, max_pixels: int | None) -> Decoded:
    with open(path, "rb") as fh:
        check_size(*headers.exr_size(fh), max_pixels)
    linear, alpha = _exr_planes(_read_exr_channels(path))  # the raw planes are freed on return
    alpha16 = None if alpha is None else from_unit_float(alpha, np.uint16)
    return Decoded(rgb=tone_map(linear), alpha=alpha16, info={"format": fmt})


def _read_exr_channels(path: Path) -> dict[str, np.ndarray]:
    import OpenEXR

    with OpenEXR.File(str(path), separate_channels=True) as exr:
        return {name: channel.pixels for name, channel in exr.parts[0].channels.items()}


def _exr_planes(channels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB (or luminance Y) and alpha from the channel names OpenEXR uses for a flat picture."""
    if all(name in channels for name in "RGB"):
        planes = [channels[name] for name in "RGB"]
    elif "Y" in channels:
        planes = [channels["Y"]] * 3
    else:
        raise Undecodable(f"The OpenEXR image has no R, G, B or Y channels (it has {sorted(channels)[:8]}).")
    shape = planes[0].shape
    if len(shape) != 2 or any(plane.shape != shape for plane in planes):
        raise Undecodable("The OpenEXR colour channels are subsampled or of different sizes.")
    linear = np.stack([plane.astype(np.float32, copy=False) for plane in planes], axis=2)
    alpha = channels.get("A")
    return linear, (None if alpha is None or alpha.shape != shape else alpha.astype(np.float32))


def decode_hdr(path: Path, fmt: str, max_pixels: int | None) -> Decoded:
    with open(path, "rb") as fh:
        check_size(*headers.hdr_size(fh), max_pixels)
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise Undecodable("The Radiance HDR pixels could not be decoded.")
    return Decoded(rgb=tone_map(bgr[..., ::-1]), info={"format": fmt})
