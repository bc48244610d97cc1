"""Synthetic old-photo damage for training the learned damage detector.

Every sample is a crop of a scikit-image photo (the only photos training may use), optionally
toned (grey, sepia, cyanotype), with damage drawn on it and then degraded like a scan (grain,
chroma noise, blur, JPEG). The label is the set of pixels the damage visibly changed.

Damage kinds, each drawn anti-aliased at 4x and area-averaged down:
  scratch  thin (0.6-3 px) bright or dark lines that curve and wander, fading along their length
  crack    branching hairlines, jagged, mostly dark
  dust     specks and blobs of 1-4 px radius, bright or dark, in clusters or scattered
  film     wavy scratches running the whole height of the frame
  fold     long, near-straight creases, 2-5 px, a bright core and sometimes a dark shoulder
  straight straight scratches of any angle

This generator is for training and the training validation split only; the held-out benchmark
(bench/restore_quality.py) has its own, written apart from this one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from tools.synth_scenes import draw_scene
from tools.synth_structures import STRUCTURES

SUPER = 4  # supersampling factor for anti-aliased drawing
VISIBLE = 6.0 / 255.0  # a pixel is damaged when the damage moved it by more than this
# scikit-image's bundled photos (no download), with hard negatives (text, page, brick, gravel,
# grass, clock, cell, coins, logo) weighted up so the detector learns what a scratch is not.
PHOTOS = {
    "astronaut": 1.0, "camera": 1.0, "chelsea": 1.0, "coffee": 1.0, "rocket": 1.0,
    "immunohistochemistry": 0.6, "hubble_deep_field": 0.6, "retina": 0.6, "moon": 0.6,
    "stereo_motorcycle": 1.0, "brick": 1.5, "gravel": 1.5, "grass": 1.5, "text": 1.5,
    "page": 1.5, "clock": 1.2, "cell": 1.0, "coins": 1.0, "logo": 0.5,
}


def load_photos() -> dict[str, np.ndarray]:
    """The training photos as float32 RGB 0..1."""
    from skimage import data

    photos = {}
    for name in PHOTOS:
        pixels = getattr(data, name)()
        if isinstance(pixels, tuple):
            pixels = pixels[0]
        pixels = pixels.astype(np.float32) / 255.0
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        if pixels.shape[2] == 4:  # logo: flatten onto white
            pixels = pixels[..., :3] * pixels[..., 3:] + (1 - pixels[..., 3:])
        photos[name] = np.ascontiguousarray(pixels[..., :3])
    return photos


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # float32 HxWx3, degraded, 0..1
    mask: np.ndarray  # bool HxW, damaged pixels
    kinds: tuple[str, ...]
    original: np.ndarray  # float32 HxWx3, the same crop undamaged and noise-free (what a repair aims at)


# ---- drawing helpers (coordinates in output pixels; drawn at SUPER x) -------------------------

def _canvas(size: int) -> np.ndarray:
    return np.zeros((size * SUPER, size * SUPER), np.float32)


def _down(canvas: np.ndarray) -> np.ndarray:
    h, w = canvas.shape
    return cv2.resize(canvas, (w // SUPER, h // SUPER), interpolation=cv2.INTER_AREA)


def _polyline(canvas: np.ndarray, points: np.ndarray, width: float, opacity: np.ndarray | float) -> None:
    """Draw a polyline of `width` output pixels; opacity per segment (array) or constant."""
    pts = np.round(points * SUPER).astype(np.int32)
    thickness = max(1, int(round(width * SUPER)))
    ops = np.broadcast_to(np.asarray(opacity, np.float32), (len(pts),))
    for i in range(len(pts) - 1):
        cv2.line(canvas, tuple(map(int, pts[i])), tuple(map(int, pts[i + 1])), float(ops[i]), thickness, cv2.LINE_AA)


def _wander(rng: np.random.Generator, start: np.ndarray, angle: float, length: float,
            curviness: float, step: float = 2.0) -> np.ndarray:
    """A path that curves and wanders: the heading drifts by a smoothed random walk."""
    count = max(2, int(length / step))
    turn = np.cumsum(rng.normal(0, curviness, count))
    turn = cv2.GaussianBlur(turn.reshape(1, -1).astype(np.float32), (0, 0), sigmaX=4).ravel()
    headings = angle + turn + rng.normal(0, curviness * 0.3) * np.linspace(-1, 1, count)
    steps = np.stack([np.cos(headings), np.sin(headings)], axis=1) * step
    return start + np.vstack([[0, 0], np.cumsum(steps, axis=0)])


def _fading(rng: np.random.Generator, count: int, base: float) -> np.ndarray:
    """Opacity along a line: a base level with slow variation and occasional breaks."""
    slow = cv2.GaussianBlur(rng.normal(0, 1, (1, count)).astype(np.float32), (0, 0), sigmaX=8).ravel()
    values = base * np.clip(1 + 0.8 * slow / (np.abs(slow).max() + 1e-6), 0.15, 1.2)
    if rng.random() < 0.4:
        gaps = rng.random(count) < 0.03
        values[cv2.dilate(gaps.astype(np.uint8).reshape(1, -1), np.ones((1, 5), np.uint8)).ravel() > 0] = 0
    return np.clip(values, 0, 1)


def _random_point(rng: np.random.Generator, size: int, margin: float = 0.0) -> np.ndarray:
    return rng.uniform(-margin * size, (1 + margin) * size, 2)


def draw_scratch(rng, size):
    canvas = _canvas(size)
    length = rng.uniform(0.2, 1.4) * size
    points = _wander(rng, _random_point(rng, size, 0.1), rng.uniform(0, 2 * np.pi), length, rng.uniform(0.005, 0.06))
    _polyline(canvas, points, rng.uniform(0.6, 3.0), _fading(rng, len(points), rng.uniform(0.5, 1.0)))
    return _down(canvas)


def draw_straight(rng, size):
    canvas = _canvas(size)
    start, angle = _random_point(rng, size), rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    points = np.stack([start - direction * size * 1.5, start + direction * size * 1.5])
    points = np.vstack([np.linspace(points[0], points[1], 60)])
    _polyline(canvas, points, rng.uniform(0.7, 3.0), _fading(rng, len(points), rng.uniform(0.5, 1.0)))
    return _down(canvas)


def draw_crack(rng, size):
    canvas = _canvas(size)
    width = rng.uniform(0.5, 1.6)
    stack = [(_random_point(rng, size), rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.9) * size, 0)]
    while stack:
        start, angle, length, depth = stack.pop()
        points = _wander(rng, start, angle, length, rng.uniform(0.08, 0.25), step=1.5)
        _polyline(canvas, points, width * (0.8 ** depth), rng.uniform(0.6, 1.0))
        if depth < 3:
            for _ in range(rng.poisson(1.6)):
                i = rng.integers(len(points) // 5, len(points))
                stack.append((points[i], angle + rng.choice([-1, 1]) * rng.uniform(0.4, 1.3),
                              length * rng.uniform(0.25, 0.6), depth + 1))
    return _down(canvas)


def draw_dust(rng, size):
    canvas = _canvas(size)
    count = int(rng.integers(5, 120))
    clustered = rng.random() < 0.4
    centre = _random_point(rng, size)
    for _ in range(count):
        at = centre + rng.normal(0, size * 0.15, 2) if clustered else _random_point(rng, size)
        radius = rng.uniform(0.6, 4.0) * SUPER
        axes = (max(1, int(radius)), max(1, int(radius * rng.uniform(0.5, 1.0))))
        cv2.ellipse(canvas, tuple(int(v) for v in at * SUPER), axes, rng.uniform(0, 180), 0, 360,
                    float(rng.uniform(0.5, 1.0)), -1, cv2.LINE_AA)
    return _down(canvas)


def draw_film(rng, size):
    canvas = _canvas(size)
    for _ in range(int(rng.integers(1, 4))):
        ys = np.linspace(-2, size + 2, 80)
        x0 = rng.uniform(0, size)
        waves = sum(rng.uniform(0.5, 6) * np.sin(ys / rng.uniform(20, 300) * 2 * np.pi + rng.uniform(0, 6))
                    for _ in range(2))
        points = np.stack([x0 + waves + rng.normal(0, 0.15, len(ys)).cumsum() * 0.3, ys], axis=1)
        _polyline(canvas, points, rng.uniform(0.7, 2.5), _fading(rng, len(points), rng.uniform(0.4, 1.0)))
    return _down(canvas)


def draw_fold(rng, size):
    canvas = _canvas(size)
    angle = rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.15)
    start = _random_point(rng, size)
    direction = np.array([np.cos(angle), np.sin(angle)])
    points = np.linspace(start - direction * size * 1.5, start + direction * size * 1.5, 120)
    points += rng.normal(0, 0.3, points.shape).cumsum(axis=0) * 0.05
    _polyline(canvas, points, rng.uniform(2.0, 5.0), _fading(rng, len(points), rng.uniform(0.5, 1.0)))
    return _down(canvas)


DRAWERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "scratch": draw_scratch, "crack": draw_crack, "dust": draw_dust,
    "film": draw_film, "fold": draw_fold, "straight": draw_straight,
}
KIND_WEIGHTS = {"scratch": 3.0, "crack": 2.0, "dust": 2.0, "film": 1.0, "fold": 1.0, "straight": 1.0}


# ---- photo preparation and degradation ---------------------------------------------------------

def _tone(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    roll = rng.random()
    if roll < 0.5:
        return rgb
    grey = rgb @ np.float32([0.299, 0.587, 0.114])
    if roll < 0.75:
        return np.repeat(grey[..., None], 3, axis=2)
    shadow = np.float32(rng.choice([(0.18, 0.10, 0.04), (0.02, 0.18, 0.42), (0.20, 0.10, 0.16)]))
    highlight = np.float32(rng.choice([(1.0, 0.94, 0.82), (0.94, 0.97, 1.0), (0.98, 0.95, 0.93)]))
    return shadow * (1 - grey[..., None]) + highlight * grey[..., None]


def _crop(rng: np.random.Generator, photo: np.ndarray, size: int) -> np.ndarray:
    scale = float(np.exp(rng.uniform(np.log(0.5), np.log(1.8))))
    scale = max(scale, size / min(photo.shape[:2]) * 1.01)
    resized = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    y = rng.integers(0, resized.shape[0] - size + 1)
    x = rng.integers(0, resized.shape[1] - size + 1)
    crop = resized[y:y + size, x:x + size]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.3:
        crop = np.rot90(crop)
    return np.ascontiguousarray(np.clip(crop, 0, 1))


def _apply(rng: np.random.Generator, image: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Blend one damage layer: towards bright, dark, or a tinted level, by its coverage."""
    bright = rng.random() < 0.55
    level = np.float32(rng.uniform(0.82, 1.0) if bright else rng.uniform(0.0, 0.2))
    tint = np.float32(1.0) + (rng.normal(0, 0.04, 3).astype(np.float32) if rng.random() < 0.3 else 0)
    alpha = coverage[..., None]
    if rng.random() < 0.25:  # a semi-transparent scuff: shifts the photo rather than replacing it
        shift = (0.35 if bright else -0.35) * rng.uniform(0.5, 1.0)
        return np.clip(image + alpha * shift, 0, 1)
    return image * (1 - alpha) + np.clip(level * tint, 0, 1) * alpha


def degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 0.8))
    grain = rng.choice([0.0, 0.0, rng.uniform(1, 6), rng.uniform(4, 15)]) / 255.0
    if grain:
        noise = rng.normal(0, 1, image.shape[:2]).astype(np.float32)
        if rng.random() < 0.5:  # film grain is a little correlated
            noise = cv2.GaussianBlur(noise, (0, 0), 0.7) * 1.8
        image = image + grain * noise[..., None]
    chroma = rng.uniform(0, 6) / 255.0 if rng.random() < 0.4 else 0.0
    if chroma:
        image = image + rng.normal(0, chroma, image.shape).astype(np.float32)
    image = np.clip(image, 0, 1)
    if rng.random() < 0.7:
        image = _jpeg(image, int(rng.integers(45, 96)))
    return image.astype(np.float32)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    bgr = cv2.cvtColor((image * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def _with_structure(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A clean thin-line structure (letters, dial, lattice, hatching, cloth) over part of the
    crop: a hard negative that carries no damage label."""
    name = rng.choice(list(STRUCTURES))
    return _over_part(rng, image, STRUCTURES[name](rng, image.shape[0]))


def _over_part(rng: np.random.Generator, image: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """``layer`` over the whole crop or over a rectangle of it."""
    if rng.random() < 0.5:
        return layer
    h, w = image.shape[:2]
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    y1, x1 = rng.integers(y0 + h // 4, h + 1), rng.integers(x0 + w // 4, w + 1)
    image = image.copy()
    image[y0:y1, x0:x1] = layer[y0:y1, x0:x1]
    return image


def make_sample(rng: np.random.Generator, photos: dict[str, np.ndarray], size: int,
                clean_fraction: float = 0.25, structure_fraction: float = 0.0, scene_fraction: float = 0.0,
                scene_kinds: tuple[str, ...] | None = None) -> Sample:
    """One crop; ``structure_fraction`` of them get a clean thin-line structure (the conservative
    detector's training) and ``scene_fraction`` thin lines drawn into the scene by one of
    ``scene_kinds`` (tools/synth_scenes.py; default all); at 0 no random number is drawn for
    either, so the packaged runs are unchanged."""
    names = list(PHOTOS)
    weights = np.array([PHOTOS[n] for n in names]) / sum(PHOTOS.values())
    photo = photos[names[rng.choice(len(names), p=weights)]]
    image = _crop(rng, photo, size)
    if structure_fraction and rng.random() < structure_fraction:
        image = _with_structure(rng, image)
    if scene_fraction and rng.random() < scene_fraction:
        image = _over_part(rng, image, draw_scene(rng, image, scene_kinds))
    image = _tone(rng, image)
    clean = image.copy()
    kinds: tuple[str, ...] = ()
    if rng.random() >= clean_fraction:
        kind_names = list(KIND_WEIGHTS)
        p = np.array([KIND_WEIGHTS[k] for k in kind_names]) / sum(KIND_WEIGHTS.values())
        kinds = tuple(rng.choice(kind_names, size=int(rng.integers(1, 4)), p=p))
        for kind in kinds:
            image = _apply(rng, image, DRAWERS[kind](rng, size))
    mask = np.abs(image - clean).max(axis=2) > VISIBLE
    return Sample(degrade(rng, image), mask, kinds, clean)
