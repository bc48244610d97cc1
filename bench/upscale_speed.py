"""Restora's tiled upscaler vs the reference RealESRGANer: same x4plus weights, image and tile size.

Run: ``.venv/bin/python bench/upscale_speed.py [--side 128] [--tile 80] [--threads N]``. Measures
only; asserts nothing. Needs the reference package, a bench-only dependency installed with
``.venv/bin/pip install --no-deps realesrgan==0.3.0`` (``make bench`` does; never a runtime dependency).

Also reports achieved GFLOP/s against this machine's measured peak (large bf16 and fp32 matmuls
and 3x3 convolutions). RRDBNet x4 costs 35.9 MFLOP per input pixel *the network sees*: tiles
with their context count, so "processed" and "useful" (image pixels only) rates are both shown.
Engines run one after another after a warm-up each; on a shared machine compare ratios, not times.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipelines.models.converters import main as convert
from pipelines.models.rrdbnet import build_rrdbnet, load_rrdbnet
from pipelines.precision import FP32_CPU, Precision, realesrgan_precision, window_runner
from pipelines.steps.upscale import overlap_for
from pipelines.tiling import run_tiled
from pipelines.torchvision_compat import ensure_torchvision
from _results import record  # bench/_results.py (bench/ is on sys.path)  # noqa: E402

MFLOP_PER_INPUT_PIXEL = 35.9
REFERENCE = "RealESRGANer fp32 NCHW (reference)"


def photo(side: int) -> np.ndarray:
    from skimage import data

    return data.astronaut()[40 : 40 + side, 120 : 120 + side].astype(np.float32) / 255.0


def timed(run: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def peak_gflops(repeats: int = 5) -> dict[str, float]:
    """Best of a few large matmuls and channels_last 3x3 convolutions, per dtype."""
    peaks = {}
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(dtype=dtype, memory_format=torch.channels_last)
        x = torch.randn(1, 64, 128, 128, dtype=dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            a @ b, conv(x)  # warm-up
            matmul = 2 * 2048**3 / min(timed(lambda: a @ b) for _ in range(repeats))
            convolution = 2 * 64 * 64 * 9 * 128 * 128 / min(timed(lambda: conv(x)) for _ in range(repeats))
        peaks[name] = max(matmul, convolution) / 1e9
        print(f"peak {name}: matmul 2048^3 {matmul / 1e9:7.0f} GFLOP/s, conv 64->64 3x3 128^2 "
              f"{convolution / 1e9:7.0f} GFLOP/s")
    return peaks


def restora(model: torch.nn.Module, precision: Precision, tile: int,
            pixels: list[int]) -> Callable[[np.ndarray], np.ndarray]:
    run_window = window_runner(model, precision)

    def counted(window: np.ndarray) -> np.ndarray:
        pixels.append(window.shape[0] * window.shape[1])
        return run_window(window)

    return lambda image: run_tiled(image, counted, scale=4, tile=tile, overlap=overlap_for(tile))


def reference(weights: Path, tile: int, pixels: list[int]) -> Callable[[np.ndarray], np.ndarray]:
    ensure_torchvision()
    from realesrgan import RealESRGANer

    network = build_rrdbnet(4)
    network.register_forward_pre_hook(lambda module, args: pixels.append(args[0].shape[-2] * args[0].shape[-1]))
    upsampler = RealESRGANer(scale=4, model_path=str(weights), model=network, tile=tile, tile_pad=10,
                             pre_pad=10, half=False, device=torch.device("cpu"))

    def run(image: np.ndarray) -> np.ndarray:
        bgr = np.ascontiguousarray((image[..., ::-1] * 255).round().astype(np.uint8))
        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Tile i/n" for every tile
            output, _ = upsampler.enhance(bgr, outscale=4)
        return output[..., ::-1]  # back to RGB, uint8

    return run


def measure(engines: dict[str, tuple[Callable[[np.ndarray], np.ndarray], list[int]]],
            image: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Wall seconds and output of each engine on ``image``, after a small warm-up run each."""
    seconds, outputs = {}, {}
    for name, (run, pixels) in engines.items():
        run(image[:48, :48])  # warm-up: weights' layout, allocator
        pixels.clear()
        seconds[name] = timed(lambda: outputs.setdefault(name, run(image)))
        print(f"  ran {name}: {seconds[name]:.2f} s", flush=True)
    return seconds, outputs


def print_rates(seconds: dict[str, float], engines: dict[str, tuple[object, list[int]]], useful: int,
                peaks: dict[str, float]) -> None:
    print(f"\n{'engine':34s} {'time s':>7s} {'net px':>8s} {'GFLOP/s proc':>13s} {'useful':>7s} {'% peak':>7s}")
    for name, (_, pixels) in engines.items():
        processed = sum(pixels)
        rate = MFLOP_PER_INPUT_PIXEL * 1e6 * processed / seconds[name] / 1e9
        peak = peaks["bf16" if "bf16" in name else "fp32"]
        print(f"{name:34s} {seconds[name]:7.2f} {processed:8d} {rate:13.0f} "
              f"{MFLOP_PER_INPUT_PIXEL * 1e-3 * useful / seconds[name]:7.0f} {100 * rate / peak:6.1f}%")


def print_agreement(outputs: dict[str, np.ndarray], reference_name: str) -> None:
    """Same weights, different padding and tile seams: how close the engines' 8-bit outputs are."""
    expected = outputs[reference_name].astype(np.float64)
    for name, output in outputs.items():
        if name != reference_name:
            error = np.mean(((output * 255).round() - expected) ** 2)
            print(f"{name:34s} vs reference: PSNR {10 * np.log10(255**2 / error):.1f} dB (8-bit)")


def build_engines(weights: Path, tile: int) -> dict[str, tuple[Callable[[np.ndarray], np.ndarray], list[int]]]:
    """Each engine with the list its network-input pixel counts go to."""
    model = load_rrdbnet(weights, scale=4)
    chosen = realesrgan_precision(model, "cpu")
    print(f"chosen precision: {chosen.name} (bf16 vs fp32 on the calibration card: "
          f"{chosen.calibration_psnr_db or float('nan'):.1f} dB)")
    counts: list[list[int]] = [[], [], [], []]
    # NCHW gets its own copy: window_runner turns a model it runs channels_last in place.
    return {
        f"restora {chosen.name} channels_last": (restora(model, chosen, tile, counts[0]), counts[0]),
        "restora fp32 channels_last": (restora(model, FP32_CPU, tile, counts[1]), counts[1]),
        "restora fp32 NCHW": (restora(load_rrdbnet(weights, 4), Precision("fp32", "cpu", False), tile, counts[2]),
                              counts[2]),
        REFERENCE: (reference(weights, tile, counts[3]), counts[3]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=128, help="square astronaut crop, input pixels")
    parser.add_argument("--tile", type=int, default=80, help="tile size for both engines")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.side}x{args.side} -> x4, tile {args.tile}, {args.threads} threads, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    peaks = peak_gflops()
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "RealESRGAN_x4plus.pth"
        convert(["ncnn-realesrgan-x4plus", str(weights)])
        engines = build_engines(weights, args.tile)
    # Measured again after the engines and the best kept: a busy machine depresses any one sample.
    print("(peak measured before and after the engines; % peak uses the higher)")
    seconds, outputs = measure(engines, photo(args.side))
    peaks = {name: max(before, after) for (name, before), after in zip(peaks.items(), peak_gflops().values())}
    print_rates(seconds, engines, args.side**2, peaks)
    print_agreement(outputs, REFERENCE)
    print("\nspeed-up vs RealESRGANer: " + ", ".join(f"{name}: {seconds[REFERENCE] / value:.2f}x"
                                                      for name, value in seconds.items()))
    for name, value in seconds.items():
        if name != REFERENCE:
            record(f"upscale.{slug(name)}.speedup", seconds[REFERENCE] / value, "x", "RealESRGANer")


def slug(name: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


if __name__ == "__main__":
    main()
