"""Does bf16 hold on a *trained* U^2-Net? A proxy, since rembg's real weights cannot be downloaded here.

Run: ``.venv/bin/python bench/remove_bg_trained_proxy.py [--model u2net] [--steps 300]``. Measures
only; asserts nothing; nothing it trains is shipped or used by the server.

Random weights are chaotic: bf16 rounding moves their masks by tens of levels (22-26 dB against
ONNX Runtime fp32), so the load-time check (``rembg_sessions.bf16_decision``, bar
``BF16_MIN_PSNR_DB``) refuses bf16 for them and says nothing about trained weights. This script
trains the real architecture from random weights for a few hundred steps on a toy salient-object
task made only of scikit-image's bundled photos (a photo-filled blob pasted on another photo),
exports it as rembg's ONNX files are exported, and prints, after each stage of training, the
check's own measure on its calibration photo and the mask agreement on held-out composites.
A few hundred CPU steps are far from the real training; read the trend, not the last figure.
``--keep DIR`` keeps the final model, so ``remove_bg_full.py --cache DIR`` can time a model that
passes the check end to end, as decided.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the architectures live in tests/

from pipelines.models.onnx_torch import TorchOnnxSession  # noqa: E402
from pipelines.models.rembg_sessions import bf16_decision, load_onnxruntime_session, mask_with  # noqa: E402
from pipelines.precision import psnr  # noqa: E402
from tests.rembg_models import INPUT_SIDE, build, export_onnx  # noqa: E402

MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
FILLS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina")
BACKGROUNDS = ("brick", "grass", "gravel", "hubble_deep_field", "page", "text", "camera", "moon")


def photos(names: tuple[str, ...]) -> list[np.ndarray]:
    from skimage import color, data

    out = []
    for name in names:
        image = getattr(data, name)()
        out.append(color.gray2rgb(image) if image.ndim == 2 else image[..., :3])
    return out


def blob(rng: np.random.Generator, side: int) -> np.ndarray:
    """A random smooth closed shape covering 10-50% of the square."""
    import cv2

    angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 10)))
    radius = side * rng.uniform(0.15, 0.4) * rng.uniform(0.6, 1.0, angles.size)
    centre = side * rng.uniform(0.35, 0.65, 2)
    points = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], 1)
    mask = np.zeros((side, side), np.uint8)
    cv2.fillPoly(mask, [points.astype(np.int32)], 255)
    return cv2.GaussianBlur(mask, (0, 0), side / 150) > 127


def crop(rng: np.random.Generator, image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    height, width = image.shape[:2]
    size = int(rng.integers(min(height, width) // 2, min(height, width) + 1))
    top, left = rng.integers(0, height - size + 1), rng.integers(0, width - size + 1)
    return cv2.resize(image[top:top + size, left:left + size], (side, side), interpolation=cv2.INTER_AREA)


def composite(rng: np.random.Generator, fills: list, backgrounds: list, side: int) -> tuple[np.ndarray, np.ndarray]:
    mask = blob(rng, side)
    canvas = crop(rng, backgrounds[rng.integers(len(backgrounds))], side).copy()
    canvas[mask] = crop(rng, fills[rng.integers(len(fills))], side)[mask]
    return canvas, mask


def batch(rng: np.random.Generator, fills: list, backgrounds: list, side: int, size: int) -> tuple:
    pairs = [composite(rng, fills, backgrounds, side) for _ in range(size)]
    images = np.stack([(p[0] / 255.0 - MEAN) / STD for p in pairs]).transpose(0, 3, 1, 2).astype(np.float32)
    return torch.from_numpy(images), torch.from_numpy(np.stack([p[1] for p in pairs])[:, None].astype(np.float32))


def train(model: torch.nn.Module, steps: int, rng: np.random.Generator, side: int, optimiser: torch.optim.Optimizer) -> float:
    fills, backgrounds = photos(FILLS), photos(BACKGROUNDS)
    model.train()
    loss_value = float("nan")
    for _ in range(steps):
        images, masks = batch(rng, fills, backgrounds, side, 4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = model(images)
        loss = sum(F.binary_cross_entropy(out.float().clamp(1e-6, 1 - 1e-6), masks) for out in outputs)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        loss_value = float(loss.detach())
    return loss_value


def measure(path: Path, held_out: list) -> str:
    from PIL import Image

    session = load_onnxruntime_session(path, "cpu")
    torch_session = TorchOnnxSession(path, "cpu", torch.bfloat16)
    decision = bf16_decision(session, torch_session)
    agreements, ious = [], []
    for rgb, truth in held_out:
        pil = Image.fromarray(rgb)
        reference, candidate = mask_with(session, session.inner_session, pil), mask_with(session, torch_session, pil)
        agreements.append(psnr(candidate, reference))
        ious.append(np.logical_and(reference >= 0.5, truth).sum() / max(1, np.logical_or(reference >= 0.5, truth).sum()))
    return (f"check on its photo {decision.calibration_psnr_db:.1f} dB -> {decision.name}; held-out masks bf16 vs "
            f"fp32 min {min(agreements):.1f} / median {np.median(agreements):.1f} dB; fp32 IoU {np.mean(ious):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="u2net", choices=sorted(INPUT_SIDE))
    parser.add_argument("--steps", type=int, default=300, help="training steps in all (batch 4)")
    parser.add_argument("--stages", type=int, default=3)
    parser.add_argument("--train-side", type=int, default=192)
    parser.add_argument("--keep", type=Path, default=None,
                        help="also write the final model to KEEP/<model>/<model>.onnx (for remove_bg_full.py --cache)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, rng = build(args.model), np.random.default_rng(0)
    held_rng = np.random.default_rng(12345)
    held_out = [composite(held_rng, photos(FILLS), photos(BACKGROUNDS), 640) for _ in range(6)]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    side = INPUT_SIDE[args.model]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / args.model / f"{args.model}.onnx"
        path.parent.mkdir()
        done = 0
        for stage in range(args.stages + 1):
            steps = 0 if stage == 0 else args.steps // args.stages
            started = time.perf_counter()
            loss = train(model, steps, rng, args.train_side, optimiser) if steps else float("nan")
            done += steps
            print(f"{args.model} after {done:4d} steps (loss {loss:.3f}, {time.perf_counter() - started:.0f} s): "
                  f"{measure(export_onnx(model, path, side), held_out)}", flush=True)
        if args.keep:
            kept = args.keep / args.model / f"{args.model}.onnx"
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_bytes(path.read_bytes())


if __name__ == "__main__":
    main()
