"""ncnn (fp32, CPU) vs the converted PyTorch RRDBNet x4plus on one 64x64 crop: agreement and speed.

Run: ``.venv/bin/python bench/ncnn_vs_torch.py``. Measures only; asserts nothing. The two engines
run alternately in the same process, so a noisy machine slows both alike; the median of several
runs is reported, after one warm-up run each (first calls pay for allocation and kernel setup).
"""
from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from pipelines.models.ncnn_realesrgan import convert_to_pth, load_ncnn_fp32, packaged_x4plus_files
from pipelines.models.rrdbnet import load_rrdbnet, upscale_array
from pipelines.precision import psnr

from _timing import time_alternately  # bench/_timing.py (bench/ is on sys.path)
from _results import record  # bench/_results.py (bench/ is on sys.path)  # noqa: E402

SIDE = 64
REPEATS = 5


def photo_crop(side: int) -> np.ndarray:
    from skimage import data as skimage_data

    return skimage_data.astronaut()[80 : 80 + side, 190 : 190 + side].astype(np.float32) / 255.0


def main() -> None:
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    param_path, bin_path = packaged_x4plus_files()
    with tempfile.TemporaryDirectory() as scratch:
        model = load_rrdbnet(convert_to_pth(param_path, bin_path, Path(scratch) / "x4plus.pth"), scale=4)
    ncnn_graph = load_ncnn_fp32(param_path, bin_path, threads=threads)
    image = photo_crop(SIDE)

    def run_ncnn() -> np.ndarray:
        return np.clip(ncnn_graph.run(image.transpose(2, 0, 1)), 0.0, 1.0).transpose(1, 2, 0)

    def run_torch() -> np.ndarray:
        return upscale_array(model, image, scale=4, pre_pad=0)  # no padding: ncnn gets none either

    torch_output, ncnn_output = run_torch(), run_ncnn()
    max_abs_diff = float(np.max(np.abs(torch_output - ncnn_output)))
    print(f"input {SIDE}x{SIDE} -> {SIDE * 4}x{SIDE * 4}, {threads} threads, torch {torch.__version__}")
    print(f"torch vs ncnn: max abs diff {max_abs_diff:.3e}, PSNR {psnr(torch_output, ncnn_output):.1f} dB")
    timings = time_alternately({"ncnn fp32": run_ncnn, "torch fp32 NCHW": run_torch}, REPEATS)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name, values in timings.items():
        print(f"{name:16s} median {medians[name]:.3f} s  min {min(values):.3f} s  ({REPEATS} runs)")
    print(f"torch / ncnn time ratio (medians): {medians['torch fp32 NCHW'] / medians['ncnn fp32']:.2f}")
    record("upscale.x4plus_fp32_nchw.speedup", medians["ncnn fp32"] / medians["torch fp32 NCHW"], "x", "ncnn")
    record("upscale.x4plus_conversion.psnr", psnr(torch_output, ncnn_output), "dB", "ncnn")


if __name__ == "__main__":
    main()
