"""Where the damage is: the repair mask restore-photo fills.

A small U-Net (:mod:`pipelines.models.damage_unet`, trained in this repo by
``tools/train_damage_detector.py`` on scikit-image photos with synthetic damage) gives a damage
probability per pixel, averaged with its answer on the mirrored photo; pixels above
LOW_THRESHOLD joined to a pixel above HIGH_THRESHOLD are kept (hysteresis), so a faint stretch of
a scratch survives while isolated weak responses on texture do not. It runs on a copy whose long
side is at most DETECT_LONG_SIDE, in tiles. Regions
flagged densely (a woven cloth, a lattice) are texture, not damage, and are dropped whole
(:func:`drop_dense_regions`). The weights ship in the package (no download): the
model provider gives the packaged models (:data:`pipelines.models.loaders.PACKAGED`), loaded by
:func:`load_detector`: ``damage-unet`` (the ``standard`` detector) and ``damage-unet-conservative``
(the same weights fine-tuned with clean letters, dials, lattices, hatching and cloth as
negatives: on the held-out bench it flags a quarter as much of clean photos, and finds less
damage; docs/NOTES.md).

The model-free straight-line pass (:mod:`pipelines.scratch_detection`, the detector before this
one) is not merged in: on the held-out bench it added no recall and cost precision
(docs/NOTES.md, "Damage detection"). The bench still runs it (``scratch_mask``).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from pipelines.base import StepContext
from pipelines.scratch_detection import DETECT_LONG_SIDE, whole_pixel_boxes
from pipelines.tiling import run_tiled

STAGE = "Finding damage..."
DETECTOR_ID = "damage-unet"
DETECTORS = {"standard": DETECTOR_ID, "conservative": "damage-unet-conservative"}  # choice -> model id
# Hysteresis thresholds on the detector's probability, chosen on the training run's validation
# split (tools/validate_damage_detector.py), never on the held-out benchmark: leaving clean photos
# alone wins (the figures: docs/NOTES.md, "Damage detection").
HIGH_THRESHOLD = 0.9
LOW_THRESHOLD = 0.7
# Damage is sparse: a connected region whose pixels sit, on average, where more than
# DENSE_SHARE of a DENSE_WINDOW-pixel square is flagged is a texture the detector took for
# damage (woven cloth, lattices), and is dropped. Chosen with the thresholds on the validation
# split, with woven-cloth hard negatives (docs/NOTES.md, "Damage detection").
DENSE_WINDOW = 129
DENSE_SHARE = 0.1
TILE, OVERLAP, MOD = 512, 64, 16  # windows include their context; sides a multiple of 2**levels
MIRRORED_PASS = True  # more precision, less clean coverage, at twice the cost (docs/NOTES.md)


def detect_damage(rgb: np.ndarray, protect_boxes: Sequence[Sequence[float]], ctx: StepContext,
                  detector: str = "standard") -> np.ndarray:
    """A bool HxW mask (True = repair here) for float RGB ``rgb`` in [0, 1] by the named
    :data:`DETECTORS` entry. Pixels inside ``protect_boxes`` ([x0, y0, x1, y1]) are never marked.
    Reports progress 0..1 on ``ctx``."""
    mask = learned_mask(rgb, ctx, detector=detector)
    for x0, y0, x1, y1 in whole_pixel_boxes(protect_boxes):
        mask[y0:y1, x0:x1] = False
    return mask


def learned_mask(rgb: np.ndarray, ctx: StepContext, model: Any = None, detector: str = "standard") -> np.ndarray:
    """The learned pass at full resolution; ``model`` defaults to the provider's ``detector``."""
    mask = shipped_mask(damage_probability(rgb, ctx, model, detector))
    if mask.shape != rgb.shape[:2]:
        mask = cv2.resize(mask.view(np.uint8), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return mask


def shipped_mask(probabilities: np.ndarray) -> np.ndarray:
    """What restore-photo repairs from the learned pass's probabilities: the shipped hysteresis
    pair, then the dense-region test."""
    return drop_dense_regions(hysteresis(probabilities, LOW_THRESHOLD, HIGH_THRESHOLD))


def damage_probability(rgb: np.ndarray, ctx: StepContext, model: Any = None, detector: str = "standard") -> np.ndarray:
    """Per-pixel damage probability (float32) on the detection copy of ``rgb``."""
    network = model if model is not None else ctx.model(DETECTORS[detector])
    small = detection_copy(rgb)
    probabilities = run_tiled(small, _window_runner(network), scale=1, tile=TILE, overlap=OVERLAP, mod=MOD,
                              on_tile=lambda done, total: ctx.progress(done / total, STAGE),
                              check_cancelled=ctx.check_cancelled, channels=1)
    return probabilities[..., 0]


def detection_copy(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` area-averaged to a long side of at most DETECT_LONG_SIDE (a thin line fades but
    stays where it was; the detector was trained on lines of 0.5-3 px at this scale)."""
    height, width = rgb.shape[:2]
    factor = -(-max(height, width) // DETECT_LONG_SIDE)
    pixels = np.ascontiguousarray(rgb[..., :3], dtype=np.float32)
    if factor == 1:
        return pixels
    size = (-(-width // factor), -(-height // factor))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def hysteresis(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Pixels above ``low`` whose 8-connected region reaches above ``high``."""
    weak = (values > low).astype(np.uint8)
    if not weak.any():
        return weak.astype(bool)
    count, labels = cv2.connectedComponents(weak, connectivity=8)
    strong_labels = np.unique(labels[values > high])
    keep = np.zeros(count, bool)
    keep[strong_labels[strong_labels > 0]] = True
    return keep[labels]


def drop_dense_regions(mask: np.ndarray, window: int = DENSE_WINDOW, share: float = DENSE_SHARE) -> np.ndarray:
    """``mask`` without the 8-connected regions whose mean local flagged share (over a ``window``
    square around each of their pixels) exceeds ``share``."""
    if not mask.any():
        return mask
    density = cv2.boxFilter(mask.astype(np.float32), -1, (window, window), borderType=cv2.BORDER_REFLECT)
    count, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    density_sums = np.bincount(labels.ravel(), density.ravel(), count)
    sizes = np.bincount(labels.ravel(), minlength=count)
    keep = density_sums <= share * np.maximum(sizes, 1)
    keep[0] = False
    return keep[labels]


def _window_runner(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    precision = getattr(model, "precision", None)
    device = next(model.parameters()).device

    def run_window(window: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(window.transpose(2, 0, 1))).unsqueeze(0)
        tensor = tensor.to(device).contiguous(memory_format=torch.channels_last)
        autocast = precision.autocast(device.type) if precision else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            probability = torch.sigmoid(model(tensor).float())
            if MIRRORED_PASS:  # the mirrored view's answer, mirrored back, averaged in
                probability = (probability + torch.sigmoid(model(tensor.flip(-1)).float()).flip(-1)) / 2
        return probability[0].permute(1, 2, 0).cpu().numpy()

    return run_window


def load_detector(path: Path, device: str) -> Any:
    """The ``damage-unet`` loader: the detector, channels_last, with its precision decided once
    (fp16 on CUDA; bf16 on a CPU with bf16 units when its probabilities match fp32's)."""
    import torch

    from pipelines.models.damage_unet import load_damage_unet
    from pipelines.precision import cpu_has_bf16_units, decide_precision

    model = load_damage_unet(path, device).to(memory_format=torch.channels_last)
    model.precision = decide_precision(device, lambda: _bf16_agreement_db(model), channels_last=True,
                                       bf16_allowed=cpu_has_bf16_units, name="damage detector")
    return model


def _bf16_agreement_db(model: Any) -> float:
    """PSNR of the bf16 probabilities against fp32 on the calibration card with thin bright and
    dark lines drawn on it (on the plain card the detector answers ~0 everywhere, which any
    precision matches)."""
    from pipelines.precision import FP32_CPU, Precision, calibration_image, psnr

    card = calibration_image(128)
    cv2.line(card, (5, 20), (120, 90), (0.95, 0.95, 0.95), 1, cv2.LINE_AA)
    cv2.line(card, (30, 120), (100, 4), (0.05, 0.05, 0.05), 2, cv2.LINE_AA)
    maps = []
    for precision in (FP32_CPU, Precision("bf16", "cpu", channels_last=True)):
        model.precision = precision
        maps.append(_window_runner(model)(card))
    return psnr(maps[0], maps[1])
