"""Upscale quality: Restora (real x4plus weights) vs bicubic vs Lanczos on degraded scikit-image photos.

Each photo is centre-cropped, downscaled 4x (area) and JPEG-compressed, then brought back to the
original size by each method. Printed: PSNR and SSIM against the original, and a sharpness measure
(variance of the Laplacian of luminance; the original's value is shown for reference, higher than
the original means invented or over-sharpened detail). Side-by-side crops are saved for a person
to look at: original | low-res input (nearest) | bicubic | Lanczos | Restora.

Run: ``.venv/bin/python bench/upscale_quality.py [--side 256] [--quality 75] [--threads N] [--out DIR]``.
Measures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import io
import os
import tempfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pipelines.base import Picture, StepContext
from pipelines.models.converters import main as convert
from pipelines.models.loaders import use_torch_threads
from pipelines.models.rrdbnet import load_rrdbnet
from pipelines.steps.upscale import DEFAULT_MODEL, STEP

PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "rocket")
CROP_SIDE = 96  # of the side-by-side panels, in output pixels
RESTORA_RUNS: list[dict] = []  # the step's measurements, to print which precision and tiles it used


def original(name: str, side: int) -> np.ndarray:
    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[top : top + side, left : left + side].astype(np.float32) / 255.0


def degrade(image: np.ndarray, quality: int) -> np.ndarray:
    """4x area downscale, then a round trip through JPEG at ``quality``."""
    small = cv2.resize(image, (image.shape[1] // 4, image.shape[0] // 4), interpolation=cv2.INTER_AREA)
    buffer = io.BytesIO()
    Image.fromarray((small * 255).round().astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer), dtype=np.float32) / 255.0


def restora(model, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    use_torch_threads(threads)
    ctx = StepContext(report=lambda fraction, stage: None, is_cancelled=lambda: False, device="cpu",
                      models={DEFAULT_MODEL: model})

    def run(low: np.ndarray) -> np.ndarray:
        outcome = STEP.run(Picture(rgb=low), STEP.checked({"outscale": 4}), ctx)
        RESTORA_RUNS.append(outcome.measurements["upscale"])
        return outcome.image.rgb

    return run


def interpolate(mode: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda low: np.clip(cv2.resize(low, (low.shape[1] * 4, low.shape[0] * 4), interpolation=mode), 0, 1)


def sharpness(rgb: np.ndarray) -> float:
    luminance = cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(luminance, cv2.CV_32F).var() * 1000)


def scores(result: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    psnr = peak_signal_noise_ratio(truth, result, data_range=1.0)
    ssim = structural_similarity(truth, result, channel_axis=2, data_range=1.0)
    return psnr, ssim, sharpness(result)


def save_panel(path: Path, truth: np.ndarray, low: np.ndarray, results: dict[str, np.ndarray]) -> None:
    top, left = (truth.shape[0] - CROP_SIDE) // 2, (truth.shape[1] - CROP_SIDE) // 2
    window = (slice(top, top + CROP_SIDE), slice(left, left + CROP_SIDE))
    nearest = cv2.resize(low, truth.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    panels = [truth[window], nearest[window], *(result[window] for result in results.values())]
    strip = np.concatenate([np.pad(panel, ((0, 0), (0, 4), (0, 0)), constant_values=1.0) for panel in panels], 1)
    big = cv2.resize(strip, (strip.shape[1] * 2, strip.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    Image.fromarray((big * 255).round().astype(np.uint8)).save(path)


def build_methods(threads: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "RealESRGAN_x4plus.pth"
        convert(["ncnn-realesrgan-x4plus", str(weights)])
        model = load_rrdbnet(weights, scale=4)
    return {"bicubic": interpolate(cv2.INTER_CUBIC), "lanczos": interpolate(cv2.INTER_LANCZOS4),
            "restora": restora(model, threads)}


def evaluate(photo: str, methods: dict[str, Callable[[np.ndarray], np.ndarray]], args: argparse.Namespace,
             totals: dict[str, list[tuple[float, float, float]]]) -> None:
    """Print one photo's rows, add them to ``totals`` and save its side-by-side panel."""
    truth = original(photo, args.side)
    low = degrade(truth, args.quality)
    results = {name: method(low) for name, method in methods.items()}
    for name, result in results.items():
        totals[name].append(scores(result, truth))
        psnr, ssim, sharp = totals[name][-1]
        print(f"{photo:10s} {name:8s} {psnr:8.2f} {ssim:6.3f} {sharp:9.2f} {sharpness(truth):10.2f}", flush=True)
    save_panel(args.out / f"{photo}.png", truth, low, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256, help="centre crop of each photo (multiple of 4)")
    parser.add_argument("--quality", type=int, default=75, help="JPEG quality of the low-res input")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "restora-upscale-quality")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    methods = build_methods(args.threads)
    print(f"{args.side}^2 crops, downscaled 4x (area) + JPEG q{args.quality}, upscaled back 4x; "
          f"sharpness = 1000 * var(Laplacian of luminance)")
    print(f"{'photo':10s} {'method':8s} {'PSNR dB':>8s} {'SSIM':>6s} {'sharpness':>9s} {'(original)':>10s}")
    totals: dict[str, list[tuple[float, float, float]]] = {name: [] for name in methods}
    for photo in PHOTOS:
        evaluate(photo, methods, args, totals)
    for name, rows in totals.items():
        psnr, ssim, sharp = np.mean(rows, axis=0)
        print(f"{'mean':10s} {name:8s} {psnr:8.2f} {ssim:6.3f} {sharp:9.2f}")
    print(f"restora ran {RESTORA_RUNS[-1]['precision']} on {RESTORA_RUNS[-1]['device']}, "
          f"{RESTORA_RUNS[-1]['tiles']} tile(s) of <= {RESTORA_RUNS[-1]['tileSize']} px per photo")
    print(f"side-by-side crops (original | input | bicubic | lanczos | restora): {args.out}")


if __name__ == "__main__":
    main()
