"""Restora's face_enhancement step vs GFPGANer.enhance: the same photo, the same weights, one process.

Run: ``.venv/bin/python bench/face_speed.py [--rounds N]``. Measures only; asserts nothing.

* Photo: scikit-image's astronaut (512x512), upscale 2 for both (GFPGANer's default, no background
  upsampler), Restora at fidelity 0 (the whole restored face, as GFPGANer pastes it).
* Weights: random (real ones cannot be downloaded here), written in the official layouts.
  GFPGANer reads the same GFPGAN checkpoint from its explicit path; facexlib's model initialisers
  are patched to hand it the detector and parser loaded by Restora: nothing downloads.
* Each pipeline has its own GFPGAN and ParseNet, loaded as it loads them (Restora's loaders store
  them channels_last and decide their precision; GFPGANer and facexlib keep them NCHW, fp32).
* Detection: a random RetinaFace answers "no face", so the shared detector runs its real forward
  and then reports the astronaut's face from fixed landmarks: both pipelines restore that face.
* Restora runs in the precision its bf16 check chooses here and in the other one (bf16 / fp32);
  the PSNR between those two outputs is the bf16 error through the whole step.

Configurations run alternately, so a noisy machine slows all alike; the fastest round is reported,
in wall seconds and in CPU seconds of this process (steadier when other jobs share the cores).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import numpy as np
import torch

from pipelines.base import Picture, StepContext
from pipelines.models import face_helpers, gfpgan
from pipelines.models.loaders import load_model
from pipelines.precision import psnr
from pipelines.steps import face_enhancement
from pipelines.torchvision_compat import ensure_torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as ``python bench/x.py``: the random-weight writers live in tests/
from tests.model_factories import save_random_gfpgan, save_random_parsenet, save_random_retinaface  # noqa: E402
from _results import record  # bench/_results.py (bench/ is on sys.path)  # noqa: E402

# The astronaut's eyes, nose tip and mouth corners in skimage's 512x512 photo (read off the image).
ASTRONAUT_LANDMARKS = np.array([[202, 101], [248, 102.5], [224.5, 125], [207, 142.5], [242, 143.5]])
ASTRONAUT_BOX = (175.0, 60.0, 275.0, 175.0)
UPSCALE = 2


class AstronautDetector:
    """RetinaFace's forward, then the astronaut's face (random weights would find none)."""

    def __init__(self, retinaface: torch.nn.Module):
        self.retinaface = retinaface
        self.precision = getattr(retinaface, "precision", None)  # its loader's decision, if any

    def detect_faces(self, image: np.ndarray, conf_threshold: float = 0.8, **options: Any) -> np.ndarray:
        self.retinaface.detect_faces(image, conf_threshold)
        scale = np.array([image.shape[1], image.shape[0]]) / 512
        row = [*(np.reshape(ASTRONAUT_BOX, (2, 2)) * scale).ravel(), 0.999, *(ASTRONAUT_LANDMARKS * scale).ravel()]
        return np.asarray([row], np.float32)


def write_checkpoints(folder: Path) -> dict[str, Path]:
    return {"gfpgan": save_random_gfpgan(folder / "GFPGANv1.4.pth"),
            "detector": save_random_retinaface(folder / "detection_Resnet50_Final.pth"),
            "parser": save_random_parsenet(folder / "parsing_parsenet.pth")}


def restora_runner(models: dict[str, Any], photo: np.ndarray, threads: int) -> Callable[[], np.ndarray]:
    context = StepContext(report=lambda fraction, stage: None, is_cancelled=lambda: False, models=models)
    picture = Picture(photo.astype(np.float32) / 255)

    def run() -> np.ndarray:
        outcome = face_enhancement.run(picture, face_enhancement.STEP.checked({"fidelity": 0.0, "upscale": UPSCALE}),
                                       context)
        return np.round(outcome.image.rgb * 255).astype(np.uint8)
    return run


def fixed_precision(runner: Callable[[], np.ndarray], restorer: Any, precision: Any) -> Callable[[], np.ndarray]:
    """The runner with GFPGAN's precision (its loader's decision) set to ``precision`` for its duration."""
    def run() -> np.ndarray:
        saved = getattr(restorer, "precision", None)
        restorer.precision = precision
        try:
            return runner()
        finally:
            restorer.precision = saved
    return run


def facexlib_parsenet(path: Path) -> torch.nn.Module:
    """ParseNet as facexlib's init_parsing_model leaves it (NCHW, fp32), from the same file: Restora's
    loader stores its weights channels_last, which would speed up GFPGANer's parsing too."""
    model = face_helpers.build_parsenet()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval().requires_grad_(False)


def facexlib_retinaface(path: Path) -> torch.nn.Module:
    """RetinaFace as facexlib's init_detection_model leaves it (NCHW, fp32), from the same file."""
    model = face_helpers.build_retinaface()
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(face_helpers.strip_module_prefix(checkpoint), strict=True)
    return model.eval().requires_grad_(False)


def gfpganer_runner(checkpoint: Path, detector: Any, parser: Any, photo: np.ndarray) -> Callable[[], np.ndarray]:
    ensure_torchvision()
    from gfpgan.utils import GFPGANer

    helper_module = "facexlib.utils.face_restoration_helper"
    with mock.patch(f"{helper_module}.init_detection_model", return_value=detector), \
            mock.patch(f"{helper_module}.init_parsing_model", return_value=parser):
        restorer = GFPGANer(model_path=str(checkpoint), upscale=UPSCALE, arch="clean", channel_multiplier=2,
                            bg_upsampler=None, device=torch.device("cpu"))
    bgr = np.ascontiguousarray(photo[..., ::-1])

    def run() -> np.ndarray:
        _, _, restored = restorer.enhance(bgr, has_aligned=False, only_center_face=False, paste_back=True)
        return np.ascontiguousarray(restored[..., ::-1])
    return run


def time_alternately(runners: dict[str, Callable[[], np.ndarray]], rounds: int) -> tuple[dict, dict]:
    """(wall s, CPU s) per run and the last output of each runner. CPU seconds of this process
    suffer less than wall seconds when other processes share the cores."""
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for name, run in runners.items():
            wall, cpu = time.perf_counter(), time.process_time()
            outputs[name] = run()
            timings[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return timings, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    from skimage import data as skimage_data

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    photo = skimage_data.astronaut()
    with tempfile.TemporaryDirectory() as scratch:
        paths = write_checkpoints(Path(scratch))
        detector = AstronautDetector(load_model("retinaface-resnet50", paths["detector"], "cpu"))  # decided
        face_parser = load_model("parsenet", paths["parser"], "cpu")  # as a worker loads it: precision decided
        restorer = gfpgan.load_gfpgan(paths["gfpgan"], "cpu")
        models = {face_enhancement.DETECTOR_ID: detector, face_enhancement.RESTORER_ID: restorer,
                  face_enhancement.PARSER_ID: face_parser}  # a ModelProvider: the step only calls .get
        agreement_db = gfpgan.bf16_agreement_db(restorer, gfpgan.calibration_face())  # a worker's check
        chosen = gfpgan.precision_for_agreement(agreement_db)
        other = gfpgan.FP32_CPU if chosen.name == "bf16" else gfpgan.BF16_CPU
        restora = restora_runner(models, photo, threads)
        runners = {f"restora-{chosen.name}": fixed_precision(restora, restorer, chosen),
                   "gfpganer-fp32": gfpganer_runner(paths["gfpgan"], AstronautDetector(facexlib_retinaface(paths["detector"])),
                                                    facexlib_parsenet(paths["parser"]), photo),
                   f"restora-{other.name}": fixed_precision(restora, restorer, other)}
        timings, outputs = time_alternately(runners, rounds)
    report(chosen, timings, outputs, threads, rounds, detector.precision)


def report(chosen: Any, timings: dict, outputs: dict, threads: int, rounds: int, detector_precision: Any) -> None:
    print(f"face_enhancement vs GFPGANer.enhance, astronaut 512x512, upscale {UPSCALE}, 1 face, random weights,"
          f" {threads} threads, {rounds} round(s)")
    print(f"Restora's GFPGAN precision: {chosen.name} (calibration face, bf16 vs fp32: "
          f"{chosen.calibration_psnr_db:.1f} dB); RetinaFace: {detector_precision}")
    best = {name: min(values) for name, values in timings.items()}  # fastest round by wall time
    for name, (wall, cpu) in best.items():
        print(f"  {name:15s} wall {wall:6.2f} s   CPU {cpu:6.2f} s   (all wall: "
              f"{', '.join(f'{value[0]:.2f}' for value in timings[name])})")
    baseline = best["gfpganer-fp32"]
    for name, (wall, cpu) in best.items():
        if name.startswith("restora"):
            print(f"  ratio GFPGANer / {name}: wall {baseline[0] / wall:.2f}x, CPU {baseline[1] / cpu:.2f}x")
            record(f"face.{name}.speedup", baseline[0] / wall, "x", "GFPGANer")
    print(f"  PSNR restora-bf16 vs restora-fp32 (whole photo, 8-bit): "
          f"{psnr(outputs['restora-bf16'] / 255, outputs['restora-fp32'] / 255):.1f} dB")
    print(f"  PSNR restora vs GFPGANer output (different noise, mask, offset): "
          f"{psnr(outputs[next(iter(outputs))] / 255, outputs['gfpganer-fp32'] / 255):.1f} dB")


if __name__ == "__main__":
    main()
