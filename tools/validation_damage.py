"""A second damage generator, written apart from tools/synth_damage.py, for validation only.

Training draws its damage with tools/synth_damage.py; a detector chosen on more crops from that
same generator is chosen on damage it has already learnt the look of, and on the held-out bench
such choices did not hold (docs/NOTES.md, "Damage detection"). This generator draws the same
kinds of damage by other means, so a candidate's figures here say more about damage it has
never seen. None of the shipped detectors was trained on it (train_damage_detector.py's
--second-generator, an experiment, would make it training data for that run), and it does not
copy the held-out bench's generator (bench/heldout_damage.py), which stays the final judge.

How it differs from synth_damage:
  - curves are rendered from a distance field (the distance of every pixel, at 4x, to densely
    sampled curve points), not drawn as line segments, with a flat core and a linear edge;
  - scratches steer by a random walk of their curvature, cracks branch recursively, film
    scratches follow a sum of two sines, folds are a bright ridge with a shadow on one side;
  - dust mixes round specks, irregular blobs (thresholded smooth noise) and short fibres;
  - photos are rescaled before cropping; tones are gradient maps (sepia, cyanotype, selenium)
    or faded colour; grain grows with brightness, chroma noise is drawn at quarter resolution,
    JPEG is Pillow's (4:2:0).
The label is the same as everywhere: the pixels the damage moved by more than VISIBLE.
"""
from __future__ import annotations

import io
from typing import Callable

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from tools.synth_damage import VISIBLE, Sample

SCALE = 4  # distance fields are computed at 4x and area-averaged down
TONES = {  # (shadow, highlight) of the gradient maps, RGB 0..1
    "sepia": ((0.16, 0.09, 0.04), (0.98, 0.92, 0.78)),
    "cyanotype": ((0.03, 0.12, 0.30), (0.90, 0.95, 0.98)),
    "selenium": ((0.12, 0.08, 0.12), (0.96, 0.95, 0.93)),
}
Drawer = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]  # -> (coverage, target RGB)


# ---- curves as distance fields --------------------------------------------------------------

def render_curves(curves: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int) -> np.ndarray:
    """Coverage 0..1 (size x size) of curves given as (points Nx2 in (x, y) output px, half
    widths N, opacities N); where curves meet, the nearest one's width and opacity hold."""
    side = size * SCALE
    seeds = np.zeros((side, side), bool)
    half = np.zeros((side, side), np.float32)
    alpha = np.zeros((side, side), np.float32)
    for points, half_widths, opacities in curves:
        # Rounding to the 4x grid puts each curve 1/8 px down and right of its points; harmless,
        # and kept so the figures recorded in docs/NOTES.md reproduce.
        cells = np.round(points * SCALE).astype(int)
        keep = (cells >= 0).all(axis=1) & (cells < side).all(axis=1)
        x, y = cells[keep, 0], cells[keep, 1]
        seeds[y, x] = True
        half[y, x] = half_widths[keep]
        alpha[y, x] = opacities[keep]
    if not seeds.any():
        return np.zeros((size, size), np.float32)
    distance, (iy, ix) = ndimage.distance_transform_edt(~seeds, return_indices=True)
    distance = distance.astype(np.float32) / SCALE
    edge = np.clip(half[iy, ix] + 0.5 - distance, 0.0, 1.0)  # flat core, 1 px linear edge
    return _down(edge * alpha[iy, ix], size)


def _down(field: np.ndarray, size: int) -> np.ndarray:
    """A field drawn at SCALE x, area-averaged to size x size: the anti-aliasing."""
    return cv2.resize(field, (size, size), interpolation=cv2.INTER_AREA)


def _smooth_series(rng: np.random.Generator, n: int, low: float, high: float, wobble: int) -> np.ndarray:
    """n values in [low, high] that drift slowly (smoothed noise, about ``wobble`` samples a swing)."""
    raw = ndimage.gaussian_filter1d(rng.normal(size=n + 4 * wobble), wobble, mode="wrap")[2 * wobble:2 * wobble + n]
    raw = (raw - raw.min()) / (np.ptp(raw) + 1e-9)
    return (low + (high - low) * raw).astype(np.float32)


def _steered_path(rng: np.random.Generator, start: np.ndarray, heading: float, length: float,
                  bend: float, step: float = 0.25) -> np.ndarray:
    """Points every ``step`` px along a path whose curvature takes a random walk."""
    n = max(2, int(length / step))
    curvature = np.cumsum(rng.normal(0, bend, n)) * step
    curvature -= curvature.mean()
    return _walk(start, heading + np.cumsum(curvature) * step, step)


def _jagged_path(rng: np.random.Generator, start: np.ndarray, heading: float, length: float,
                 step: float = 0.25) -> np.ndarray:
    """A crack's course: a general direction that drifts slowly, with kinks every few pixels."""
    n = max(2, int(length / step))
    drift = ndimage.gaussian_filter1d(rng.normal(size=n), n / 4, mode="nearest") * np.sqrt(n) * 0.15
    kinks = ndimage.gaussian_filter1d(rng.normal(size=n), 6, mode="nearest") * 2.5
    return _walk(start, heading + drift + kinks, step)


def _walk(start: np.ndarray, angles: np.ndarray, step: float) -> np.ndarray:
    """The points reached from ``start`` by steps of ``step`` px in the directions ``angles``."""
    return start + np.cumsum(np.stack([np.cos(angles), np.sin(angles)], axis=1) * step, axis=0)


def _with_gaps(rng: np.random.Generator, opacity: np.ndarray, chance: float) -> np.ndarray:
    """Break a stroke into pieces: a smooth on/off pattern zeroes stretches of it."""
    if rng.random() > chance:
        return opacity
    gate = _smooth_series(rng, len(opacity), 0, 1, max(4, len(opacity) // 12)) > rng.uniform(0.15, 0.4)
    return opacity * gate


# ---- damage kinds: each returns (coverage, target colour) -----------------------------------

def _polarity(rng: np.random.Generator, bright_share: float) -> np.ndarray:
    if rng.random() < bright_share:
        return np.array([rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0), rng.uniform(0.8, 1.0)], np.float32)
    return np.full(3, rng.uniform(0.0, 0.18), np.float32)


def scratches(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """1-4 thin scratches, 15-90% of the frame long, fading and breaking along their length. The
    curvature's random walk is integrated twice, so a long one can curl (about one in six turns
    by more than half a circle)."""
    curves = []
    for _ in range(int(rng.integers(1, 5))):
        length = rng.uniform(0.15, 0.9) * size
        path = _steered_path(rng, rng.uniform(0, size, 2), rng.uniform(0, 2 * np.pi), length, rng.uniform(0.001, 0.008))
        n = len(path)
        opacity = _with_gaps(rng, _smooth_series(rng, n, rng.uniform(0.2, 0.5), rng.uniform(0.6, 1.0), n // 6 + 1), 0.4)
        curves.append((path, _smooth_series(rng, n, 0.3, rng.uniform(0.6, 1.4), n // 4 + 1), opacity))
    return render_curves(curves, size), _polarity(rng, 0.6)


def _branch(rng: np.random.Generator, start: np.ndarray, heading: float, length: float, half_width: float,
            depth: int, curves: list) -> None:
    path = _jagged_path(rng, start, heading, length)
    n = len(path)
    curves.append((path, np.linspace(half_width, half_width * 0.5, n, dtype=np.float32),
                   _smooth_series(rng, n, 0.45, 0.95, n // 5 + 1)))
    if depth == 0:
        return
    for _ in range(int(rng.integers(1, 4))):
        at = int(rng.integers(n // 5, n))
        turn = rng.choice([-1, 1]) * rng.uniform(0.35, 1.2)
        _branch(rng, path[at], heading + turn, length * rng.uniform(0.3, 0.6), half_width * 0.75, depth - 1, curves)


def cracks(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """1-2 jagged hairlines branching 1-3 levels deep, thinning at each level, mostly dark."""
    curves: list = []
    for _ in range(int(rng.integers(1, 3))):
        _branch(rng, rng.uniform(0.1, 0.9, 2) * size, rng.uniform(0, 2 * np.pi), rng.uniform(0.25, 0.6) * size,
                rng.uniform(0.35, 0.9), int(rng.integers(1, 4)), curves)
    return render_curves(curves, size), _polarity(rng, 0.2)


def dust(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Round and oval specks, often irregular blobs, and up to three short fibres."""
    side = size * SCALE
    coverage = np.zeros((side, side), np.float32)
    for _ in range(int(rng.integers(5, 60))):  # round and oval specks, 0.7-4 px radius
        centre = tuple(int(v) for v in rng.uniform(0, side, 2))
        axes = tuple(max(1, int(rng.uniform(0.7, 4.0) * SCALE * f)) for f in (1.0, rng.uniform(0.5, 1.0)))
        cv2.ellipse(coverage, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.4, 1.0)), -1)
    if rng.random() < 0.6:  # irregular blobs: smooth noise above a high level
        field = ndimage.gaussian_filter(rng.normal(size=(size, size)), rng.uniform(1.0, 2.0))
        blobs = (field > np.quantile(field, 1 - rng.uniform(0.001, 0.004))).astype(np.float32)
        coverage = np.maximum(coverage, cv2.resize(blobs, (side, side), interpolation=cv2.INTER_LINEAR))
    down = _down(coverage, size)
    fibres = []  # short hairs and lint
    for _ in range(int(rng.integers(0, 4))):
        path = _steered_path(rng, rng.uniform(0, size, 2), rng.uniform(0, 2 * np.pi), rng.uniform(8, 30), 0.05)
        opacity = np.full(len(path), rng.uniform(0.5, 0.9), np.float32)
        fibres.append((path, np.full(len(path), 0.45, np.float32), opacity))
    return np.maximum(down, render_curves(fibres, size)), _polarity(rng, 0.5)


def _field(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(size * SCALE, dtype=np.float32) + 0.5) / SCALE
    return np.meshgrid(coords, coords)


def _band(signed: np.ndarray, half_width: float) -> np.ndarray:
    return np.clip(half_width + 0.5 - np.abs(signed), 0.0, 1.0)


def film(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """1-3 scratches running the whole height, wandering as a sum of two sines, mostly bright."""
    x, y = _field(size)
    coverage = np.zeros_like(x)
    for _ in range(int(rng.integers(1, 4))):
        centre = rng.uniform(0.05, 0.95) * size
        waves = [(rng.uniform(0.5, 5.0), rng.uniform(size * 0.3, size * 2.5), rng.uniform(0, 2 * np.pi))
                 for _ in range(2)]
        path = centre + sum(a * np.sin(2 * np.pi * y / period + phase) for a, period, phase in waves)
        strength = np.interp(y, np.linspace(0, size, 9), rng.uniform(0.3, 1.0, 9))
        coverage = np.maximum(coverage, _band(x - path, rng.uniform(0.3, 1.0)) * strength)
    return _down(coverage, size), _polarity(rng, 0.75)


def folds(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A crease: a bright ridge and, on one side, a shadow, returned as one signed coverage:
    positive toward the bright target (the ridge), negative for the shadow, which _apply darkens.
    The two bands share half a pixel, where they partly cancel."""
    x, y = _field(size)
    angle = rng.uniform(0, np.pi)
    normal = np.array([np.cos(angle), np.sin(angle)], np.float32)
    along = x * -normal[1] + y * normal[0]
    offset = (x - size / 2) * normal[0] + (y - size / 2) * normal[1] - rng.uniform(-0.35, 0.35) * size
    signed = offset - rng.uniform(0, 3) * np.sin(2 * np.pi * along / rng.uniform(size, 4 * size))
    half = rng.uniform(0.8, 2.2)
    ridge = _band(signed, half) * rng.uniform(0.35, 0.8)
    shadow_side = rng.choice([-1.0, 1.0])
    shadow = _band(signed - shadow_side * (half + 1.5), 1.0) * rng.uniform(0.0, 0.45)
    return _down(ridge - shadow, size), _polarity(rng, 1.0)


KINDS: dict[str, Drawer] = {"scratch": scratches, "crack": cracks, "dust": dust, "film": film, "fold": folds}


def _apply(image: np.ndarray, coverage: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Blend toward ``target`` where coverage > 0; negative coverage (a fold's shadow) darkens, by
    at most 60% (a crease's shadow on a print, not a black line)."""
    toward = np.clip(coverage, 0, 1)[..., None]
    away = np.clip(-coverage, 0, 1)[..., None]
    return image * (1 - toward) + target * toward - image * away * 0.6


# ---- photos, tones and scan degradation -----------------------------------------------------

# Photos no detector was trained on, for validation only: PyWavelets' aerial view (fields, paths,
# a railway) and ascent (a stair's railings), grey, 512 x 512. Its `camera` is scikit-image's
# cameraman, a training photo, so it is left out; the held-out bench's photos (scikit-learn's,
# matplotlib's) are never used here.
UNSEEN_PHOTOS = ("aero", "ascent")


def load_unseen_photos() -> dict[str, np.ndarray]:
    """PyWavelets' bundled photos as float32 RGB 0..1."""
    import pywt.data

    return {name: np.repeat((getattr(pywt.data, name)().astype(np.float32) / 255)[..., None], 3, axis=2)
            for name in UNSEEN_PHOTOS}


def _crop(rng: np.random.Generator, photo: np.ndarray, size: int) -> np.ndarray:
    short = min(photo.shape[:2])
    scale = max(size / short, rng.uniform(0.6, 1.2))
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=method)
    top = int(rng.integers(0, resized.shape[0] - size + 1))
    left = int(rng.integers(0, resized.shape[1] - size + 1))
    return np.clip(resized[top:top + size, left:left + size], 0, 1).astype(np.float32)


def _tone(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    choice = rng.choice(["colour", "faded", "grey", *TONES])
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    if choice == "colour":
        return rgb
    if choice == "faded":
        grey = luma[..., None]
        return (0.08 + 0.84 * (grey + (rgb - grey) * rng.uniform(0.2, 0.6))).astype(np.float32)
    if choice == "grey":
        return np.repeat(luma[..., None], 3, axis=2)
    shadow, highlight = (np.array(c, np.float32) for c in TONES[choice])
    return (shadow + (highlight - shadow) * luma[..., None]).astype(np.float32)


def degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A scan's faults, each drawn or not: film grain, chroma noise, a slight blur, JPEG."""
    size = image.shape[0]
    out = image.copy()
    if rng.random() < 0.7:  # grain, stronger in the highlights as in film
        sigma = rng.uniform(1.0, 6.0) / 255 * (0.5 + image.mean(axis=2, keepdims=True))
        out += rng.normal(size=image.shape[:2])[..., None].astype(np.float32) * sigma
    if rng.random() < 0.5:  # chroma noise at quarter resolution
        chroma = rng.normal(0, rng.uniform(1.0, 5.0) / 255, (size // 4, size // 4, 3)).astype(np.float32)
        chroma -= chroma.mean(axis=2, keepdims=True)
        out += cv2.resize(chroma, (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 0.8))
    out = np.clip(out, 0, 1)
    if rng.random() < 0.8:
        buffer = io.BytesIO()
        Image.fromarray((out * 255).round().astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(55, 96)))
        out = np.asarray(Image.open(buffer).convert("RGB"), np.float32) / 255
    return out.astype(np.float32)


def make_validation_sample(rng: np.random.Generator, photos: dict[str, np.ndarray], size: int) -> Sample:
    """One damaged crop of a random photo: 1-3 kinds of damage, then a scan's degradation."""
    names = sorted(photos)
    clean = _tone(rng, _crop(rng, photos[names[int(rng.integers(len(names)))]], size))
    kinds = tuple(str(k) for k in rng.choice(list(KINDS), size=int(rng.integers(1, 4))))
    image = clean
    for kind in kinds:
        coverage, target = KINDS[kind](rng, size)
        image = np.clip(_apply(image, coverage, target), 0, 1).astype(np.float32)
    mask = np.abs(image - clean).max(axis=2) > VISIBLE
    return Sample(degrade(rng, image), mask, kinds, clean)
