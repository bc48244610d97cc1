"""Classical fills side by side on the validation split: is the fill where the repair loses?

    .venv/bin/python tools/compare_fills.py [--generator validation_damage]

The validation tool's 48 damaged crops (tools/synth_damage.py, seeds apart from training,
structures over a quarter of them), the standard detector with the mirrored pass at the shipped
thresholds. For each fill, with the detected mask and with the true one: the gain inside the
damage and the change outside it (tools/repair_figures.py, the held-out bench's definitions), per
damage kind too. Every fill writes only the masked pixels, as restore-photo's Telea does; the
"read outside +1 px" variants also refuse to read the pixel ring just outside the mask, where a
scratch's faint fringe lies; the "remainder" variants keep what a semi-transparent damage left of
the photo. Telea r3 is the shipped fill (docs/NOTES.md has one run's figures). With ``--generator
validation_damage`` the crops are the second generator's on the same training photos.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import damage_detection as dd  # noqa: E402
from pipelines.imaging.pixels import from_unit_float  # noqa: E402
from pipelines.inpainting import fill_damage  # noqa: E402
from pipelines.models.loaders import PackagedModels  # noqa: E402
from tools.repair_figures import disk, repair_change, untouched_outside  # noqa: E402
from tools.synth_damage import load_photos  # noqa: E402
from tools.validate_damage_detector import QUIET, damaged_crops  # noqa: E402

Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (float RGB, bool holes) -> filled RGB


def shipped_fill(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """restore-photo's own fill without a bundle (Telea, its crops and radius)."""
    return fill_damage(rgb, holes, 8, QUIET)[0]


def opencv_fill(radius: int, method: int) -> Fill:
    def fill(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
        return cv2.inpaint(from_unit_float(rgb, np.uint8), holes.astype(np.uint8), radius, method) / np.float32(255)
    return fill


def normalised_convolution(sigma: float) -> Fill:
    """The Gaussian-weighted mean of the known pixels; where too few are near, sigma doubles (a
    hole still unfilled at sigma 64 keeps its pixels: none is that wide on these crops)."""
    def fill(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
        known = (~holes).astype(np.float32)
        out, todo, scale = rgb.copy(), holes.copy(), sigma
        while todo.any() and scale < 64:
            total = cv2.GaussianBlur(rgb * known[..., None], (0, 0), scale)
            weight = cv2.GaussianBlur(known, (0, 0), scale)
            ready = todo & (weight > 0.05)
            out[ready] = total[ready] / weight[ready][:, None]
            todo &= ~ready
            scale *= 2
        return out
    return fill


def _along_the_damage(holes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's direction along the mask (radians) and how line-like the mask is there (0-1),
    from the mask's structure tensor."""
    soft = cv2.GaussianBlur(holes.astype(np.float32), (0, 0), 1.0)
    gx, gy = cv2.Sobel(soft, cv2.CV_32F, 1, 0), cv2.Sobel(soft, cv2.CV_32F, 0, 1)
    jxx, jxy, jyy = (cv2.GaussianBlur(g, (0, 0), 3.0) for g in (gx * gx, gx * gy, gy * gy))
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + 1e-9)
    return 0.5 * np.arctan2(2 * jxy, jxx - jyy) + np.pi / 2, coherence


def remainder_kept(keep: float, min_coherence: float = 0.0, sigma: float = 3.0) -> Fill:
    """Telea plus ``keep`` times what a semi-transparent damage left of the photo: the damage
    P - Telea, smoothed along the line over masked pixels only, is taken as the damage's own
    slowly varying part, and what differs from it as the photo's detail (for P = (1-a) I + a c
    with ``a`` smooth along the line that leaves (1-a) of the detail). Where the mask is not
    line-like (coherence below ``min_coherence``: specks, junctions) Telea alone."""
    def fill(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
        base = shipped_fill(rgb, holes)
        damage = np.where(holes[..., None], rgb - base, 0).astype(np.float32)
        angle, coherence = _along_the_damage(holes)
        yy, xx = np.mgrid[0:holes.shape[0], 0:holes.shape[1]].astype(np.float32)
        masked = holes.astype(np.float32)
        total, weight = np.zeros_like(damage), np.zeros(holes.shape, np.float32)
        for step in range(-int(3 * sigma), int(3 * sigma) + 1):
            mx, my = xx + step * np.cos(angle), yy + step * np.sin(angle)
            w = cv2.remap(masked, mx, my, cv2.INTER_LINEAR) * np.exp(-0.5 * (step / sigma) ** 2)
            total += cv2.remap(damage, mx, my, cv2.INTER_LINEAR) * w[..., None]
            weight += w
        detail = damage - total / np.maximum(weight, 1e-6)[..., None]
        kept = np.clip(base + keep * detail, 0, 1)
        return np.where((coherence >= min_coherence)[..., None], kept, base).astype(np.float32)
    return fill


def reading_outside(fill: Fill, grow: int = 1) -> Fill:
    return lambda rgb, holes: fill(rgb, cv2.dilate(holes.astype(np.uint8), disk(grow)) > 0)


FILLS: dict[str, Fill] = {
    "telea r3 (shipped)": shipped_fill,
    "telea r3, read outside +1 px": reading_outside(shipped_fill),
    "telea r5": opencv_fill(5, cv2.INPAINT_TELEA),
    "navier-stokes r3": opencv_fill(3, cv2.INPAINT_NS),
    "normalised conv σ1.5": normalised_convolution(1.5),
    "normalised conv σ2.5": normalised_convolution(2.5),
    "normalised conv σ1.5, read outside +1 px": reading_outside(normalised_convolution(1.5)),
    "normalised conv σ2.5, read outside +1 px": reading_outside(normalised_convolution(2.5)),
    "telea + remainder kept": remainder_kept(1.0),
    "telea + remainder kept, line-like only": remainder_kept(1.0, 0.5),
    "telea + half the remainder": remainder_kept(0.5),
    "telea + half the remainder, line-like only": remainder_kept(0.5, 0.5),
}


def repaired(fill: Fill, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return rgb
    out = rgb.copy()
    out[mask] = fill(rgb, mask)[mask]
    return out


def report(name: str, label: str, crops: list, masks: list) -> None:
    gains, outside, by_kind = [], [], {}
    for sample, mask in zip(crops, masks):
        gain, undamaged = repair_change(repaired(FILLS[name], sample.image, mask), sample.image,
                                        sample.original, sample.mask)
        gains.append(gain)
        for kind in set(sample.kinds):
            by_kind.setdefault(kind, []).append(gain)
        if not untouched_outside(sample.image, sample.original, sample.mask):  # as in the validation tool
            outside.append(undamaged)
    kinds = " ".join(f"{kind} {np.mean(values):+.2f}" for kind, values in sorted(by_kind.items()))
    print(f"{name:42s} {label:8s} gain min {min(gains):+.2f} mean {np.mean(gains):+.2f} dB | undamaged "
          f"mean {np.mean(outside):+.2f} worst {min(outside):+.2f} dB | {kinds}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", choices=("synth_damage", "validation_damage"), default="synth_damage",
                        help="whose damage, on training's photos (validation_damage draws no structures)")
    generator = parser.parse_args().generator
    dd.MIRRORED_PASS = True
    model = PackagedModels("cpu", 2).get(dd.DETECTOR_ID)
    crops = [s for s in damaged_crops(generator, load_photos(), 48, 0.25) if s.mask.any()]
    detected = [dd.learned_mask(s.image, QUIET, model=model) for s in crops]
    for name in FILLS:
        report(name, "detected", crops, detected)
        report(name, "true", crops, [s.mask for s in crops])


if __name__ == "__main__":
    main()
