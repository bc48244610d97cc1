"""Clean thin-line structures: hard negatives for the learned damage detector.

A scratch is a thin line, but so are letters, clock ticks, window bars, engraving hatches and
threads. scikit-image's photos hold few of these, so the standard detector flags them (2.60 % mean,
8.69 % worst of the validation tool's 16 structures; docs/NOTES.md). Each drawer returns a clean
float32 RGB 0..1 square of the requested side, drawn at 2x (with Pillow and its bundled Aileron
font for letters, no download; the cloth with NumPy) and area-averaged down. None of it is
damage: its label is empty.

For the conservative detector's training (synth_damage.make_sample's structure_fraction) and
the training validation split only; the held-out benchmark (bench/restore_quality.py) draws its
own clean set.
"""
from __future__ import annotations

import functools
import string
from typing import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

DRAW_SCALE = 2


def _palette(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(ink, paper) colours: dark on light or light on dark, sometimes tinted."""
    paper = rng.uniform(150, 250, 3) if rng.random() < 0.4 else np.full(3, rng.uniform(150, 250))
    ink = rng.uniform(0, 90, 3) if rng.random() < 0.4 else np.full(3, rng.uniform(0, 90))
    if rng.random() < 0.3:
        ink, paper = paper, ink
    return tuple(int(v) for v in ink), tuple(int(v) for v in paper)


Body = Callable[[np.random.Generator, ImageDraw.ImageDraw, tuple[int, ...], int], None]


def _drawn(body: Body) -> Callable[[np.random.Generator, int], np.ndarray]:
    """A drawer from ``body(rng, draw, ink, side)``, which draws in ink on a paper sheet of
    ``side`` = size x DRAW_SCALE pixels; the sheet is then turned and area-averaged to ``size``."""
    @functools.wraps(body)
    def draw_structure(rng: np.random.Generator, size: int) -> np.ndarray:
        side = size * DRAW_SCALE
        ink, paper = _palette(rng)
        canvas = Image.new("RGB", (side, side), paper)
        body(rng, ImageDraw.Draw(canvas), ink, side)
        rotated = canvas.rotate(float(rng.uniform(-30, 30)), resample=Image.BICUBIC, fillcolor=paper)
        pixels = np.asarray(rotated, np.float32) / 255.0
        return np.clip(cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA), 0, 1)

    return draw_structure


def _word(rng: np.random.Generator) -> str:
    letters = string.ascii_letters + string.digits + ".,-:"
    return "".join(rng.choice(list(letters), size=int(rng.integers(2, 10))))


@_drawn
def lettering(rng: np.random.Generator, draw: ImageDraw.ImageDraw, ink: tuple[int, ...], side: int) -> None:
    """Lines of text from 7 to 40 px high: a page, a sign, a caption."""
    height = int(rng.uniform(7, 40) * DRAW_SCALE)
    font = ImageFont.load_default(height)
    for y in range(int(rng.uniform(-0.5, 0.5) * height), side, int(height * rng.uniform(1.1, 1.8))):
        line = " ".join(_word(rng) for _ in range(int(side / height) + 2))
        draw.text((int(rng.uniform(-3, 0) * height), y), line, fill=ink, font=font)


@_drawn
def dial(rng: np.random.Generator, draw: ImageDraw.ImageDraw, ink: tuple[int, ...], side: int) -> None:
    """A clock or gauge face: a rim, radial ticks, numerals and hands."""
    centre = rng.uniform(0.3, 0.7, 2) * side
    radius = rng.uniform(0.3, 1.0) * side
    width = max(1, int(rng.uniform(0.6, 2.5) * DRAW_SCALE))
    draw.ellipse([*(centre - radius), *(centre + radius)], outline=ink, width=width * 2)
    ticks = int(rng.choice([12, 60, 100]))
    for k in range(ticks):
        angle = 2 * np.pi * k / ticks
        inner = radius * (0.82 if k % 5 == 0 else 0.9)
        direction = np.array([np.cos(angle), np.sin(angle)])
        draw.line([*(centre + direction * inner), *(centre + direction * radius * 0.97)], fill=ink, width=width)
    font = ImageFont.load_default(max(8, int(radius * 0.12)))
    for hour in range(1, 13):
        angle = 2 * np.pi * hour / 12 - np.pi / 2
        at = centre + np.array([np.cos(angle), np.sin(angle)]) * radius * 0.68
        draw.text(tuple(at), str(hour), fill=ink, font=font, anchor="mm")
    for length in (0.5, 0.75):
        angle = rng.uniform(0, 2 * np.pi)
        tip = centre + np.array([np.cos(angle), np.sin(angle)]) * radius * length
        draw.line([*centre, *tip], fill=ink, width=width * 2)


@_drawn
def lattice(rng: np.random.Generator, draw: ImageDraw.ImageDraw, ink: tuple[int, ...], side: int) -> None:
    """A grid of thin bars or mortar joints, offset by rows like brick or square like a window."""
    cell_w, cell_h = rng.uniform(8, 60, 2) * DRAW_SCALE
    width = max(1, int(rng.uniform(0.7, 3.0) * DRAW_SCALE))
    offset_rows = rng.random() < 0.5
    for row, y in enumerate(np.arange(0, side + cell_h, cell_h)):
        draw.line([0, y, side, y], fill=ink, width=width)
        shift = cell_w / 2 if offset_rows and row % 2 else 0
        for x in np.arange(-shift, side + cell_w, cell_w):
            top = y if offset_rows else 0
            draw.line([x, top, x, y + cell_h if offset_rows else side], fill=ink, width=width)


@_drawn
def hatching(rng: np.random.Generator, draw: ImageDraw.ImageDraw, ink: tuple[int, ...], side: int) -> None:
    """Engraving-style parallel strokes, straight or gently curved, each of its own weight."""
    gap = rng.uniform(3, 10) * DRAW_SCALE
    bend, period = rng.uniform(0, 12) * DRAW_SCALE, rng.uniform(60, 400) * DRAW_SCALE
    xs = np.linspace(0, side, 48)
    for y0 in np.arange(-bend, side + bend, gap):
        width = max(1, int(rng.uniform(0.5, 2.0) * DRAW_SCALE))
        ys = y0 + bend * np.sin(xs / period * 2 * np.pi)
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=ink, width=width)


def woven_cloth(rng: np.random.Generator, size: int = 384) -> np.ndarray:
    """Plain or twill weave of 4-9 px threads, bright along their middle, at any angle, slightly
    wavy; often denim-like, one thread set light and the other dark."""
    y, x = np.mgrid[0:size * 2, 0:size * 2].astype(np.float32) / 2
    period, turn = rng.uniform(4, 9), rng.uniform(0, np.pi)
    u, v = x * np.cos(turn) + y * np.sin(turn), y * np.cos(turn) - x * np.sin(turn)
    u, v = u + rng.uniform(0, 2) * np.sin(v / rng.uniform(20, 80)), v + rng.uniform(0, 2) * np.sin(u / rng.uniform(20, 80))
    i, j = np.floor(u / period), np.floor(v / period)
    twill = int(rng.integers(1, 4))
    warp_on_top = (i + j) % 2 == 0 if twill == 1 else (i - j) % (twill + 1) != 0
    warp_colour, weft_colour = rng.uniform(0.1, 0.95, 3), rng.uniform(0.1, 0.95, 3)
    if rng.random() < 0.6:
        warp_colour = rng.uniform(0.75, 0.95) * (1 - rng.uniform(0, 0.1, 3))
        weft_colour = rng.uniform(0.1, 0.45) * (1 - rng.uniform(0, 0.6, 3))
    dark, power = rng.uniform(0.2, 0.6), rng.uniform(0.3, 1.0)
    warp = (dark + (1 - dark) * np.sin(np.pi * (u / period % 1)) ** power)[..., None] * warp_colour
    weft = (dark + (1 - dark) * np.sin(np.pi * (v / period % 1)) ** power)[..., None] * weft_colour
    cloth = np.where(warp_on_top[..., None], warp, weft).astype(np.float32)
    return np.clip(cv2.resize(cloth, (size, size), interpolation=cv2.INTER_AREA), 0, 1)


STRUCTURES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "lettering": lettering, "dial": dial, "lattice": lattice, "hatching": hatching, "cloth": woven_cloth,
}
