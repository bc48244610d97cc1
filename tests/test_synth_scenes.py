"""Scene lines (tools/synth_scenes.py): thin lines that sit on the scene, labelled undamaged."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from tools import train_damage_detector
from tools.train_damage_detector import CropMix
from tools.synth_damage import load_photos, make_sample
from tools.synth_scenes import SCENES, field_tracks, lit_edges

FLAT = np.full((96, 96, 3), 0.5, np.float32)


@pytest.mark.parametrize("name", sorted(SCENES))
def test_each_scene_is_a_photo_of_the_same_size_drawn_the_same_for_a_seed(name):
    first = SCENES[name](np.random.default_rng(7), FLAT)
    again = SCENES[name](np.random.default_rng(7), FLAT)
    assert first.shape == FLAT.shape and first.dtype == np.float32
    assert 0 <= first.min() and first.max() <= 1
    assert np.array_equal(first, again)
    assert np.abs(first - FLAT).max() > 0.1


@pytest.mark.parametrize("draw,step", [(lit_edges, 0.1), (field_tracks, 0.05)])
def test_the_lines_sit_on_a_tone_step_not_on_a_flat_ground(draw, step):
    # A line alone across a flat ground is what a scratch looks like: the scene's must come with
    # a region of its own tone, so a share of the frame moves, not just the line's pixels.
    for seed in range(10):
        scene = draw(np.random.default_rng(seed), FLAT)
        assert (np.abs(scene - FLAT).max(axis=2) > step).mean() > 0.05, seed


def test_lit_edges_draw_thin_lines_not_only_steps():
    # A 5x5 median keeps a straight step and removes a line a few pixels wide.
    thin = []
    for seed in range(10):
        scene = lit_edges(np.random.default_rng(seed), FLAT)
        grey = (scene.mean(axis=2) * 255).astype(np.uint8)
        thin.append((np.abs(grey.astype(int) - cv2.medianBlur(grey, 5)) > 12).mean())
    assert np.mean(thin) > 0.01  # 0.020 as drawn, 0.003 with the rims taken out


def test_scene_crops_carry_no_damage_label_of_their_own():
    photos = load_photos()
    for seed in range(4):
        sample = make_sample(np.random.default_rng(seed), photos, 96, clean_fraction=1.0, scene_fraction=1.0)
        plain = make_sample(np.random.default_rng(seed), photos, 96, clean_fraction=1.0)
        assert not sample.mask.any()
        assert not np.array_equal(sample.original, plain.original)


def test_the_scene_fraction_reaches_the_training_batches():
    photos = load_photos()
    with_scenes, _ = train_damage_detector.batch(np.random.default_rng(4), photos, 64, 3, CropMix(scene_fraction=1.0))
    without, _ = train_damage_detector.batch(np.random.default_rng(4), photos, 64, 3)
    assert not np.array_equal(with_scenes.numpy(), without.numpy())


def test_scene_kinds_choose_which_drawers_the_training_batches_use(monkeypatch):
    used = []
    for name in SCENES:
        monkeypatch.setitem(SCENES, name, lambda rng, image, name=name: used.append(name) or image)
    photos = load_photos()
    train_damage_detector.batch(np.random.default_rng(4), photos, 64, 24,
                                CropMix(scene_fraction=1.0, scene_kinds=("lit_edges", "railing")))
    assert set(used) == {"lit_edges", "railing"}
    used.clear()
    train_damage_detector.batch(np.random.default_rng(4), photos, 64, 24, CropMix(scene_fraction=1.0))
    assert set(used) == set(SCENES)
