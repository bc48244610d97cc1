"""The validation tool's repair figures: the gain inside the damage and the change outside it."""
from __future__ import annotations

import numpy as np

from tools.synth_damage import load_photos, make_sample
from tools.validate_damage_detector import repair_figures


def damaged_crops(count: int = 6):
    rng = np.random.default_rng(7)
    photos = load_photos()
    return [make_sample(rng, photos, 192, clean_fraction=0.0) for _ in range(count)]


def test_the_original_is_the_crop_before_damage_and_degradation():
    for sample in damaged_crops():
        assert sample.original.shape == sample.image.shape
        inside = np.abs(sample.image - sample.original).max(axis=2)[sample.mask].mean()
        outside = np.abs(sample.image - sample.original).max(axis=2)[~sample.mask].mean()
        assert inside > 3 * outside  # grain and JPEG move every pixel; the damage moves its own far more


def test_the_true_mask_gains_inside_and_leaves_the_rest_as_it_was():
    crops = damaged_crops()
    figures = repair_figures(crops, [s.mask.astype(np.float32) for s in crops])
    assert figures["crops"] == len(crops) and figures["gainMean"] > 5.0
    assert figures["undamagedWorst"] == 0.0 and figures["pristineChanged"] == 0


def test_false_alarms_show_as_a_worse_undamaged_area():
    crops = damaged_crops()
    beside = [(s.mask | np.roll(s.mask, 9, axis=1)).astype(np.float32) for s in crops]  # a copy 9 px aside
    figures = repair_figures(crops, beside)
    assert figures["undamagedWorst"] < -0.1 and figures["undamagedMean"] < 0  # measured: -0.27 and -0.06 dB
