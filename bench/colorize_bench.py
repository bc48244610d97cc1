"""Colorize step vs modelscope's own DDColor pipeline: colour quality, bf16 agreement, speed.

Run: ``.venv/bin/python bench/colorize_bench.py [--model-dir DIR] [--photos astronaut coffee]``.
``--model-dir`` is an installed DDColor directory (``pytorch_model.pt`` + ``configuration.json``);
without it the bench writes random ConvNeXt-T weights in the official format, and then the colour
figures mean nothing (only speed and bf16-vs-fp32 agreement do).

For each scikit-image colour photo: the grey version (its luminance) is colorized at strength 100
by the step and by modelscope's pipeline; reported are the Hasler-Suesstrunk colourfulness of the
original and of each result, and the mean (a, b) distance in Lab units from the original colours.

modelscope's ``pipeline()`` API imports ``datasets``, which this venv does not have, so
:func:`modelscope_pipeline` reproduces ``DDColorImageColorizationPipeline.preprocess`` and
``.forward`` line for line (modelscope 1.40.2) around a second instance of the same class loaded
from the same files, kept as the pipeline keeps it: fp32, default (NCHW) layout. Both run
alternately in one process, after one warm-up each, so background load hits both alike.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from pipelines.base import Picture, StepContext
from pipelines.models.ddcolor import (DDColorColorizer, build_ddcolor, encoder_name_from_config, load_ddcolor,
                                      read_config)
from pipelines.precision import Precision, psnr
from pipelines.steps.colorize import MODEL_ID, STEP, encode_srgb, relative_luminance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as ``python bench/x.py``: the random-weight writers live in tests/
from tests.model_factories import write_random_ddcolor  # noqa: E402

from _timing import median_seconds  # bench/_timing.py (bench/ is on sys.path)
from _results import record  # bench/_results.py (bench/ is on sys.path)  # noqa: E402

PIPELINE_INPUT_SIZE = 512  # DDColorImageColorizationPipeline.input_size
DEFAULT_PHOTOS = ("astronaut", "coffee", "chelsea")


def modelscope_pipeline(model: torch.nn.Module, rgb_uint8: np.ndarray) -> np.ndarray:
    """DDColorImageColorizationPipeline on an RGB uint8 image (its PIL / file path); RGB uint8 out.

    Like the pipeline, this treats the loaded RGB array as BGR; on a grey photo the order is moot.
    """
    import torch.nn.functional as F

    img = (rgb_uint8 / 255.0).astype(np.float32)  # preprocess()
    height, width = img.shape[:2]
    orig_l = cv2.cvtColor(img, cv2.COLOR_BGR2Lab)[:, :, :1]
    img = cv2.resize(img, (PIPELINE_INPUT_SIZE, PIPELINE_INPUT_SIZE))
    img_l = cv2.cvtColor(img, cv2.COLOR_BGR2Lab)[:, :, :1]
    img_gray_lab = np.concatenate((img_l, np.zeros_like(img_l), np.zeros_like(img_l)), axis=-1)
    img_gray_rgb = cv2.cvtColor(img_gray_lab, cv2.COLOR_LAB2RGB)
    tensor_gray_rgb = torch.from_numpy(img_gray_rgb.transpose((2, 0, 1))).float().unsqueeze(0)
    with torch.no_grad():  # forward()
        output_ab = model({"img": tensor_gray_rgb}).cpu()
    output_ab_resize = F.interpolate(output_ab, size=(height, width))
    output_ab_resize = output_ab_resize[0].float().numpy().transpose(1, 2, 0)
    out_lab = np.concatenate((orig_l, output_ab_resize), axis=-1)
    out_bgr = cv2.cvtColor(out_lab, cv2.COLOR_LAB2BGR)
    return (out_bgr * 255.0).round().astype(np.uint8)[:, :, ::-1]


def step_colorize(colorizer: DDColorColorizer, grey: np.ndarray, strength: float = 100.0) -> np.ndarray:
    context = StepContext(report=lambda *_: None, is_cancelled=lambda: False, models={MODEL_ID: colorizer})
    return STEP.run(Picture(rgb=grey), {"strength": strength}, context).image.rgb


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk (2003), on 0..255 RGB: the CF score DDColor's paper reports."""
    red, green, blue = (rgb.astype(np.float64) * (255.0 if rgb.dtype != np.uint8 else 1.0)).transpose(2, 0, 1)
    red_green, yellow_blue = red - green, 0.5 * (red + green) - blue
    spread = np.hypot(red_green.std(), yellow_blue.std())
    return float(spread + 0.3 * np.hypot(red_green.mean(), yellow_blue.mean()))


def ab_error(result: np.ndarray, original: np.ndarray) -> float:
    """Mean Euclidean distance in Lab (a, b) between a result and the original colour photo."""
    def ab(rgb: np.ndarray) -> np.ndarray:
        as_float = rgb.astype(np.float32) / (255.0 if rgb.dtype == np.uint8 else 1.0)
        return cv2.cvtColor(as_float, cv2.COLOR_RGB2Lab)[..., 1:]

    return float(np.linalg.norm(ab(result) - ab(original), axis=-1).mean())


def load_photo(name: str, long_side: int | None) -> np.ndarray:
    from skimage import data

    rgb = getattr(data, name)()[..., :3]
    if long_side:
        factor = long_side / max(rgb.shape[:2])
        size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA)
    return rgb


def grey_version(rgb_uint8: np.ndarray) -> np.ndarray:
    grey = encode_srgb(relative_luminance(rgb_uint8.astype(np.float32) / 255.0))
    return np.repeat(grey[..., None], 3, axis=2)


def bf16_vs_fp32_db(colorizer: DDColorColorizer, grey: np.ndarray) -> float:
    """PSNR of the step's bf16 result against its fp32 result (channels_last both), strength 100."""
    results = [step_colorize(DDColorColorizer(colorizer.model, Precision(name, "cpu", True), colorizer.encoder_name),
                             grey) for name in ("fp32", "bf16")]
    return psnr(results[1], results[0])


def bench_photo(name: str, args: argparse.Namespace, colorizer: DDColorColorizer,
                reference: torch.nn.Module) -> dict[str, object]:
    original = load_photo(name, args.long_side)
    grey = grey_version(original)
    grey_uint8 = np.round(grey * 255.0).astype(np.uint8)
    ours, theirs = step_colorize(colorizer, grey), modelscope_pipeline(reference, grey_uint8)
    seconds = median_seconds({"step": lambda: step_colorize(colorizer, grey),  # warmed up by the calls above
                              "modelscope": lambda: modelscope_pipeline(reference, grey_uint8)}, args.repeats,
                             warm_up=False)
    row: dict[str, object] = {
        "photo": f"{name} {original.shape[1]}x{original.shape[0]}",
        "CF orig": colourfulness(original), "CF step": colourfulness(ours), "CF ms": colourfulness(theirs),
        "dab step": ab_error(ours, original), "dab ms": ab_error(theirs, original),
        "s step": seconds["step"], "s ms": seconds["modelscope"], "ms/step": seconds["modelscope"] / seconds["step"],
    }
    if args.bf16_check:
        row["bf16 dB"] = bf16_vs_fp32_db(colorizer, grey)
    return row


def forward_seconds(colorizer: DDColorColorizer, reference: torch.nn.Module, repeats: int) -> dict[str, float]:
    """The model call alone at 512x512: the pipeline's fp32 NCHW, and fp32 / bf16 channels_last."""
    from pipelines.models.ddcolor import INPUT_SIDE, predict_ab

    grey = np.full((INPUT_SIDE, INPUT_SIDE, 3), 0.5, np.float32)
    runners = {"fp32 NCHW (modelscope)": lambda: predict_ab(reference, grey, Precision("fp32", "cpu", False))}
    for name in ("fp32", "bf16"):
        precision = Precision(name, "cpu", channels_last=True)
        runners[f"{name} channels_last"] = lambda precision=precision: predict_ab(colorizer.model, grey, precision)
    return median_seconds(runners, repeats)  # after a warm-up run of each


def print_table(rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    print(" | ".join(f"{column:>10}" if column != "photo" else f"{column:<22}" for column in columns))
    for row in rows:
        cells = [f"{row[c]:<22}" if c == "photo" else f"{row[c]:>10.2f}" for c in columns]
        print(" | ".join(cells))


def model_files(args: argparse.Namespace, scratch: Path) -> Path:
    if args.model_dir:
        return Path(args.model_dir) / "pytorch_model.pt"
    return write_random_ddcolor(scratch / "ddcolor", encoder_name=args.random_encoder, seed=0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", help="installed DDColor directory; random weights if absent")
    parser.add_argument("--random-encoder", default="convnext-t", help="encoder of the random weights")
    parser.add_argument("--photos", nargs="+", default=list(DEFAULT_PHOTOS), help="scikit-image photo names")
    parser.add_argument("--long-side", type=int, default=None, help="resize photos to this long side first")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, after one warm-up")
    parser.add_argument("--no-bf16-check", dest="bf16_check", action="store_false")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as scratch:
        weights = model_files(args, Path(scratch))
        colorizer = load_ddcolor(weights, "cpu")
        encoder = encoder_name_from_config(read_config(weights.parent))
        reference = build_ddcolor(weights.parent, encoder, "cpu")  # NCHW fp32, as the pipeline runs it
    weights_kind = "installed" if args.model_dir else "RANDOM (colour figures meaningless)"
    print(f"weights: {weights_kind}, encoder {colorizer.encoder_name}; threads {torch.get_num_threads()}")
    calibration_db = colorizer.precision.calibration_psnr_db
    print(f"step precision: {colorizer.precision.name} (calibration card, bf16 vs fp32: "
          f"{'not measured' if calibration_db is None else f'{calibration_db:.1f} dB'}); modelscope: fp32 NCHW")
    forward = forward_seconds(colorizer, reference, args.repeats)
    print("model forward at 512x512, median s: " + ", ".join(f"{k} {v:.2f}" for k, v in forward.items()))
    reference_s = forward["fp32 NCHW (modelscope)"]
    for name, value in forward.items():
        if name != "fp32 NCHW (modelscope)":
            record(f"colorize.forward_{name.replace(' ', '_')}.speedup", reference_s / value, "x", "modelscope")
    rows = [bench_photo(name, args, colorizer, reference) for name in args.photos]
    print("CF = colourfulness, dab = mean (a,b) error vs original [Lab units], s = median seconds, strength 100")
    print_table(rows)


if __name__ == "__main__":
    main()
