"""Every input format, made offline by the tests: sniffed from bytes, probed, decoded in isolation.

Each picture is a 64x48 image with a red block in its top-left corner as displayed. Where a format
can say "turn me", the file stores the pixels turned and says so (EXIF 6, HEIF irot, TIFF tag 274,
DNG orientation); the decoded picture must come back 64x48 with the block top-left.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # before OpenCV first touches EXR

import numpy as np
import pytest
from PIL import Image, ImageCms

from pipelines.base import Picture
from pipelines.imaging import encode
from pipelines.imaging.errors import ImageTooLarge, ProbeNeedsIsolation
from pipelines.imaging.isolated import decode_isolated, probe_header, probe_isolated
from pipelines.imaging.sniff import HEADER_BYTES, ImageHeader, detect_format, read_header, sniff_format
from tests.conftest import encode as encode_image

W, H = 64, 48
TIMEOUT_S, MAX_PIXELS = 60.0, 10_000_000
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def displayed(top: int = 255, dtype: type = np.uint8) -> np.ndarray:
    """The picture as it should look: a cool gradient with a red block top-left."""
    ramp = np.linspace(0.0, 1.0, W, dtype=np.float32)[None, :].repeat(H, axis=0)
    rgb = np.stack([np.full_like(ramp, 0.1), 0.4 + 0.3 * ramp, np.full_like(ramp, 0.6)], axis=2)
    rgb[: H // 4, : W // 4] = (1.0, 0.0, 0.0)
    return (rgb * top + 0.5).astype(dtype) if dtype != np.float32 else rgb * top


def stored_turned(pixels: np.ndarray) -> np.ndarray:
    """Stored pixels that orientation 6 (turn 90° clockwise to display) shows as ``pixels``."""
    return np.ascontiguousarray(np.rot90(pixels, 1))


def exif_bytes(orientation: int, make: str = "RestoraCam") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = make
    return exif.tobytes()


def make_png16(path: Path, pixels16: np.ndarray, exif: bytes | None = None) -> None:
    import cv2

    ok, png = cv2.imencode(".png", np.ascontiguousarray(pixels16[..., ::-1]))
    assert ok
    path.write_bytes(encode.png_with_metadata(png.tobytes(), ICC, exif))


def make_tiff16_lzw(path: Path, pixels16: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".tif", np.ascontiguousarray(pixels16[..., ::-1]))  # OpenCV writes LZW
    assert ok
    path.write_bytes(data.tobytes())


def make_tiff16(path: Path, pixels16: np.ndarray, orientation: int = 1) -> None:
    import tifffile

    with tifffile.TiffWriter(path) as tif:  # two pages: only the first one is the picture
        tif.write(pixels16, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
        tif.write(np.zeros_like(pixels16), photometric="rgb")


def make_gif(path: Path) -> None:
    frames = [Image.fromarray(displayed()).quantize(16), Image.fromarray(np.zeros((H, W, 3), np.uint8)).quantize(2)]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100)


def make_palette_png(path: Path) -> None:
    img = Image.fromarray(displayed()).quantize(16)
    img.info["transparency"] = img.getpixel((W - 1, H - 1))  # bottom-right colour is transparent
    img.save(path, "PNG", transparency=img.info["transparency"])


def make_heic(path: Path) -> None:
    import pillow_heif

    # pillow-heif turns EXIF orientation into an irot box: libheif displays the turned pixels.
    pillow_heif.from_pillow(Image.fromarray(stored_turned(displayed()))).save(path, quality=95, exif=exif_bytes(6),
                                                                           icc_profile=ICC)


def make_psd(path: Path) -> None:
    from psd_tools import PSDImage

    PSDImage.frompil(Image.fromarray(displayed())).save(path)


def scene_linear() -> np.ndarray:
    """Linear light with a wide range and the values that break tone mappers."""
    linear = displayed(top=1, dtype=np.float32) ** 2.2 * 40.0
    linear[-1, -1] = (np.nan, np.inf, -5.0)
    return linear.astype(np.float32)


def make_exr_openexr(path: Path) -> None:
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"RGB": scene_linear()}).write(str(path))


def opencv_write(path: Path, suffix: str, bgr: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(suffix, np.ascontiguousarray(bgr))  # OpenCV picks the format by suffix
    assert ok
    path.write_bytes(data.tobytes())


def make_exr_opencv(path: Path) -> None:
    opencv_write(path, ".exr", scene_linear()[..., ::-1])


def make_hdr(path: Path) -> None:
    opencv_write(path, ".hdr", np.nan_to_num(scene_linear(), posinf=0.0)[..., ::-1].clip(0))


def make_dng(path: Path) -> None:
    """A minimal DNG (CFA, RGGB) that LibRaw opens, stored turned with orientation 6."""
    import tifffile

    stored = stored_turned(displayed(top=4000, dtype=np.uint16))
    cfa = stored[..., 1].copy()
    cfa[0::2, 0::2], cfa[1::2, 1::2] = stored[0::2, 0::2, 0], stored[1::2, 1::2, 2]
    tags = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True), (50706, "B", 4, (1, 4, 0, 0), True),
            (50708, "s", 0, "Restora Test", True), (50717, "I", 1, (4095,), True),
            (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True),
            (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True), (274, "H", 1, (6,), True)]
    tifffile.imwrite(path, cfa, photometric=32803, extratags=tags)


def _writers() -> dict[str, tuple[str, object]]:
    """name -> (expected format, writer(path))."""
    rgb, turned = displayed(), stored_turned(displayed())
    return {
        "jpeg-exif6": ("jpeg", lambda p: p.write_bytes(
            encode_image(turned, "JPEG", quality=95, exif=exif_bytes(6), icc_profile=ICC))),
        "png": ("png", lambda p: p.write_bytes(encode_image(rgb, "PNG", exif=exif_bytes(1)))),
        "png-exif6": ("png", lambda p: p.write_bytes(encode_image(turned, "PNG", exif=exif_bytes(6)))),
        "png-rgba": ("png", lambda p: p.write_bytes(
            encode_image(np.dstack([rgb, np.full((H, W), 128, np.uint8)]), "PNG"))),
        "png-palette-alpha": ("png", make_palette_png),
        "png16-exif6": ("png", lambda p: make_png16(p, stored_turned(displayed(65535, np.uint16)), exif_bytes(6))),
        "gif": ("gif", make_gif),
        "bmp": ("bmp", lambda p: p.write_bytes(encode_image(rgb, "BMP"))),
        "webp-lossy": ("webp", lambda p: p.write_bytes(encode_image(rgb, "WEBP", quality=95))),
        "webp-lossless-exif8": ("webp", lambda p: p.write_bytes(
            encode_image(np.ascontiguousarray(np.rot90(rgb, -1)), "WEBP", lossless=True, exif=exif_bytes(8)))),
        "tiff-exif6": ("tiff", lambda p: p.write_bytes(
            encode_image(turned, "TIFF", exif=exif_bytes(6), compression="tiff_deflate"))),
        "tiff16-orient6": ("tiff", lambda p: make_tiff16(p, stored_turned(displayed(65535, np.uint16)), 6)),
        "heic-irot": ("heic", make_heic),
        "avif-irot": ("avif", lambda p: p.write_bytes(encode_image(turned, "AVIF", quality=95, exif=exif_bytes(6),
                                                                     icc_profile=ICC))),
        "tga-bottom-up": ("tga", lambda p: p.write_bytes(encode_image(rgb, "TGA"))),
        "tga-top-down-rle": ("tga", lambda p: p.write_bytes(
            encode_image(rgb, "TGA", orientation=1, compression="tga_rle"))),
        "psd": ("psd", make_psd),
        "exr-openexr": ("exr", make_exr_openexr),
        "exr-opencv": ("exr", make_exr_opencv),
        "hdr": ("hdr", make_hdr),
        "dng": ("raw", make_dng),
    }


WRITERS = _writers()
ISOLATED_FORMATS = {"heic", "avif", "raw"}


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    """Every sample written once, under a name that lies about its format."""
    folder = tmp_path_factory.mktemp("formats")
    paths = {}
    for name, (_, write) in WRITERS.items():
        path = folder / f"{name}.jpg" if not name.startswith("jpeg") else folder / f"{name}.png"
        write(path)
        paths[name] = path
    return paths


@pytest.mark.parametrize("name", WRITERS)
def test_format_is_sniffed_from_bytes_not_the_name(samples, name):
    expected = WRITERS[name][0]
    data = samples[name].read_bytes()
    assert detect_format(samples[name]) == expected
    assert sniff_format(data[:HEADER_BYTES]) == expected


@pytest.mark.parametrize("head", [b"", b"hello, I am a text file\n" * 10, b"\x00" * 64,
                                  b"BMW is a car maker, not a bitmap",
                                  b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", b"PK\x03\x04" + b"\x00" * 60,
                                  b"%PDF-1.7\n" + b"x" * 60, b"<svg xmlns='http://www.w3.org/2000/svg'/>"])
def test_non_images_are_not_sniffed(head):
    assert sniff_format(head) is None


def _tiff_head(entries: list[tuple[int, int, int, bytes]], extra: bytes = b"") -> bytes:
    """A little-endian TIFF head with one IFD at offset 8 and ``extra`` data after it."""
    import struct

    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00") for tag, kind, count, value in entries)
    return b"II*\x00\x08\x00\x00\x00" + ifd + b"\x00" * 4 + extra


def test_raw_signatures():
    import struct

    data_at = struct.pack("<I", 8 + 2 + 12 * 2 + 4)
    nef = _tiff_head([(271, 2, 18, data_at), (330, 4, 1, b"\x00" * 4)], b"NIKON CORPORATION\x00")
    scanner_tiff = _tiff_head([(271, 2, 18, data_at), (262, 3, 1, b"\x02\x00")], b"NIKON CORPORATION\x00")
    assert sniff_format(nef) == "raw"
    assert sniff_format(scanner_tiff) == "tiff"  # a maker's name alone does not make a RAW
    assert sniff_format(_tiff_head([(50706, 1, 4, b"\x01\x04\x00\x00")])) == "raw"  # DNG
    assert sniff_format(_tiff_head([(262, 3, 1, b"\x23\x80")])) == "raw"  # CFA photometric 32803
    assert sniff_format(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + b"\x00" * 20) == "raw"  # CR2
    for head in (b"IIRO\x08\x00", b"IIRS\x08\x00", b"MMOR\x00\x00", b"IIU\x00\x08\x00", b"FUJIFILMCCD-RAW 0201"):
        assert sniff_format(head + b"\x00" * 32) == "raw"
    assert sniff_format(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom") == "raw"  # CR3
    assert sniff_format(b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf") == "avif"
    assert sniff_format(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == "heic"


@pytest.mark.parametrize("name", WRITERS)
async def test_probe_reads_displayed_size(samples, name):
    expected_format = WRITERS[name][0]
    path = samples[name]
    if expected_format in ISOLATED_FORMATS:
        with pytest.raises(ProbeNeedsIsolation):
            read_header(path)  # never parsed by C code inside the server
        header = await probe_isolated(path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    else:
        header = read_header(path)
    assert header == ImageHeader(expected_format, W, H)
    assert await probe_header(path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS) == header


def assert_upright(picture: Picture, *, strict: bool = True) -> None:
    assert (picture.width, picture.height) == (W, H)
    assert not np.isnan(picture.rgb).any() and picture.rgb.min() >= 0.0 and picture.rgb.max() <= 1.0
    block = picture.rgb[2: H // 4 - 2, 2: W // 4 - 2].mean(axis=(0, 1))
    rest = picture.rgb[H // 2:, W // 2:].mean(axis=(0, 1))
    assert block[0] > block[1] + 0.3 and block[0] > block[2] + 0.3, block  # red top-left, as displayed
    assert rest[0] < rest[1] and rest[0] < rest[2], rest
    if strict:
        assert abs(block[0] - 1.0) < 0.08 and block[1] < 0.08, block


@pytest.mark.parametrize("name", WRITERS)
def test_isolated_decode_has_right_size_and_orientation(samples, name, tmp_path):
    picture = decode_isolated(samples[name], tmp_path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    assert_upright(picture, strict=WRITERS[name][0] not in ("raw", "exr", "hdr"))
    assert picture.info["format"] == WRITERS[name][0]
    assert list(tmp_path.iterdir()) == []  # the child's files are gone


def test_alpha_is_kept(samples, tmp_path):
    rgba = decode_isolated(samples["png-rgba"], tmp_path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    assert rgba.alpha is not None and abs(float(rgba.alpha.mean()) - 128 / 255) < 1e-3
    palette = decode_isolated(samples["png-palette-alpha"], tmp_path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    assert palette.alpha is not None and palette.alpha[-1, -1] == 0.0 and palette.alpha[0, 0] == 1.0
    from psd_tools import PSDImage

    alpha = np.where(np.arange(H)[:, None] < H // 2, 255, 0).repeat(W, axis=1).astype(np.uint8)
    PSDImage.frompil(Image.fromarray(np.dstack([displayed(), alpha]), "RGBA")).save(tmp_path / "a.psd")
    psd = decode_isolated(tmp_path / "a.psd", tmp_path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    assert psd.alpha is not None and np.array_equal(psd.alpha, alpha / 255.0)


@pytest.mark.parametrize("output_format", ["png", "tiff"])
@pytest.mark.parametrize("source", ["png", "tiff", "tiff-lzw"])
def test_sixteen_bit_survives_decode_and_encode(tmp_path, source, output_format):
    import cv2
    import tifffile

    values = np.random.default_rng(7).integers(0, 65536, (H, W, 3), dtype=np.uint16)  # not multiples of 257
    path = tmp_path / "in.bin"
    {"png": make_png16, "tiff": make_tiff16, "tiff-lzw": make_tiff16_lzw}[source](path, values)
    picture = decode_isolated(path, tmp_path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    assert picture.bit_depth == 16
    assert np.array_equal(np.rint(picture.rgb * 65535).astype(np.uint16), values)
    out = tmp_path / f"out.{output_format}"
    encode.write_output(picture, out, output_format)
    back = tifffile.imread(out) if output_format == "tiff" else cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert back.dtype == np.uint16 and np.array_equal(back, values)
    with Image.open(out) as written:
        assert written.info.get("icc_profile") == (ICC if source == "png" else None)


@pytest.mark.parametrize("output_format", ["jpeg", "png", "webp", "avif", "tiff"])
def test_icc_profile_and_exif_are_carried(samples, tmp_path, output_format):
    picture = decode_isolated(samples["jpeg-exif6"], tmp_path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    out = tmp_path / f"out.{encode.extension_for(output_format)}"
    encode.write_output(picture, out, output_format)
    with Image.open(out) as written:
        assert written.info.get("icc_profile") == ICC
        exif = written.getexif()
        assert exif.get(0x010F) == "RestoraCam"
        assert exif.get(0x0112, 1) == 1  # the pixels are upright now: no second turn
        assert written.size == (W, H)


@pytest.mark.parametrize("name", ["jpeg-exif6", "heic-irot", "avif-irot", "png16-exif6"])
def test_icc_profile_and_exif_are_read(samples, tmp_path, name):
    picture = decode_isolated(samples[name], tmp_path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    assert picture.info["icc_profile"] == ICC
    exif = Image.Exif()
    exif.load(picture.info["exif"])
    assert exif.get(0x010F) == "RestoraCam" and exif.get(0x0112) == 1


def test_non_rgb_icc_profile_is_not_carried(tmp_path):
    cmyk_profile = ICC[:16] + b"CMYK" + ICC[20:]  # an RGB output must not claim a CMYK profile
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (W, H), (0, 255, 255, 0)).save(path, "JPEG", icc_profile=cmyk_profile)
    picture = decode_isolated(path, tmp_path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    assert "icc_profile" not in picture.info
    assert picture.rgb[..., 0].mean() > 0.9 and picture.rgb[..., 1:].mean() < 0.1  # CMYK red is RGB red


def test_sixteen_bit_png_output_carries_icc_and_exif(samples, tmp_path):
    picture = decode_isolated(samples["png16-exif6"], tmp_path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    assert picture.bit_depth == 16 and picture.info["exif"]
    encode.write_output(picture, tmp_path / "out.png", "png")
    with Image.open(tmp_path / "out.png") as written:
        written.load()
        assert written.info.get("icc_profile") == ICC
        assert written.getexif().get(0x010F) == "RestoraCam" and written.getexif().get(0x0112) == 1


@pytest.mark.parametrize("name", ["exr-openexr", "exr-opencv", "hdr"])
def test_float_images_are_tone_mapped_sanely(samples, tmp_path, name):
    picture = decode_isolated(samples[name], tmp_path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    assert picture.bit_depth == 16 and np.isfinite(picture.rgb).all()
    assert 0.0 <= picture.rgb.min() and picture.rgb.max() <= 1.0
    luminance = picture.rgb[:-1] @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    assert 0.3 < float(np.percentile(luminance, 99)) < 0.95  # neither black nor blown out
    gradient = picture.rgb[H // 2, W // 4:-1, 1]
    assert np.all(np.diff(gradient) >= -1e-3) and gradient[-1] > gradient[0]  # brighter stays brighter


def test_tone_map_is_exposure_invariant():
    from pipelines.imaging.tonemap import tone_map

    linear = scene_linear()
    difference = tone_map(linear).astype(np.int32) - tone_map(linear * 1000.0)
    assert np.abs(difference).max() <= 1  # the same picture, up to rounding
    assert not tone_map(np.zeros((4, 4, 3), np.float32)).any()


def test_pixel_limit_is_checked_before_decoding(samples, tmp_path):
    with pytest.raises(ImageTooLarge) as info:
        decode_isolated(samples["png"], tmp_path, timeout_s=TIMEOUT_S, max_pixels=W * H - 1)
    assert info.value.code == "IMAGE_TOO_LARGE"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("input_format,output_format", [
    ("jpeg", "jpeg"), ("png", "png"), ("webp", "webp"), ("avif", "avif"), ("tiff", "tiff"),
    ("raw", "png"), ("psd", "png"), ("exr", "png"), ("hdr", "png"), ("tga", "png"), ("bmp", "png"),
    ("gif", "png"), ("heic", "png")])
def test_default_output_format(input_format, output_format):
    assert encode.output_format_for(input_format) == output_format
