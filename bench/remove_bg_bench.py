"""remove_background (Restora) vs ``rembg.remove``: speed with the same session and image; mask IoU.

Run: ``.venv/bin/python bench/remove_bg_bench.py [--models-dir DIR]``. Measures only; asserts nothing.

Speed: a tiny ONNX model in rembg's format is generated under each session name, so inference
costs almost nothing and the ratio measures what each side adds around it (resizing,
normalisation, mask and cutout handling). Both run alternately in one process, the same session
and the same image, after one warm-up each; medians of several runs are reported.

Quality: IoU between the predicted mask (thresholded at 0.5) and the known mask of synthetic
composites: scikit-image's horse silhouette filled with the cat photo, pasted on five bundled
backgrounds. It runs only for real models installed in the model store (``--models-dir``, default
the Restora data dir's ``models``); the tiny model would measure nothing, so it is skipped then.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.base import ModelUnavailable, Picture, StepContext
from pipelines.models.rembg_sessions import load_session, warm_up_rembg
from pipelines.steps.remove_background import MODEL_FOR_QUALITY, STEP, to_uint8

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as ``python bench/x.py``: the random-weight writers live in tests/
from tests.tiny_onnx import write_tiny_onnx  # noqa: E402

from _timing import median_seconds  # bench/_timing.py (bench/ is on sys.path)
from _results import record  # bench/_results.py (bench/ is on sys.path)  # noqa: E402

REPEATS = 5
SPEED_SIZE = (1024, 768)
COMPOSITE_SIDE = 640
BUNDLE = "background-removal"


Sessions = dict[str, Any]  # loaded sessions by model id: a ModelProvider (the step only calls .get)


def step_params(quality: str) -> dict[str, Any]:
    return {"quality": quality, "returnMask": False, "alphaMatting": False, "background": None, "asExtra": False}


def run_step(image: Picture, quality: str, models: Sessions) -> Picture:
    context = StepContext(report=lambda fraction, stage: None, is_cancelled=lambda: False, models=models)
    return STEP.run(image, step_params(quality), context).image


# -- synthetic composites with a known foreground -----------------------------------------------

def composite(background: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The horse (filled with the cat) pasted in the middle of ``background``: RGB uint8 and mask."""
    from skimage import data

    horse = ~data.horse()  # True on the horse: the bundled image is white around a black horse
    height, width = int(side * 0.7 * horse.shape[0] / horse.shape[1]), int(side * 0.7)
    shape = np.asarray(Image.fromarray(horse).resize((width, height), Image.Resampling.NEAREST))
    fill = np.asarray(Image.fromarray(data.chelsea()).resize((width, height), Image.Resampling.LANCZOS))
    canvas = np.asarray(Image.fromarray(background).convert("RGB").resize((side, side)), np.uint8).copy()
    mask = np.zeros((side, side), bool)
    top, left = (side - height) // 2, (side - width) // 2
    mask[top:top + height, left:left + width] = shape
    canvas[mask] = fill[shape]
    return canvas, mask


def backgrounds() -> dict[str, np.ndarray]:
    from skimage import data

    return {"brick": data.brick(), "grass": data.grass(), "gravel": data.gravel(), "coffee": data.coffee(),
            "hubble": data.hubble_deep_field()}


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(predicted, truth).sum()
    return float(np.logical_and(predicted, truth).sum() / union) if union else 1.0


# -- speed -------------------------------------------------------------------------------------

def tiny_sessions(folder: Path) -> Sessions:
    return {model_id: load_session(write_tiny_onnx(folder / model_id / f"{model_id}.onnx"), "cpu")
            for model_id in MODEL_FOR_QUALITY.values()}


def speed(models: Sessions) -> None:
    rgb, _ = composite(backgrounds()["coffee"], max(SPEED_SIZE))
    rgb = np.ascontiguousarray(rgb[: SPEED_SIZE[1], : SPEED_SIZE[0]])
    print(f"speed: {SPEED_SIZE[0]}x{SPEED_SIZE[1]} cutout, tiny model, medians of {REPEATS} alternating runs")
    for level in MODEL_FOR_QUALITY:
        compare_speed(level, rgb, models)


def compare_speed(level: str, rgb: np.ndarray, models: Sessions) -> None:
    """The step and rembg.remove on one image with one session: times, ratio, alpha agreement."""
    from rembg import remove

    image, pil = Picture(rgb=rgb.astype(np.float32) / 255.0), Image.fromarray(rgb)
    session = models[MODEL_FOR_QUALITY[level]]
    medians = median_seconds({"restora": lambda: run_step(image, level, models),
                              "rembg": lambda: remove(pil, session=session)}, REPEATS)
    ours = to_uint8(run_step(image, level, models).alpha).astype(int)
    theirs = np.asarray(remove(pil, session=session))[..., 3]
    print(f"  {level:6s} {MODEL_FOR_QUALITY[level]:18s} restora {medians['restora']:.3f} s  rembg.remove "
          f"{medians['rembg']:.3f} s  ratio restora/rembg {medians['restora'] / medians['rembg']:.2f}  "
          f"max alpha difference {int(np.max(np.abs(ours - theirs)))}/255")
    record(f"remove_bg.{level}.speedup", medians["rembg"] / medians["restora"], "x", "rembg.remove")
    record(f"remove_bg.{level}.alpha_max_diff", int(np.max(np.abs(ours - theirs))), "/255", "rembg.remove")


# -- quality -----------------------------------------------------------------------------------

def installed_sessions(models_dir: Path) -> tuple[Sessions, list[str]]:
    """Real sessions from the model store, and why each missing one is missing."""
    from server.bundles.catalog import BundleCatalog

    catalog = BundleCatalog.open(models_dir)
    manifest = catalog.get(BUNDLE)
    loaded: Sessions = {}
    missing: list[str] = []
    for model_id in MODEL_FOR_QUALITY.values():
        path = catalog.store.model_file(manifest, model_id)
        if path is None:
            missing.append(f"{model_id} not installed in {models_dir}")
            continue
        try:
            loaded[model_id] = load_session(path, "cpu")
        except ModelUnavailable as exc:
            missing.append(f"{model_id}: {exc.message}")
    return loaded, missing


def quality(models_dir: Path) -> None:
    models, missing = installed_sessions(models_dir)
    for reason in missing:
        print(f"IoU skipped: {reason}")
    if not models:
        print(f"IoU skipped: no real {BUNDLE} model installed (restora bundles install {BUNDLE}); "
              "the tiny test model would measure nothing")
        return
    scenes = {name: composite(background, COMPOSITE_SIDE) for name, background in backgrounds().items()}
    for level, model_id in MODEL_FOR_QUALITY.items():
        if model_id in models:
            scores = {name: mask_iou(level, rgb, truth, models) for name, (rgb, truth) in scenes.items()}
            listed = "  ".join(f"{name} {score:.3f}" for name, score in scores.items())
            print(f"IoU {level:6s} {model_id:18s} mean {statistics.mean(scores.values()):.3f}  ({listed})")


def mask_iou(level: str, rgb: np.ndarray, truth: np.ndarray, models: Sessions) -> float:
    alpha = run_step(Picture(rgb=rgb.astype(np.float32) / 255.0), level, models).alpha
    return iou(alpha >= 0.5, truth)


def default_models_dir() -> Path:
    from server.settings import default_data_dir

    return default_data_dir() / "models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=None, help="model store (default: the data dir's)")
    args = parser.parse_args()
    print(f"import rembg: {warm_up_rembg():.1f} s (numba kernels cached after the first import in a venv)")
    with tempfile.TemporaryDirectory() as scratch:
        speed(tiny_sessions(Path(scratch)))
    quality(args.models_dir or default_models_dir())


if __name__ == "__main__":
    main()
