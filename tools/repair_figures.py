"""How much a repair helps and what it costs, one definition for the held-out bench
(bench/restore_quality.py) and the validation split (tools/validate_damage_detector.py).
Measures only: no photos, no damage drawn here.

Both figures compare with the undamaged, noise-free original: the PSNR gain inside the true
damage, and the PSNR change outside it with UNDAMAGED_MARGIN pixels around it left out
(negative = the repair moved the rest of the photo away from the original).
"""
from __future__ import annotations

import cv2
import numpy as np

UNDAMAGED_MARGIN = 3  # px around the true mask left out of the undamaged-area figure
IDENTICAL_DB = 99.0  # PSNR reported for identical pixels


def disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def near(mask: np.ndarray, radius: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), disk(radius)).astype(bool)


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    diff = (a - b) if where is None else (a - b)[where]
    mse = float(np.mean(np.square(diff, dtype=np.float64))) if diff.size else 0.0
    return IDENTICAL_DB if mse == 0 else min(IDENTICAL_DB, 10 * np.log10(1 / mse))


def untouched_outside(damaged: np.ndarray, original: np.ndarray, truth: np.ndarray) -> bool:
    """Whether ``damaged`` equals the original outside the damage (a crop drawn without any grain,
    noise, blur or JPEG): there any change reads as ~-70 dB, so such crops are counted apart."""
    return psnr(damaged, original, ~near(truth, UNDAMAGED_MARGIN)) == IDENTICAL_DB


def repair_change(repaired: np.ndarray, damaged: np.ndarray, original: np.ndarray,
                  truth: np.ndarray) -> tuple[float, float]:
    """(gain inside ``truth``, change outside it) in dB, for ``repaired`` against ``damaged``."""
    outside = ~near(truth, UNDAMAGED_MARGIN)

    def change(where: np.ndarray) -> float:
        return psnr(repaired, original, where) - psnr(damaged, original, where)

    return change(truth), change(outside)
