"""The validation generator written apart from training's (tools/validation_damage.py)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tools.synth_damage import VISIBLE, load_photos
from tools.validation_damage import KINDS, _apply, degrade, make_validation_sample, render_curves


@pytest.fixture(scope="module")
def photos():
    return load_photos()


def test_the_same_seed_draws_the_same_crops(photos):
    first, second = (make_validation_sample(np.random.default_rng(5), photos, 128) for _ in range(2))
    assert first.kinds == second.kinds
    assert np.array_equal(first.image, second.image) and np.array_equal(first.mask, second.mask)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_marks_thin_damage_that_moved_the_photo(kind):
    rng = np.random.default_rng(11)
    grey = np.full((192, 192, 3), 0.5, np.float32)
    shares = []
    for _ in range(4):
        coverage, target = KINDS[kind](rng, 192)
        damaged = np.clip(_apply(grey, coverage, target), 0, 1)
        mask = np.abs(damaged - grey).max(axis=2) > VISIBLE
        shares.append(mask.mean())
    assert 0.0005 < np.mean(shares) < 0.15  # thin damage: neither nothing nor a blanket


def test_a_curve_is_as_wide_as_asked():
    points = np.stack([np.linspace(10, 90, 400), np.full(400, 50.5)], axis=1)  # along the centre of row 50
    coverage = render_curves([(points, np.full(400, 1.0, np.float32), np.ones(400, np.float32))], 100)
    column = coverage[:, 50]
    assert column[50] == pytest.approx(1.0) and 1.5 < column.sum() < 2.5  # 2 px across
    assert column[45] == 0.0 and column[55] == 0.0


def test_the_label_is_what_the_damage_moved_and_the_original_is_undamaged(photos):
    rng = np.random.default_rng(9)
    for _ in range(6):
        sample = make_validation_sample(rng, photos, 160)
        assert sample.image.dtype == np.float32 and sample.image.shape == (160, 160, 3)
        assert 0 <= sample.image.min() and sample.image.max() <= 1
        moved = np.abs(sample.image - sample.original).max(axis=2)
        if sample.mask.any():
            assert moved[sample.mask].mean() > 3 * moved[~sample.mask].mean()


def test_degradation_leaves_a_flat_grey_close_to_grey():
    rng = np.random.default_rng(2)
    grey = np.full((128, 128, 3), 0.5, np.float32)
    for _ in range(5):
        out = degrade(rng, grey)
        assert abs(float(out.mean()) - 0.5) < 0.02 and float(out.std()) < 0.04


def test_the_unseen_photos_are_not_training_photos(photos):
    from tools.validation_damage import UNSEEN_PHOTOS, load_unseen_photos

    unseen = load_unseen_photos()
    assert sorted(unseen) == sorted(UNSEEN_PHOTOS) and not set(unseen) & set(photos)
    for name, pixels in unseen.items():
        assert pixels.shape == (512, 512, 3) and pixels.dtype == np.float32 and 0.2 < pixels.mean() < 0.8
        for training in photos.values():  # not a training photo under another name
            if training.shape == pixels.shape:
                assert np.abs(training - pixels).mean() > 0.05


def test_a_fold_is_a_bright_ridge_with_a_shadow_on_one_side():
    grey = np.full((192, 192, 3), 0.5, np.float32)
    shadows = 0
    for seed in range(6):
        coverage, target = KINDS["fold"](np.random.default_rng(seed), 192)
        moved = (np.clip(_apply(grey, coverage, target), 0, 1) - grey).mean(axis=2)
        bright, dark = moved > VISIBLE, moved < -VISIBLE
        assert bright.any()
        if dark.sum() < 20:  # shadows are 0.0-0.45 deep: the faintest are invisible
            continue
        shadows += 1
        distance, (near_y, near_x) = ndimage.distance_transform_edt(~bright, return_indices=True)
        assert distance[dark].max() < 6  # it hugs the ridge
        ys, xs = np.nonzero(bright)
        direction = np.linalg.svd(np.stack([xs - xs.mean(), ys - ys.mean()], axis=1), full_matrices=False)[2][0]
        dys, dxs = np.nonzero(dark)
        side = np.sign((dxs - near_x[dys, dxs]) * -direction[1] + (dys - near_y[dys, dxs]) * direction[0])
        assert abs(side.mean()) > 0.9  # one side of the ridge, not both
    assert shadows >= 2


def test_film_scratches_run_the_whole_height():
    grey = np.full((192, 192, 3), 0.5, np.float32)
    for seed in range(3):
        coverage, target = KINDS["film"](np.random.default_rng(seed), 192)
        mask = np.abs(np.clip(_apply(grey, coverage, target), 0, 1) - grey).max(axis=2) > VISIBLE
        assert mask.any(axis=1).mean() > 0.95 and mask.any(axis=0).mean() < 0.3


def test_degradation_changes_the_photo_only_a_little():
    rng = np.random.default_rng(2)
    ramp = np.repeat(np.linspace(0.2, 0.8, 128, dtype=np.float32)[None, :, None], 128, axis=0).repeat(3, axis=2)
    changes = [float(np.abs(degrade(rng, ramp) - ramp).mean()) for _ in range(8)]
    assert max(changes) < 0.03 and sum(change > 0.002 for change in changes) >= 6
