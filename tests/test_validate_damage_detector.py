"""The validation tool's repair figures: the gain inside the damage and the change outside it."""
from __future__ import annotations

import cv2
import numpy as np

from tools.synth_damage import Sample, load_photos, make_sample
from tools.validate_damage_detector import DISC5, repair_figures


def damaged_crops(count: int = 6):
    rng = np.random.default_rng(7)
    photos = load_photos()
    return [make_sample(rng, photos, 192, clean_fraction=0.0) for _ in range(count)]


def beside(sample: Sample) -> np.ndarray:
    """The true mask plus a copy of it 9 px to the right: false alarms outside the damage."""
    return (sample.mask | np.roll(sample.mask, 9, axis=1)).astype(np.float32)


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
    assert figures["undamagedWorst"] == 0.0 and figures["pristineChanges"] == []


def test_a_repair_within_3_px_of_the_damage_is_not_counted_outside_it():
    crops = damaged_crops()
    grown = [cv2.dilate(s.mask.view(np.uint8), DISC5).astype(np.float32) for s in crops]  # 2 px wider
    assert repair_figures(crops, grown)["undamagedWorst"] == 0.0


def test_false_alarms_show_as_a_worse_undamaged_area():
    crops = damaged_crops()
    figures = repair_figures(crops, [beside(s) for s in crops])
    assert figures["undamagedWorst"] < -0.1 and figures["undamagedMean"] < 0  # measured: -0.27 and -0.06 dB


def test_crops_without_degradation_are_counted_apart():
    crops = damaged_crops()
    pristine = Sample(np.where(crops[0].mask[..., None], crops[0].image, crops[0].original), crops[0].mask,
                      crops[0].kinds, crops[0].original)
    alone = repair_figures([pristine], [beside(pristine)])
    assert alone["pristine"] == 1 and alone["graded"] == 0 and alone["undamagedWorst"] is None
    assert len(alone["pristineChanges"]) == 1 and alone["pristineChanges"][0] < -20  # from the 99 dB cap
    mixed = repair_figures([pristine, *crops[1:]], [beside(s) for s in (pristine, *crops[1:])])
    assert mixed["graded"] == len(crops) - 1 and mixed["undamagedWorst"] > -20


def test_no_damage_to_measure_gives_no_figures():
    clean = make_sample(np.random.default_rng(3), load_photos(), 96, clean_fraction=1.0)
    figures = repair_figures([clean], [np.zeros(clean.mask.shape, np.float32)])
    assert figures["crops"] == 0 and figures["gainMin"] is None and figures["undamagedMean"] is None
