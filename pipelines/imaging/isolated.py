"""Probe and decode untrusted files in a child process with memory, CPU and wall-clock limits.

A decoder that crashes, hangs or runs away with memory takes down only its child; the caller
gets :class:`Undecodable` with a sentence saying which. The child is
``python -m pipelines.imaging.isolated probe|decode PATH [OUT_DIR] --max-pixels N ...``; it limits
itself (RLIMIT_AS, RLIMIT_CPU, an alarm) before importing any decoder, answers with one JSON
line on stdout and, for ``decode``, leaves the pixels as .npy files in OUT_DIR (see :mod:`.transfer`).

For the server: ``await probe_header(path, ...)`` (in-process pure-Python header when safe, the
isolated probe for HEIC/AVIF/RAW). For the worker: ``decode_isolated(path, work_dir, ...)``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipelines.base import Cancelled, Picture, PipelineError
from pipelines.imaging.errors import ImageTooLarge, ProbeNeedsIsolation, Undecodable
from pipelines.imaging.sniff import ImageHeader, read_header

log = logging.getLogger(__name__)

# How the child is started. Tests point this at a script that injects faults around ``main``.
CHILD_COMMAND: tuple[str, ...] = (sys.executable, "-m", "pipelines.imaging.isolated")
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Address space (RLIMIT_AS), not resident memory. The base covers the child with OpenCV and every
# decoder library loaded; 40 B/px is above every format's measured peak per pixel, with headroom
# for real camera RAWs and progressive JPEG (the measurements: docs/NOTES.md, "Decoding").
BASE_MEMORY_BYTES = 1024 * 2**20
DECODE_BYTES_PER_PIXEL = 40
PROBE_MEMORY_BYTES = BASE_MEMORY_BYTES + 512 * 2**20
# One thread per decoder library: the worker already uses the cores, and threads cost address space.
_CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1"}
_MEMORY_WORDS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory")
_ERRORS: dict[str, type[PipelineError]] = {"UNDECODABLE": Undecodable, "IMAGE_TOO_LARGE": ImageTooLarge}
# How often a running decode looks whether its job was cancelled.
_CANCEL_POLL_S = 0.1


@dataclass(frozen=True)
class ChildLimits:
    memory_bytes: int
    timeout_s: float
    max_pixels: int

    def args(self) -> list[str]:
        return ["--max-pixels", str(self.max_pixels), "--memory-bytes", str(self.memory_bytes),
                "--timeout-s", repr(float(self.timeout_s))]


def decode_limits(*, timeout_s: float, max_pixels: int) -> ChildLimits:
    return ChildLimits(BASE_MEMORY_BYTES + DECODE_BYTES_PER_PIXEL * max_pixels, timeout_s, max_pixels)


def probe_limits(*, timeout_s: float, max_pixels: int) -> ChildLimits:
    return ChildLimits(PROBE_MEMORY_BYTES, timeout_s, max_pixels)


async def probe_header(path: Path, *, timeout_s: float, max_pixels: int) -> ImageHeader | None:
    """The server's probe: pure-Python in-process where safe, else :func:`probe_isolated`.

    None: not an image in a supported format (415). Raises Pillow's ``DecompressionBombError`` or
    :class:`ImageTooLarge` (413), :class:`Undecodable` (422).
    """
    try:
        return await asyncio.to_thread(read_header, path)
    except ProbeNeedsIsolation:
        return await probe_isolated(path, timeout_s=timeout_s, max_pixels=max_pixels)


async def probe_isolated(path: Path, *, timeout_s: float, max_pixels: int) -> ImageHeader | None:
    """Format and displayed size, read in a limited child. None: not a supported image.

    Raises :class:`Undecodable` when the header is unreadable or the child crashed or timed out,
    :class:`ImageTooLarge` when Pillow's bomb check refused the header.
    """
    limits = probe_limits(timeout_s=timeout_s, max_pixels=max_pixels)
    result = await _run_child_async(["probe", str(path)], limits)
    if result.get("unsupported"):
        return None
    return ImageHeader(format=str(result["format"]), width=int(result["width"]), height=int(result["height"]))


def decode_isolated(path: Path, work_dir: Path, *, timeout_s: float, max_pixels: int,
                    is_cancelled: Callable[[], bool] = lambda: False) -> Picture:
    """Decode in a limited child; its files live in a fresh folder under ``work_dir``, always removed.

    Once ``is_cancelled()`` holds, the child is stopped and :class:`Cancelled` raised.
    """
    limits = decode_limits(timeout_s=timeout_s, max_pixels=max_pixels)
    out_dir = Path(tempfile.mkdtemp(prefix=".decode-", dir=work_dir))
    try:
        _run_child_sync(["decode", str(path), str(out_dir)], limits, is_cancelled)
        from pipelines.imaging.transfer import read_picture

        return read_picture(out_dir, max_pixels)
    finally:
        shutil.rmtree(out_dir)


def _command(args: list[str], limits: ChildLimits) -> list[str]:
    return [*CHILD_COMMAND, *args, *limits.args()]


def _child_env() -> dict[str, str]:
    env = {**os.environ, **_CHILD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def _run_child_sync(args: list[str], limits: ChildLimits, is_cancelled: Callable[[], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + limits.timeout_s
    with subprocess.Popen(_command(args, limits), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=_child_env()) as child:
        while True:
            wait_s = min(_CANCEL_POLL_S, max(0.0, deadline - time.monotonic()))
            try:  # a retried communicate() loses no output
                stdout, stderr = child.communicate(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                cancelled = is_cancelled()
                if cancelled or time.monotonic() >= deadline:
                    child.kill()
                    child.communicate()
                    raise (Cancelled("The job was cancelled.") if cancelled else _timed_out(limits)) from None
    return _outcome(child.returncode, stdout, stderr, limits)


async def _run_child_async(args: list[str], limits: ChildLimits) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        *_command(args, limits), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=_child_env())
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), limits.timeout_s)
    except asyncio.TimeoutError:
        raise _timed_out(limits) from None
    finally:
        if process.returncode is None:  # timed out, or the request was cancelled: never leak it
            process.kill()
            await process.wait()
    return _outcome(process.returncode, stdout, stderr, limits)


def _outcome(returncode: int, stdout: bytes, stderr: bytes, limits: ChildLimits) -> dict[str, Any]:
    result = _last_json_line(stdout)
    if returncode == 0 and result is not None:
        if result.get("ok"):
            return result
        error = _ERRORS.get(str(result.get("code")), Undecodable)
        raise error(str(result.get("message")), details=result.get("details") or {})
    raise _crashed(returncode, stderr.decode("utf-8", "replace")[-2000:], limits)


def _last_json_line(stdout: bytes) -> dict[str, Any] | None:
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


def _timed_out(limits: ChildLimits) -> Undecodable:
    return Undecodable(f"The decoder took longer than {limits.timeout_s:g} s and was stopped.",
                       details={"reason": "timeout"})


def _crashed(returncode: int, stderr_tail: str, limits: ChildLimits) -> Undecodable:
    log.warning("isolated decoder ended with status %s; stderr tail:\n%s", returncode, stderr_tail)
    signame = _signal_name(-returncode) if returncode < 0 else None
    if signame in ("SIGXCPU", "SIGALRM"):
        return _timed_out(limits)
    if signame == "SIGKILL" or any(word in stderr_tail for word in _MEMORY_WORDS):
        return Undecodable(f"The decoder ran out of memory (limit {limits.memory_bytes / 2**20:.0f} MB).",
                           details={"reason": "memory", "signal": signame})
    if signame:
        return Undecodable(f"The decoder crashed ({signame}) on this file.",
                           details={"reason": "crash", "signal": signame})
    return Undecodable(f"The decoder failed unexpectedly (exit status {returncode}).",
                       details={"reason": "crash", "exitStatus": returncode})


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# ---- the child -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    _limit_resources(args.memory_bytes, args.timeout_s)
    # The answer gets a private copy of stdout: decoder libraries print warnings to fd 1.
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        if args.mode == "probe":
            result = _child_probe(args.path)
        else:
            result = _child_decode(args.path, args.out_dir, args.max_pixels)
    except PipelineError as exc:
        result = {"ok": False, "code": exc.code, "message": exc.message, "details": exc.details}
    except MemoryError:  # under RLIMIT_AS this is the normal way to run out
        result = {"ok": False, "code": Undecodable.code, "details": {"reason": "memory"},
                  "message": f"The decoder ran out of memory (limit {args.memory_bytes / 2**20:.0f} MB)."}
    answer.write(json.dumps(result) + "\n")
    answer.close()
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.imaging.isolated")
    parser.add_argument("mode", choices=("probe", "decode"))
    parser.add_argument("path", type=Path)
    parser.add_argument("out_dir", type=Path, nargs="?")
    parser.add_argument("--max-pixels", type=int, required=True)
    parser.add_argument("--memory-bytes", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, required=True)
    args = parser.parse_args(argv)
    if args.mode == "decode" and args.out_dir is None:
        parser.error("decode needs OUT_DIR")
    return args


def _limit_resources(memory_bytes: int, timeout_s: float) -> None:
    import resource

    _set_limit(resource.RLIMIT_AS, memory_bytes, memory_bytes)
    cpu_s = math.ceil(timeout_s) + 1
    _set_limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 2)  # SIGXCPU first, SIGKILL if ignored
    signal.alarm(math.ceil(timeout_s) + 5)  # even an orphaned, sleeping child ends


def _set_limit(which: int, soft: int, hard: int) -> None:
    import resource

    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:  # an unprivileged process can only lower it
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(which, (soft, hard))


def _child_probe(path: Path) -> dict[str, Any]:
    from PIL import Image

    try:
        header = read_header(path)
    except ProbeNeedsIsolation as needed:
        header = _native_header(path, needed.format)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    if header is None:
        return {"ok": True, "unsupported": True}
    return {"ok": True, "format": header.format, "width": header.width, "height": header.height}


def _native_header(path: Path, fmt: str) -> ImageHeader:
    from PIL import Image

    from pipelines.imaging.native import native_size

    try:
        width, height = native_size(path, fmt)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except MemoryError:
        raise
    except Exception as exc:  # LibRaw, libheif and libavif report damage with assorted types
        detail = f"{type(exc).__name__}: {exc}".replace(str(path), "the file")[:200]  # no server paths for clients
        raise Undecodable(f"The {fmt.upper()} header could not be read ({detail}).") from exc
    return ImageHeader(format=fmt, width=int(width), height=int(height))


def _child_decode(path: Path, out_dir: Path, max_pixels: int) -> dict[str, Any]:
    from PIL import Image

    from pipelines.imaging.decode import decode_pixels
    from pipelines.imaging.transfer import write_decoded

    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own bomb check, keyed to the server's limit
    meta = write_decoded(decode_pixels(path, max_pixels=max_pixels), out_dir)
    return {"ok": True, "format": meta["format"], "width": meta["width"], "height": meta["height"]}


if __name__ == "__main__":
    sys.exit(main())
