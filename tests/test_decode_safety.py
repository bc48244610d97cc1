"""Hostile input: broken, lying and randomly mutated files, and decoder children that misbehave.

The contract: the in-process header probe returns a header, None, or asks for isolation (or
raises Pillow's bomb error) and nothing else; a decode gives a picture or Undecodable /
ImageTooLarge; a child that crashes, hangs or runs out of memory is Undecodable with the reason;
no temporary file outlives a call.

Most mutants are decoded by one long-lived limited child (decoding hundreds of files in fresh
children would take minutes on two cores); a sample, and every mutant that crashed or hung that
child, go through the real ``decode_isolated``.
"""
from __future__ import annotations

import asyncio
import io
import os
import select
import subprocess
import sys
import textwrap
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.imaging import isolated
from pipelines.imaging.errors import ImageTooLarge, ProbeNeedsIsolation, Undecodable
from pipelines.imaging.isolated import decode_isolated, probe_isolated
from pipelines.imaging.sniff import read_header
from tests.conftest import encode

TIMEOUT_S, MAX_PIXELS = 30.0, 4_000_000
SEED = 20240608
MUTANTS_PER_SEED = {"jpeg": 55, "png": 50, "gif": 45, "webp": 45, "tiff": 50, "bmp": 40, "tga": 12, "psd": 12,
                    "exr": 12, "hdr": 12, "png16": 12, "tiff16": 12, "heic": 12, "avif": 12, "dng": 12}


def picture(width: int = 48, height: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], axis=2).astype(np.uint8)


def seed_files(folder: Path) -> dict[str, bytes]:
    """Small, valid files of each format the fuzz mutates."""
    import cv2

    rgb = picture()
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Fuzz"
    rgb16 = rgb.astype(np.uint16) * 257
    return {
        "jpeg": encode(rgb, "JPEG", quality=85, exif=exif.tobytes()),
        "png": encode(np.dstack([rgb, rgb[..., 0]]), "PNG"),
        "gif": encode(rgb, "GIF"),
        "webp": encode(rgb, "WEBP", quality=80, exif=exif.tobytes()),
        "tiff": encode(rgb, "TIFF", compression="tiff_deflate"),
        "bmp": encode(rgb, "BMP"),
        "tga": encode(rgb, "TGA", compression="tga_rle"),
        "png16": cv2.imencode(".png", rgb16)[1].tobytes(),
        "tiff16": _tiff16_bytes(rgb16),
        "hdr": cv2.imencode(".hdr", rgb.astype(np.float32) / 64)[1].tobytes(),
        "psd": _psd_bytes(rgb),
        "exr": _exr_bytes(rgb.astype(np.float32) / 64, folder / "seed.exr"),
        "heic": _heic_bytes(rgb),
        "avif": encode(rgb, "AVIF", quality=70),
        "dng": _dng_bytes(rgb),
    }


def _tiff16_bytes(rgb16: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb16, photometric="rgb", compression="zlib")
    return buf.getvalue()


def _psd_bytes(rgb: np.ndarray) -> bytes:
    from psd_tools import PSDImage

    buf = io.BytesIO()
    PSDImage.frompil(Image.fromarray(rgb)).save(buf)
    return buf.getvalue()


def _heic_bytes(rgb: np.ndarray) -> bytes:
    import pillow_heif

    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(rgb)).save(buf, quality=70)
    return buf.getvalue()


def _dng_bytes(rgb: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tags = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True), (50706, "B", 4, (1, 4, 0, 0), True),
            (50717, "I", 1, (255,), True),
            (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True)]
    tifffile.imwrite(buf, rgb[..., 1].astype(np.uint16), photometric=32803, extratags=tags)
    return buf.getvalue()


def _exr_bytes(linear: np.ndarray, path: Path) -> bytes:
    import OpenEXR

    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION}, {"RGB": linear}).write(str(path))
    data = path.read_bytes()
    path.unlink()
    return data


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random damage: flipped bytes (often in the header), a truncation, a splice, a huge field."""
    buf = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:
        for _ in range(rng.integers(1, 9)):
            limit = 256 if rng.random() < 0.5 else len(buf)
            buf[rng.integers(min(limit, len(buf)))] ^= int(rng.integers(1, 256))
    elif kind == 1:
        del buf[rng.integers(1, len(buf)):]
    elif kind == 2:
        start = int(rng.integers(len(buf)))
        removed, inserted = int(rng.integers(0, 64)), int(rng.integers(0, 64))
        buf[start:start + removed] = rng.integers(0, 256, inserted, dtype=np.uint8).tobytes()
    else:
        start = int(rng.integers(min(64, len(buf) - 4)))
        buf[start:start + 4] = b"\xff\xff\xff\x7f"
    return bytes(buf)


def probe_outcome(path: Path) -> str:
    """In the test process, as in the server: only these outcomes are allowed."""
    try:
        header = read_header(path)
    except ProbeNeedsIsolation:
        return "needs-isolation"
    except Image.DecompressionBombError:
        return "bomb"
    return "none" if header is None else "header"


_WORKER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from pipelines.imaging import isolated
    from pipelines.imaging.decode import decode_pixels
    from pipelines.base import PipelineError
    isolated._limit_resources(int(sys.argv[1]), 3600)
    answers = os.fdopen(os.dup(1), "w")  # decoder libraries print to fd 1: keep it for them
    os.dup2(2, 1)
    for line in sys.stdin:
        try:
            decode_pixels(Path(line.strip()), max_pixels=int(sys.argv[2]))
            outcome = "ok"
        except PipelineError as exc:
            outcome = exc.code
        except MemoryError:
            outcome = "memory"
        except Exception as exc:
            outcome = "unexpected " + type(exc).__name__ + ": " + str(exc)[:200]
        answers.write(outcome.replace("\\n", " ") + "\\n")
        answers.flush()
""")


class DecodeWorker:
    """A long-lived limited child decoding one file per line; restarted after a crash or a hang."""

    def __init__(self, memory_bytes: int = 2 * 2**30):
        self.memory_bytes = memory_bytes
        self.process: subprocess.Popen | None = None

    def decode(self, path: Path, timeout_s: float = 20.0) -> str:
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _WORKER, str(self.memory_bytes), str(MAX_PIXELS)], text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=isolated._child_env())
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if ready else ""
        if line:
            return line.strip()
        self.stop()
        return "crash" if ready else "hang"

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.communicate()
            self.process = None


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about every corrupt TIFF tag
def test_mutated_images_fail_cleanly(tmp_path):
    rng, seeds, start = np.random.default_rng(SEED), seed_files(tmp_path), time.monotonic()
    work = tmp_path / "work"
    work.mkdir()
    probes, decodes, slowest_probe, escalated, worker = Counter(), Counter(), 0.0, [], DecodeWorker()
    try:
        for fmt, count in MUTANTS_PER_SEED.items():
            for index in range(count):
                path = tmp_path / f"{fmt}-{index}.bin"
                path.write_bytes(mutate(seeds[fmt], rng))
                began = time.monotonic()
                probe = probe_outcome(path)
                slowest_probe = max(slowest_probe, time.monotonic() - began)
                outcome = worker.decode(path)
                assert not outcome.startswith("unexpected"), (path.name, outcome)
                probes[probe] += 1
                decodes[outcome if outcome in ("ok", "crash", "hang") else "refused " + outcome] += 1
                if outcome in ("crash", "hang") or index % 20 == 0:
                    escalated.append((path, probe))
    finally:
        worker.stop()
    isolated_outcomes = Counter(_isolated_outcome(path, probe, work) for path, probe in escalated)
    print(f"\nfuzz: {sum(probes.values())} mutants in {time.monotonic() - start:.1f} s; in-process probe "
          f"{dict(probes)} (slowest {slowest_probe * 1000:.0f} ms); limited-child decode {dict(decodes)}; "
          f"decode_isolated/probe_isolated on {len(escalated)}: {dict(isolated_outcomes)}")
    assert slowest_probe < 2.0
    assert set(isolated_outcomes) <= {"ok", "UNDECODABLE", "IMAGE_TOO_LARGE", "probe-none"}
    assert list(work.iterdir()) == []


def _isolated_outcome(path: Path, probe: str, work: Path) -> str:
    """The production path: the isolated probe where the server would need it, then the decode."""
    try:
        if probe == "needs-isolation":
            if asyncio.run(probe_isolated(path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)) is None:
                return "probe-none"
        decode_isolated(path, work, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    except (Undecodable, ImageTooLarge) as exc:
        return exc.code
    return "ok"


def _png_claiming(width: int, height: int) -> bytes:
    png = encode(picture(8, 8), "PNG")
    ihdr = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + png[24:29]
    return png[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + png[33:]


BROKEN = {
    "empty": b"",
    "text": b"hello, I am a text file\n" * 10,
    "png-magic-then-zeros": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
    "jpeg-magic-png-body": b"\xff\xd8\xff" + encode(picture(), "PNG")[3:],
    "truncated-jpeg": encode(picture(), "JPEG")[:300],
    "truncated-png": encode(picture(), "PNG")[:200],
    "png-header-lies-small": _png_claiming(4000, 900),  # claims more rows than its data holds
    "heic-brand-garbage": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x5a" * 300,
    "avif-brand-garbage": b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif" + b"\x00" * 300,
    "raf-garbage": b"FUJIFILMCCD-RAW 0201" + b"\x11" * 500,
    "dng-garbage": b"II*\x00\x08\x00\x00\x00\x01\x00\x12\xc6\x01\x00\x04\x00\x00\x00\x01\x04\x00\x00" + b"\x00" * 64,
    "exr-garbage": (b"\x76\x2f\x31\x01\x02\x00\x00\x00dataWindow\x00box2i\x00\x10\x00\x00\x00"
                    + b"\x00" * 8 + b"\x40" * 8),
    "psd-garbage": (b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03\x00\x00\x00\x20\x00\x00\x00\x20\x00\x08\x00\x03"
                    + b"\x07" * 50),
    "hdr-garbage": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 64 +X 64\n" + b"\x02\x02\x00\x40" * 20,
}


@pytest.mark.parametrize("name", BROKEN)
async def test_broken_files_get_a_clear_answer(tmp_path, name):
    path = tmp_path / "upload.jpg"
    path.write_bytes(BROKEN[name])
    work = tmp_path / "work"
    work.mkdir()
    outcome = probe_outcome(path)
    assert outcome in ("none", "header", "needs-isolation")
    if outcome == "needs-isolation":
        with pytest.raises(Undecodable):
            await probe_isolated(path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    with pytest.raises((Undecodable, ImageTooLarge)):
        decode_isolated(path, work, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)
    assert list(work.iterdir()) == []


def test_bomb_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(60000, 60000))
    with pytest.raises(Image.DecompressionBombError):
        read_header(path)  # Pillow's protection stays on in the server
    path.write_bytes(_png_claiming(3000, 2000))
    assert read_header(path).pixels == 6_000_000
    with pytest.raises(ImageTooLarge):
        decode_isolated(path, tmp_path, timeout_s=TIMEOUT_S, max_pixels=MAX_PIXELS)


_FAULTY_CHILD = textwrap.dedent("""
    import ctypes, os, sys, time
    import numpy as np
    from pipelines.imaging import decode, isolated, native

    FAULT = sys.argv.pop(1)

    def faulty(*args, **kwargs):
        if FAULT == "abort":
            os.abort()
        if FAULT == "segfault":
            ctypes.string_at(0)
        if FAULT == "hang":
            time.sleep(3600)
        if FAULT == "spin":
            while True:
                pass
        if FAULT == "memory":
            hoard = [np.empty(2**28, np.uint8) for _ in range(256)]
        if FAULT == "garbage":
            sys.stdout.write("this is not JSON\\n")
            os._exit(0)
        raise AssertionError("unknown fault " + FAULT)

    decode.decode_pixels = faulty
    native.native_size = faulty
    sys.exit(isolated.main(sys.argv[1:]))
""")


@pytest.fixture
def faulty_child(tmp_path, monkeypatch):
    """Make the isolated child a test-only script that injects ``fault`` around the real ``main``."""
    script = tmp_path / "faulty_child.py"
    script.write_text(_FAULTY_CHILD)

    def use(fault: str) -> None:
        monkeypatch.setattr(isolated, "CHILD_COMMAND", (sys.executable, str(script), fault))
    return use


@pytest.mark.parametrize("fault,reason,timeout_s", [
    ("abort", "crash", TIMEOUT_S), ("segfault", "crash", TIMEOUT_S), ("hang", "timeout", 2.0),
    ("spin", "timeout", 2.0), ("memory", "memory", TIMEOUT_S), ("garbage", "crash", TIMEOUT_S)])
def test_misbehaving_decoder_child_is_undecodable(tmp_path, faulty_child, fault, reason, timeout_s):
    faulty_child(fault)
    path = tmp_path / "photo.png"
    path.write_bytes(encode(picture(), "PNG"))
    work = tmp_path / "work"
    work.mkdir()
    began = time.monotonic()
    with pytest.raises(Undecodable) as info:
        decode_isolated(path, work, timeout_s=timeout_s, max_pixels=MAX_PIXELS)
    assert info.value.code == "UNDECODABLE" and info.value.details["reason"] == reason, info.value.message
    assert time.monotonic() - began < timeout_s + 10
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("fault,reason", [("abort", "crash"), ("hang", "timeout"), ("memory", "memory")])
async def test_misbehaving_probe_child_is_undecodable(tmp_path, faulty_child, fault, reason):
    faulty_child(fault)
    path = tmp_path / "photo.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100)
    with pytest.raises(Undecodable) as info:
        await probe_isolated(path, timeout_s=2.0, max_pixels=MAX_PIXELS)
    assert info.value.details["reason"] == reason, info.value.message


async def test_cancelled_probe_leaves_no_child(tmp_path, faulty_child):
    faulty_child("hang")
    path = tmp_path / "photo.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100)
    task = asyncio.create_task(probe_isolated(path, timeout_s=60.0, max_pixels=MAX_PIXELS))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    children = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "faulty_child"], capture_output=True, text=True)
    assert children.stdout.strip() == ""


def test_real_decoder_over_its_memory_limit_is_undecodable(tmp_path, monkeypatch):
    # A real decode, not a simulated one: a 16 MP RGBA PNG under an address-space limit that only
    # just holds the interpreter and its libraries.
    monkeypatch.setattr(isolated, "BASE_MEMORY_BYTES", 240 * 2**20)
    monkeypatch.setattr(isolated, "DECODE_BYTES_PER_PIXEL", 0)
    path = tmp_path / "big.png"
    Image.new("RGBA", (4000, 4000), (10, 20, 30, 40)).save(path, compress_level=1)
    with pytest.raises(Undecodable) as info:
        decode_isolated(path, tmp_path, timeout_s=TIMEOUT_S, max_pixels=20_000_000)
    assert info.value.details["reason"] == "memory", info.value.message
    assert [p.name for p in tmp_path.iterdir()] == ["big.png"]
