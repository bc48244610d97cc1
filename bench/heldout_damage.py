"""The held-out set of ``bench/restore_quality.py``: photos, thin-line textures and a damage
generator, written from issue 14's description alone and kept apart from the project's tests and
training (nothing here reads tools/ or tests/; no detector may be tuned on it).

Photos come from scikit-learn (china, flower) and matplotlib (grace_hopper), never scikit-image
(the training photos). Each is used at two crops or scales. Damage is drawn anti-aliased (4x
supersampled, area-reduced) onto the noise-free photo; the true mask is every pixel the damage
moved by more than TRUTH_STEP in some channel. Grain, chroma noise and 4:2:0 JPEG come after, and
every input is 8-bit, as a scan would be.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

TRUTH_STEP = 8 / 255
DAMAGE_TYPES = ("scratch", "crack", "dust", "film", "fold")
Layer = tuple[np.ndarray, np.ndarray]  # alpha HxW, colour (3,)


@dataclass(frozen=True)
class Sample:
    name: str
    category: str  # a damage type, or "clean"
    original: np.ndarray  # float32 HxWx3, undamaged and noise-free: the reference
    damaged: np.ndarray  # float32 HxWx3 on the 8-bit grid: what the detectors see
    truth: np.ndarray  # bool HxW, empty for the clean set
    notes: str
    noisy: bool = False


def photo_views() -> list[tuple[str, np.ndarray]]:
    """Six views of the three held-out photos: whole, smaller, or a centre crop enlarged."""
    from matplotlib import cbook
    from sklearn.datasets import load_sample_images

    china, flower = (image.astype(np.float32) / 255 for image in load_sample_images().images)
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as opened:
        hopper = np.asarray(opened.convert("RGB"), np.float32) / 255
    return [("china", china), ("china@0.6", _scaled(china, 0.6)),
            ("flower", flower), ("flower-crop@1.5", _scaled(_centre(flower, 320), 1.5)),
            ("hopper", hopper), ("hopper@0.7", _scaled(hopper, 0.7))]


def _scaled(rgb: np.ndarray, factor: float) -> np.ndarray:
    size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
    mode = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return np.clip(cv2.resize(rgb, size, interpolation=mode), 0, 1)


def _centre(rgb: np.ndarray, side: int) -> np.ndarray:
    top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
    return rgb[top:top + side, left:left + side]


def grey(rgb: np.ndarray) -> np.ndarray:
    return np.repeat((rgb @ np.float32([0.299, 0.587, 0.114]))[..., None], 3, axis=2)


@dataclass(frozen=True)
class Degradation:
    """What happens after the damage, in 0..255 units: film grain (shared by the channels, slightly
    soft), chroma noise (colour only, blotchy), plain noise (per channel), then 8-bit quantisation,
    through JPEG 4:2:0 when ``quality`` is set."""

    grain: float = 0
    chroma: float = 0
    noise: float = 0
    quality: int = 0

    def apply(self, rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
        out = rgb.copy()
        if self.grain:
            out += (self._field(rng, rgb.shape[:2], 0.6) * (self.grain / 255))[..., None]
        if self.chroma:
            colour = np.dstack([self._field(rng, rgb.shape[:2], 1.0) for _ in range(3)])
            out += (colour - colour.mean(axis=2, keepdims=True)) * (self.chroma / 255 * np.sqrt(1.5))
        if self.noise:
            out += rng.normal(0, self.noise / 255, rgb.shape).astype(np.float32)
        eight = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
        if self.quality:
            buffer = io.BytesIO()
            Image.fromarray(eight).save(buffer, "JPEG", quality=self.quality, subsampling="4:2:0")
            eight = np.asarray(Image.open(buffer).convert("RGB"))
        return eight.astype(np.float32) / 255

    @staticmethod
    def _field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
        field = cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), sigma)
        return field / field.std()

    def __str__(self) -> str:
        parts = [f"grain {self.grain}" if self.grain else "", f"chroma noise {self.chroma}" if self.chroma else "",
                 f"noise {self.noise}" if self.noise else "", f"JPEG q{self.quality}" if self.quality else ""]
        return ", ".join(part for part in parts if part) or "8-bit, no noise"

    @property
    def noisy(self) -> bool:
        return bool(self.grain or self.chroma or self.noise)


# Rotated over the damaged samples; every one has noise or JPEG, as scans do.
DEGRADATIONS = (Degradation(grain=4, quality=85), Degradation(chroma=5, quality=80),
                Degradation(grain=7, chroma=3, quality=90), Degradation(grain=3), Degradation(quality=75),
                Degradation(grain=5, chroma=4, quality=70))
CLEAN_NOISY = Degradation(noise=4, quality=85)  # the clean set's noisy twin
CLEAN_EXACT = Degradation()


# --- drawing: anti-aliased paths, drawn 4x larger and area-reduced -------------------------------

SUPER = 4
Stroke = tuple[np.ndarray, "np.ndarray | float", "np.ndarray | float"]  # points (N, 2) x, y; widths; strengths


def wander(rng: np.random.Generator, start: np.ndarray, heading: float, length: float, turn: float,
           smooth: float, jitter: float = 0.0, step: float = 2.0) -> np.ndarray:
    """Points of a path whose heading drifts (random turns of ``turn`` radians per step, smoothed
    over ``smooth`` steps, accumulated) and zigzags (``jitter`` radians per step, not accumulated)."""
    count = max(2, int(length / step))
    turns = rng.normal(0, turn, (count, 1)).astype(np.float32)
    if smooth > 1:
        turns = cv2.GaussianBlur(turns, (1, 0), smooth)
    headings = heading + np.cumsum(turns.ravel())
    if jitter:
        headings += rng.normal(0, jitter, count)
    steps = step * np.stack([np.cos(headings), np.sin(headings)], 1)
    return np.asarray(start, np.float64) + np.vstack([[0, 0], np.cumsum(steps, 0)[:-1]])


def strokes(shape: tuple[int, int], paths: list[Stroke]) -> np.ndarray:
    """Coverage in [0, 1] of ``paths``, each with per-point (or one) width in px and strength."""
    canvas = np.zeros((shape[0] * SUPER, shape[1] * SUPER), np.uint8)
    for points, widths, strengths in paths:
        widths = np.broadcast_to(widths, len(points))
        strengths = np.broadcast_to(strengths, len(points))
        ends = np.round(np.asarray(points) * SUPER).astype(np.int64).clip(-(1 << 20), 1 << 20)
        for i in range(len(points) - 1):
            value = int(round(255 * min(1.0, (strengths[i] + strengths[i + 1]) / 2)))
            if value:
                thickness = max(1, int(round(SUPER * (widths[i] + widths[i + 1]) / 2)))
                cv2.line(canvas, tuple(map(int, ends[i])), tuple(map(int, ends[i + 1])), value, thickness)
    return cv2.resize(canvas, shape[::-1], interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(f"{matplotlib.get_data_path()}/fonts/ttf/{name}.ttf", size)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), sigma)
    return noise / (noise.std() + 1e-9)


# --- clean thin-line textures: the hard negatives (384 x 512) ------------------------------------

TEXTURE_SHAPE = (384, 512)
WORDS = ("the", "letter", "arrived", "in", "march", "with", "a", "photograph", "of", "our", "house", "by",
         "river", "and", "your", "grandmother", "standing", "at", "gate", "summer", "1931", "we", "miss", "you")


def paper(rng: np.random.Generator, shape: tuple[int, int] = TEXTURE_SHAPE) -> np.ndarray:
    """Off-white paper with blotches and fibre grain."""
    shade = 1 + 0.025 * _smooth_noise(rng, shape, 25) + 0.012 * _smooth_noise(rng, shape, 0.8)
    return np.clip(np.float32([0.94, 0.92, 0.86]) * shade[..., None], 0, 1)


def text(rng: np.random.Generator) -> np.ndarray:
    """A typed page: a serif heading, then lines in three DejaVu faces at 10-14 px."""
    page = Image.fromarray((paper(rng) * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(page)
    draw.text((24, 14), "Dear Margaret,", font=_font("DejaVuSerif-Bold", 22), fill=(30, 28, 34))
    top = 50
    while top < TEXTURE_SHAPE[0] - 20:
        face, size = [("DejaVuSerif", 14), ("DejaVuSans", 11), ("DejaVuSansMono", 10)][rng.integers(0, 3)]
        line = " ".join(rng.choice(WORDS, 14))
        draw.text((24, top), line, font=_font(face, size), fill=(28, 26, 30))
        top += int(size * 1.45)
    return np.asarray(page, np.float32) / 255


def _rotated(rgb: np.ndarray, degrees: float, shape: tuple[int, int]) -> np.ndarray:
    centre = (rgb.shape[1] / 2, rgb.shape[0] / 2)
    rotation = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    turned = cv2.warpAffine(rgb, rotation, rgb.shape[1::-1], flags=cv2.INTER_LINEAR)
    top, left = (rgb.shape[0] - shape[0]) // 2, (rgb.shape[1] - shape[1]) // 2
    return turned[top:top + shape[0], left:left + shape[1]]


def _brick_wall(rng: np.random.Generator, size: tuple[int, int], mortar: int, mortar_colour: tuple,
                degrees: float) -> np.ndarray:
    """Running bond of ``size`` (w, h) bricks with ``mortar`` px joints, slightly rotated."""
    big = (TEXTURE_SHAPE[0] + 120, TEXTURE_SHAPE[1] + 120)
    wall = np.empty((*big, 3), np.float32)
    wall[:] = mortar_colour
    brick_w, brick_h = size
    for row, top in enumerate(range(0, big[0], brick_h + mortar)):
        shift = (row % 2) * (brick_w + mortar) // 2
        for left in range(-shift, big[1], brick_w + mortar):
            tone = np.float32([0.58, 0.27, 0.20]) * rng.uniform(0.8, 1.15) + rng.normal(0, 0.02, 3)
            wall[top:top + brick_h, max(0, left):max(0, left + brick_w)] = tone
    wall *= (1 + 0.05 * _smooth_noise(rng, big, 1.0) + 0.04 * _smooth_noise(rng, big, 12))[..., None]
    return np.clip(_rotated(wall, degrees, TEXTURE_SHAPE), 0, 1)


def brick(rng: np.random.Generator) -> np.ndarray:
    """Bricks with light, 3 px mortar joints: a bright thin-line lattice."""
    return _brick_wall(rng, (44, 18), 3, (0.74, 0.72, 0.68), 2.0)


def brick_fine(rng: np.random.Generator) -> np.ndarray:
    """Small bricks with recessed, shadowed 2 px joints: a dark lattice."""
    return _brick_wall(rng, (26, 10), 2, (0.16, 0.14, 0.13), -4.0)


def gravel(rng: np.random.Generator) -> np.ndarray:
    """Packed stones with dark gaps and a highlight on each."""
    image = np.full((*TEXTURE_SHAPE, 3), (46, 41, 36), np.uint8)
    for _ in range(2600):
        centre = (int(rng.uniform(0, TEXTURE_SHAPE[1])), int(rng.uniform(0, TEXTURE_SHAPE[0])))
        axes = (int(rng.uniform(3, 9)), int(rng.uniform(2, 7)))
        angle = float(rng.uniform(0, 180))
        tone = rng.uniform(90, 205) * np.float32([1.0, 0.95, 0.86]) + rng.normal(0, 6, 3)
        cv2.ellipse(image, centre, axes, angle, 0, 360, tuple(map(float, tone)), -1, cv2.LINE_AA)
        small = (max(1, axes[0] // 2), max(1, axes[1] // 2))
        highlight = tuple(map(float, np.minimum(tone * 1.12, 255)))
        cv2.ellipse(image, (centre[0] - 1, centre[1] - 1), small, angle, 0, 360, highlight, -1, cv2.LINE_AA)
    grain = 1 + 0.03 * _smooth_noise(rng, TEXTURE_SHAPE, 0.7)
    return np.clip(image.astype(np.float32) / 255 * grain[..., None], 0, 1)


def clock(rng: np.random.Generator) -> np.ndarray:
    """A clock face: 60 minute ticks, 12 hour ticks, numerals, two hands and a 1 px second hand."""
    s = SUPER
    wall = np.float32([0.55, 0.60, 0.62]) * (1 + 0.03 * _smooth_noise(rng, TEXTURE_SHAPE, 20))[..., None]
    face = Image.fromarray((np.clip(wall, 0, 1) * 255).astype(np.uint8))
    face = face.resize((TEXTURE_SHAPE[1] * s, TEXTURE_SHAPE[0] * s))
    draw = ImageDraw.Draw(face)
    cx, cy, r = 256 * s, 192 * s, 172 * s
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(240, 235, 220), outline=(40, 38, 36), width=3 * s)
    for tick in range(60):
        angle = 2 * np.pi * tick / 60
        inner = 0.82 if tick % 5 == 0 else 0.91
        ends = [(cx + f * r * np.sin(angle), cy - f * r * np.cos(angle)) for f in (inner, 0.96)]
        draw.line(ends, fill=(30, 30, 30), width=(3 if tick % 5 == 0 else 1) * s)
    for hour in range(1, 13):
        angle = 2 * np.pi * hour / 12
        draw.text((cx + 0.7 * r * np.sin(angle), cy - 0.7 * r * np.cos(angle)), str(hour),
                  font=_font("DejaVuSans", 22 * s), fill=(30, 30, 30), anchor="mm")
    hands = ((0.5, 7, 4.0, (25, 25, 25)), (0.8, 4, 1.1, (25, 25, 25)), (0.9, 1, 2.6, (170, 30, 25)))
    for length, width, angle, colour in hands:  # hour, minute, second: reach, px, radians, colour
        tip = (cx + length * r * np.sin(angle), cy - length * r * np.cos(angle))
        tail = (cx - 0.12 * r * np.sin(angle), cy + 0.12 * r * np.cos(angle))
        draw.line([tail, tip], fill=colour, width=width * s)
    draw.ellipse((cx - 6 * s, cy - 6 * s, cx + 6 * s, cy + 6 * s), fill=(25, 25, 25))
    return np.asarray(face.reduce(s), np.float32) / 255


def fabric(rng: np.random.Generator) -> np.ndarray:
    """Plain weave, 6 px threads (blue warp, off-white weft), slightly rotated and wavy."""
    s = 2
    y, x = np.mgrid[0:TEXTURE_SHAPE[0] * s, 0:TEXTURE_SHAPE[1] * s].astype(np.float32) / s
    turn = np.deg2rad(7.0)
    u = x * np.cos(turn) + y * np.sin(turn) + 1.5 * np.sin(y / 37)
    v = -x * np.sin(turn) + y * np.cos(turn) + 1.2 * np.sin(x / 53)
    period = 6.0
    i, j = np.floor(u / period).astype(int), np.floor(v / period).astype(int)
    across_warp, across_weft = np.sin(np.pi * (u / period % 1)), np.sin(np.pi * (v / period % 1))
    warp_tone = 1 + 0.06 * rng.normal(0, 1, 4096)[i % 4096]
    weft_tone = 1 + 0.06 * rng.normal(0, 1, 4096)[j % 4096]
    warp_on_top = (i + j) % 2 == 0
    # A thread is brightest along its middle, dark at its edges, and dips where it passes under.
    warp = warp_tone * (0.35 + 0.65 * across_warp ** 0.7) * (0.8 + 0.2 * across_weft)
    weft = weft_tone * (0.35 + 0.65 * across_weft ** 0.7) * (0.8 + 0.2 * across_warp)
    warp, weft = np.float32([0.25, 0.32, 0.55]) * warp[..., None], np.float32([0.85, 0.83, 0.78]) * weft[..., None]
    cloth = np.where(warp_on_top[..., None], warp, weft).astype(np.float32)
    return np.clip(cv2.resize(cloth, TEXTURE_SHAPE[::-1], interpolation=cv2.INTER_AREA), 0, 1)


def hair(rng: np.random.Generator) -> np.ndarray:
    """Hundreds of fine (0.5-1.1 px) strands flowing together, dark and highlighted, on brown."""
    base = np.float32([0.25, 0.17, 0.11]) * (1 + 0.15 * _smooth_noise(rng, TEXTURE_SHAPE, 30))[..., None]
    out = base
    for colour, count in (((0.10, 0.07, 0.05), 450), ((0.58, 0.43, 0.30), 250)):
        paths = []
        for _ in range(count):
            start = rng.uniform((-40, -60), (TEXTURE_SHAPE[1] + 40, TEXTURE_SHAPE[0] * 0.6))
            heading = np.pi / 2 + 0.5 * np.sin(start[0] / 90) + rng.normal(0, 0.06)
            path = wander(rng, start, heading, rng.uniform(150, 380), turn=0.02, smooth=15)
            paths.append((path, rng.uniform(0.5, 1.1), rng.uniform(0.5, 0.9)))
        alpha = strokes(TEXTURE_SHAPE, paths)[..., None]
        out = out * (1 - alpha) + np.float32(colour) * alpha
    return np.clip(out, 0, 1).astype(np.float32)


TEXTURES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "text": text, "brick": brick, "brick-fine": brick_fine, "gravel": gravel, "clock": clock,
    "fabric": fabric, "hair": hair}


# --- damage: each returns layers of (alpha, colour) to composite over the photo -----------------

def _polarity_colour(rng: np.random.Generator, bright: bool) -> np.ndarray:
    """Bright damage shows the paper or base (warm white), dark damage is dirt or emulsion loss."""
    if bright:
        return np.float32([1.0, 0.97, 0.92]) * rng.uniform(0.82, 1.0)
    return np.float32([0.10, 0.09, 0.08]) * rng.uniform(0.0, 1.6)


def _profile(rng: np.random.Generator, count: int, low: float, high: float, gaps: float = 0.0) -> np.ndarray:
    """A smooth random value per path point in [low, high], dropping to 0 in short gaps."""
    raw = cv2.GaussianBlur(rng.normal(0, 1, (count, 1)).astype(np.float32), (1, 0), max(2.0, count / 12)).ravel()
    raw = (raw - raw.min()) / (np.ptp(raw) + 1e-6)
    values = low + (high - low) * raw
    if gaps:
        values[rng.random(count) < gaps] = 0.0
        values = np.minimum(values, cv2.erode(values[:, None], np.ones((3, 1))).ravel() + 0.2)
    return values


def scratches(rng: np.random.Generator, shape: tuple[int, int]) -> list[Layer]:
    """3-7 thin (1-3 px) scratches that curve and wander, each bright or dark."""
    short = min(shape)
    layers = []
    for _ in range(rng.integers(3, 8)):
        start = rng.uniform((0.1 * shape[1], 0.1 * shape[0]), (0.9 * shape[1], 0.9 * shape[0]))
        path = wander(rng, start, rng.uniform(0, 2 * np.pi), rng.uniform(0.25, 0.8) * short, turn=0.06, smooth=12)
        widths = _profile(rng, len(path), rng.uniform(0.8, 1.5), rng.uniform(1.6, 3.0))
        alpha = strokes(shape, [(path, widths, _profile(rng, len(path), 0.45, 1.0, gaps=0.02))])
        layers.append((alpha, _polarity_colour(rng, rng.random() < 0.5)))
    return layers


def cracks(rng: np.random.Generator, shape: tuple[int, int]) -> list[Layer]:
    """1-3 branching hairline crack networks: jagged, about 1 px, mostly dark."""
    layers = []
    for _ in range(rng.integers(1, 4)):
        start = rng.uniform((0.15 * shape[1], 0.15 * shape[0]), (0.85 * shape[1], 0.85 * shape[0]))
        paths = _branches(rng, start, rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.6) * min(shape), depth=2)
        alpha = strokes(shape, [(path, _profile(rng, len(path), 0.7, 1.4), _profile(rng, len(path), 0.6, 1.0))
                                     for path in paths])
        layers.append((alpha, _polarity_colour(rng, rng.random() < 0.25)))
    return layers


def _branches(rng: np.random.Generator, start: np.ndarray, heading: float, length: float,
              depth: int) -> list[np.ndarray]:
    path = wander(rng, start, heading, length, turn=0.05, smooth=4, jitter=0.45)
    paths = [path]
    if depth and len(path) > 8:
        for _ in range(rng.integers(1, 4)):
            at = rng.integers(len(path) // 5, len(path))
            turn = rng.choice((-1, 1)) * rng.uniform(0.4, 1.1)
            paths += _branches(rng, path[at], heading + turn, length * rng.uniform(0.25, 0.5), depth - 1)
    return paths


def dust(rng: np.random.Generator, shape: tuple[int, int]) -> list[Layer]:
    """Dust specks of 1-4 px radius, irregular, most of one polarity (negative or print dust)."""
    count = int(rng.uniform(90, 200) * shape[0] * shape[1] / 250_000)
    bright_share = rng.choice((0.8, 0.2))
    layers = []
    for polarity in (True, False):
        canvas = np.zeros((shape[0] * SUPER, shape[1] * SUPER), np.uint8)
        for _ in range(int(count * (bright_share if polarity else 1 - bright_share))):
            centre = rng.uniform((0, 0), (shape[1], shape[0])) * SUPER
            radius = 1 + 3 * rng.random() ** 2
            angles = np.linspace(0, 2 * np.pi, 9, endpoint=False)
            reach = radius * SUPER * rng.uniform(0.6, 1.2, angles.size)
            outline = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * reach[:, None]
            cv2.fillPoly(canvas, [outline.round().astype(np.int32)], int(255 * rng.uniform(0.6, 1.0)))
        alpha = cv2.resize(canvas, shape[::-1], interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        layers.append((alpha, _polarity_colour(rng, polarity)))
    return layers


def film_scratches(rng: np.random.Generator, shape: tuple[int, int]) -> list[Layer]:
    """1-3 wavy film scratches running the frame's full height, fading and breaking along it."""
    height, width = shape
    rows = np.arange(-2.0, height + 2, 1.0)
    layers = []
    for _ in range(rng.integers(1, 4)):
        sway = sum(rng.uniform(1, 6) * np.sin(2 * np.pi * rows / rng.uniform(80, 600) + rng.uniform(0, 6.3))
                   for _ in range(2))
        drift = np.cumsum(rng.normal(0, 0.03, rows.size))
        path = np.stack([rng.uniform(0.1, 0.9) * width + sway + drift, rows], 1)
        widths = _profile(rng, len(path), 0.9, rng.uniform(1.3, 2.5))
        alpha = strokes(shape, [(path, widths, _profile(rng, len(path), 0.35, 1.0, gaps=0.01))])
        layers.append((alpha, _polarity_colour(rng, rng.random() < 0.6)))
    return layers


def fold_lines(rng: np.random.Generator, shape: tuple[int, int]) -> list[Layer]:
    """1-2 fold lines edge to edge: a bright, broken, 1.5-3.5 px crease with a slight bend, short
    cracks off it, and a faint shadow along one side (too faint to count as damage)."""
    height, width = shape
    layers = []
    for _ in range(rng.integers(1, 3)):
        across = rng.random() < 0.5
        span = width if across else height
        t = np.arange(-4.0, span + 4, 2.0)
        other = rng.uniform(0.2, 0.8) * (height if across else width)
        offset = other + rng.uniform(-0.08, 0.08) * t + rng.uniform(-0.0002, 0.0002) * (t - span / 2) ** 2
        offset += np.cumsum(rng.normal(0, 0.15, t.size))
        path = np.stack([t, offset], 1) if across else np.stack([offset, t], 1)
        crease = [(path, _profile(rng, len(path), 1.5, 3.5), _profile(rng, len(path), 0.5, 1.0, gaps=0.03))]
        for _ in range(rng.integers(3, 9)):
            at = path[rng.integers(0, len(path))]
            crack = wander(rng, at, rng.uniform(0, 2 * np.pi), rng.uniform(5, 25), turn=0.05, smooth=3, jitter=0.4)
            crease.append((crack, 0.9, 0.8))
        layers.append((strokes(shape, crease), _polarity_colour(rng, True)))
        shadow = cv2.GaussianBlur(strokes(shape, [(path + (3.0, 3.0), 6.0, 1.0)]), (0, 0), 2.0)
        layers.append((shadow * 0.025, np.zeros(3, np.float32)))  # at most 6/255: below TRUTH_STEP
    return layers


DAMAGE: dict[str, Callable[[np.random.Generator, tuple[int, int]], list[Layer]]] = {
    "scratch": scratches, "crack": cracks, "dust": dust, "film": film_scratches, "fold": fold_lines}


def damage(rng: np.random.Generator, rgb: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``rgb`` with damage of ``kind`` composited over it, and the true mask."""
    out = rgb.copy()
    for alpha, colour in DAMAGE[kind](rng, rgb.shape[:2]):
        a = np.clip(alpha, 0, 1)[..., None]
        out = out * (1 - a) + colour * a
    truth = np.abs(out - rgb).max(axis=2) > TRUTH_STEP
    return out.astype(np.float32), truth


# --- the two sets -------------------------------------------------------------------------------

def damaged_set(seed: int) -> list[Sample]:
    """Every damage type on every photo view; grey and colour and the noise mixes alternate."""
    rng = np.random.default_rng(seed)
    views = photo_views()
    samples = []
    for kind_index, kind in enumerate(DAMAGE_TYPES):
        for view_index, (name, photo) in enumerate(views):
            grey_version = (kind_index + view_index) % 2 == 1
            original = grey(photo) if grey_version else photo
            broken, truth = damage(rng, original, kind)
            after = DEGRADATIONS[(kind_index + view_index) % len(DEGRADATIONS)]
            samples.append(Sample(f"{kind}/{name}", kind, original, after.apply(rng, broken), truth,
                                  f"{'grey' if grey_version else 'colour'}, {after}", noisy=after.noisy))
    return samples


def clean_set(seed: int) -> list[Sample]:
    """The held-out photos and the synthesised thin-line textures, each clean and noisy."""
    rng = np.random.default_rng(seed + 1)
    sources = photo_views()
    sources += [(name, make(np.random.default_rng(seed + 2 + index)))
                for index, (name, make) in enumerate(TEXTURES.items())]
    samples = []
    for name, source in sources:
        empty = np.zeros(source.shape[:2], bool)
        for suffix, after in (("", CLEAN_EXACT), ("+noise", CLEAN_NOISY)):
            samples.append(Sample(name + suffix, "clean", source, after.apply(rng, source), empty, str(after),
                                  after.noisy))
    return samples
