"""Background removal on full-size architectures: Restora's step against ``rembg.remove``.

Run: ``.venv/bin/python bench/remove_bg_full.py [--models u2netp,u2net,isnet-general-use] [--rounds 3]``.
Measures only; asserts nothing.

The models are rembg's at their real shapes with random weights (tests/rembg_models.py: u2net
44.0 M parameters at 320 px, isnet-general-use 44.0 M at 1024 px, u2netp 1.13 M), written once
into ``--cache`` as ONNX files. birefnet-general (a Swin-L transformer) is not generated: its
architecture is not written here.

Three ways, each in its own process (see :func:`contestant`), taking turns (a block of runs each,
the first one untimed) on the same photo and the same file:
* ``rembg.remove`` with rembg's session (ONNX Runtime, fp32): the baseline;
* Restora as it decides: the session ``load_session`` returns (bf16 in torch only where its mask
  matched ONNX Runtime's on the calibration photo, else ONNX Runtime);
* Restora with bf16 forced, to show what the torch path gives where the check lets it run.
Agreement: each Restora alpha against rembg.remove's, in 8-bit levels and PSNR. Random weights are
chaotic, so bf16's agreement here says nothing about trained weights (docs/NOTES.md, "rembg").
u2net is not one of Restora's quality levels; it runs through the ``low`` level's slot.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the random-weight writers live in tests/

from pipelines.base import Picture  # noqa: E402
from pipelines.models.rembg_sessions import load_onnxruntime_session, load_session, warm_up_rembg  # noqa: E402
from pipelines.precision import psnr  # noqa: E402
from pipelines.steps.remove_background import to_uint8  # noqa: E402
from tests.rembg_models import write_rembg_onnx  # noqa: E402

import remove_bg_bench  # noqa: E402  (bench/ is on sys.path: its step runner)
from _results import record  # noqa: E402

LEVEL = {"u2netp": "low", "u2net": "low", "isnet-general-use": "medium"}
BLOCK = 3  # timed runs per turn


class OneSession:
    """A ModelProvider that answers the level's model id with ``session``."""

    def __init__(self, session: Any):
        self.session = session

    def get(self, model_id: str) -> Any:
        return self.session


def run_step(image: Picture, level: str, session: Any) -> np.ndarray:
    """The step's 8-bit alpha, through remove_bg_bench's runner, with ``session`` as the level's model."""
    return to_uint8(remove_bg_bench.run_step(image, level, OneSession(session)).alpha)


def photo(size: tuple[int, int]) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.chelsea()).resize(size, Image.Resampling.LANCZOS))


def model_file(cache: Path, name: str) -> Path:
    path = cache / name / f"{name}.onnx"
    if not path.exists():
        started = time.perf_counter()
        write_rembg_onnx(path, name)
        print(f"  wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
    return path


def forced_bf16(path: Path) -> Any:
    import torch

    from pipelines.models.onnx_torch import TorchOnnxSession

    session = load_onnxruntime_session(path, "cpu")
    session.inner_session = TorchOnnxSession(path, "cpu", torch.bfloat16)
    return session


def agreement(ours: np.ndarray, theirs: np.ndarray) -> str:
    difference = np.abs(ours.astype(int) - theirs.astype(int))
    return (f"max {difference.max()}/255, mean {difference.mean():.2f}, "
            f"{psnr(ours / 255.0, theirs / 255.0):.1f} dB")


def contestant(conn: Any, kind: str, name: str, path: Path, rgb: np.ndarray) -> None:
    """One way of removing the background, in its own process: ONNX Runtime and torch each keep
    thread pools that stay busy for a while after a run, so in one process each would slow the
    other (measured: torch bf16 0.49 s alone, 0.56-1.6 s right after an ONNX Runtime run)."""
    from rembg import remove

    level = LEVEL[name]
    image, pil = Picture(rgb=rgb.astype(np.float32) / 255.0), Image.fromarray(rgb)
    if kind == "rembg":
        session = load_onnxruntime_session(path, "cpu")
        once = lambda: np.asarray(remove(pil, session=session))[..., 3]  # noqa: E731
    else:
        session = forced_bf16(path) if kind == "bf16" else load_session(path, "cpu")
        once = lambda: run_step(image, level, session)  # noqa: E731
    conn.send(session.inner_session.get_providers()[0])
    while conn.recv() == "run":
        started = time.perf_counter()
        alpha = once()
        conn.send((time.perf_counter() - started, alpha))


def compare(name: str, path: Path, rgb: np.ndarray, rounds: int) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    pipes, processes, how = {}, [], {}
    for kind in ("rembg", "decided", "bf16"):
        parent, child = context.Pipe()
        process = context.Process(target=contestant, args=(child, kind, name, path, rgb), daemon=True)
        process.start()
        pipes[kind], how[kind] = parent, parent.recv()
        processes.append(process)
    seconds: dict[str, list[float]] = {kind: [] for kind in pipes}
    alphas: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for kind, pipe in pipes.items():
            # A block of runs per contestant, its first run untimed: right after an ONNX Runtime run,
            # even in another process, a torch bf16 run took up to 2.7x its time (docs/NOTES.md, "rembg").
            for run_index in range(1 + BLOCK):
                pipe.send("run")
                elapsed, alphas[kind] = pipe.recv()
                if run_index:
                    seconds[kind].append(elapsed)
    for pipe, process in zip(pipes.values(), processes):
        pipe.send("stop")
        process.join()
    report(name, {kind: statistics.median(values) for kind, values in seconds.items()}, alphas, how)


def report(name: str, medians: dict[str, float], alphas: dict[str, np.ndarray], how: dict[str, str]) -> None:
    print(f"  {name:18s} rembg.remove {medians['rembg']:.3f} s | Restora as decided ({how['decided']}) "
          f"{medians['decided']:.3f} s = {medians['rembg'] / medians['decided']:.2f}x, alpha "
          f"{agreement(alphas['decided'], alphas['rembg'])} | bf16 forced {medians['bf16']:.3f} s = "
          f"{medians['rembg'] / medians['bf16']:.2f}x, alpha {agreement(alphas['bf16'], alphas['rembg'])}")
    record(f"remove_bg.full.{name}.speedup_as_decided", medians["rembg"] / medians["decided"], "x", "rembg.remove")
    record(f"remove_bg.full.{name}.speedup_bf16_forced", medians["rembg"] / medians["bf16"], "x", "rembg.remove")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="u2netp,u2net,isnet-general-use")
    parser.add_argument("--rounds", type=int, default=2, help="turns per contestant")
    parser.add_argument("--size", default="1024x768", help="the photo's WxH")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "restora-bench" / "rembg")
    args = parser.parse_args()
    import torch

    width, height = (int(v) for v in args.size.split("x"))
    print(f"import rembg: {warm_up_rembg():.1f} s; torch threads {torch.get_num_threads()}; "
          f"{width}x{height} photo; medians of {args.rounds} turns of {BLOCK} timed runs each")
    rgb = photo((width, height))
    for name in args.models.split(","):
        compare(name, model_file(args.cache, name), rgb, args.rounds)


if __name__ == "__main__":
    main()
