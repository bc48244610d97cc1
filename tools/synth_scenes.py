"""Thin lines that belong to the scene: hard negatives drawn into a photo crop.

On real photos no detector was trained on (PyWavelets' aero and ascent) every learned detector
flags about 1 % of the clean photo, and what it flags is scene, not damage: the lit edge of a
steel beam, railing bars, tracks and field edges seen from the air (docs/NOTES.md). Drawn
letters and lattices on paper (tools/synth_structures.py) do not look like these. Each drawer
here takes a crop of a training photo and draws such lines into it the way a camera would see
them: on a boundary between two tones, in repeated parallel families, lit on one side, then
blurred by the lens with the rest of the scene. None of it is damage: its label is empty.

Training only (tools/train_damage_detector.py --scene-fraction); the unseen photos judge it.
Distances are in output pixels and computed per pixel, so the lines come out anti-aliased.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return x, y


def _line_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """Signed distance (approximately) to a straight or gently bent line across the crop."""
    x, y = _grid(size)
    px, py = rng.uniform(0.1, 0.9, 2) * size
    angle = rng.uniform(0, np.pi)
    across = (x - px) * np.cos(angle) + (y - py) * np.sin(angle)
    along = (y - py) * np.cos(angle) - (x - px) * np.sin(angle)
    bend = rng.uniform(0, 6) if rng.random() < 0.5 else 0.0
    return across + bend * np.sin(along / rng.uniform(60, 300) + rng.uniform(0, 2 * np.pi))


def _band(distance: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Coverage of a band ``width`` px wide centred on ``centre``, anti-aliased."""
    return np.clip(width / 2 + 0.5 - np.abs(distance - centre), 0, 1)


def _side(distance: np.ndarray) -> np.ndarray:
    """Coverage of the positive side of a boundary, anti-aliased."""
    return np.clip(distance + 0.5, 0, 1)


def _tone_step(rng: np.random.Generator, low: float, high: float) -> float:
    """A factor away from 1 by between ``low`` and ``high``, darker or brighter: a line drawn on
    the boundary must sit on a visible step, or it is just a scratch across the photo."""
    step = rng.uniform(low, high)
    return float(1 - step if rng.random() < 0.5 else 1 + 1.5 * step)


def _stepped(image: np.ndarray, tone: float, coverage: np.ndarray) -> np.ndarray:
    """The covered part of the scene in its own tone: scaled, plus an offset so that a step
    shows on dark and bright parts alike."""
    toned = image * tone + (tone - 1) * 0.15
    return image + (toned - image) * coverage[..., None]


def _rim_level(rng: np.random.Generator) -> float:
    """A lit edge is mostly brighter than both sides; a shadowed one darker."""
    return float(rng.uniform(0.12, 0.5) if rng.random() < 0.7 else -rng.uniform(0.1, 0.35))


def _optics(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """The lens blurs the scene's lines with the rest of it (scratches come after the lens)."""
    return np.clip(cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 0.9)), 0, 1).astype(np.float32)


def lit_edges(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Beams and walls: 1-4 tone steps or bands of their own tone, each with a thin lit or
    shadowed rim along one edge (the beams of ascent)."""
    out = image.copy()
    for _ in range(int(rng.integers(1, 5))):
        distance = _line_field(rng, image.shape[0])
        tone = _tone_step(rng, 0.3, 0.65)
        if rng.random() < 0.5:  # a beam between two parallel edges
            width = rng.uniform(6, 60)
            out = _stepped(out, tone, _band(distance, width / 2, width))
            edge = float(rng.choice([0.0, width]))
        else:
            out = _stepped(out, tone, _side(distance))
            edge = 0.0
        rim = rng.uniform(0.8, 2.5)
        offset = rng.choice([-1, 1]) * rim / 2 * rng.uniform(0, 1)
        out = out + _rim_level(rng) * _band(distance, edge + offset, rim)[..., None]
    return _optics(rng, out)


def railing(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Parallel bars 2-6 px wide, each lit along one edge, seen in slight perspective, between
    a top and a bottom rail (the railings of ascent)."""
    size = image.shape[0]
    x, y = _grid(size)
    angle = rng.uniform(0, np.pi)
    across = x * np.cos(angle) + y * np.sin(angle)
    along = y * np.cos(angle) - x * np.sin(angle)
    along = along - along.min()
    spacing = rng.uniform(6, 25)
    width = min(rng.uniform(2, 6), spacing - 2)
    across = across * (1 + rng.uniform(-0.3, 0.3) * along / size)  # perspective: spacing changes
    phase = ((across / spacing + rng.uniform(0, 1)) % 1 - 0.5) * spacing
    start, stop = np.sort(rng.uniform(-0.2, 1.4, 2) * along.max())
    span = _band(along, (start + stop) / 2, stop - start)
    bars = _band(phase, 0, width) * span
    tone = _tone_step(rng, 0.4, 0.85)
    out = _stepped(image, tone, bars)
    out = out + _rim_level(rng) * (_band(phase, -width / 2 + 0.6, 1.2) * span)[..., None]
    for end in (start, stop):
        rail = _band(along, end, rng.uniform(3, 10))
        out = _stepped(out, tone, rail) + _rim_level(rng) * _band(along, end - 2, 1.0)[..., None]
    return _optics(rng, out)


def field_tracks(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Fields seen from the air: patches of their own tone, some ploughed in faint stripes, with
    2-4.5 px tracks (single or a pair, like a railway) along some of their edges (aero)."""
    size = image.shape[0]
    x, y = _grid(size)
    out = image.copy()
    for _ in range(int(rng.integers(2, 6))):
        distance = _line_field(rng, size)
        side = _side(distance)
        out = _stepped(out, _tone_step(rng, 0.12, 0.3), side)
        if rng.random() < 0.3:
            turn, period = rng.uniform(0, np.pi), rng.uniform(3, 8)
            stripes = np.sin(2 * np.pi * (x * np.cos(turn) + y * np.sin(turn)) / period)
            out = out + rng.uniform(0.01, 0.04) * (stripes * side)[..., None]
        if rng.random() < 0.6:
            width = rng.uniform(2.0, 4.5)
            level = rng.uniform(0.08, 0.3) if rng.random() < 0.7 else -rng.uniform(0.08, 0.2)
            centres = [0.0] if rng.random() < 0.7 else [0.0, rng.uniform(3, 7)]
            for centre in centres:
                out = out + level * _band(distance, centre, width)[..., None]
    return _optics(rng, out)


SCENES: dict[str, Callable[[np.random.Generator, np.ndarray], np.ndarray]] = {
    "lit_edges": lit_edges, "railing": railing, "field_tracks": field_tracks,
}


def draw_scene(rng: np.random.Generator, image: np.ndarray, kinds: tuple[str, ...] | None = None) -> np.ndarray:
    """``image`` with one scene drawer's lines drawn into it, one of ``kinds`` (default all of
    SCENES, in its order); label it undamaged."""
    return SCENES[rng.choice(list(kinds or SCENES))](rng, image)
