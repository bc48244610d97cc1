"""The training script replaces a shipped detector only when asked to reproduce it exactly."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.models.damage_unet import CONSERVATIVE_WEIGHTS, PACKAGED_WEIGHTS
from tools import train_damage_detector

CONSERVATIVE_RECIPE = ["--init", str(PACKAGED_WEIGHTS), "--structure-fraction", "0.25", "--lr", "1e-3"]


def outputs(monkeypatch, argv: list[str]) -> Path:
    trained = []
    monkeypatch.setattr(train_damage_detector, "train", lambda args: trained.append(args.out))
    monkeypatch.setattr(sys, "argv", ["train_damage_detector.py", *argv])
    train_damage_detector.main()
    return trained[0]


@pytest.mark.parametrize("argv,packaged", [([], PACKAGED_WEIGHTS), (["--threads", "1"], PACKAGED_WEIGHTS),
                                           (CONSERVATIVE_RECIPE, CONSERVATIVE_WEIGHTS)])
def test_the_documented_commands_write_their_packaged_file(monkeypatch, argv, packaged):
    assert outputs(monkeypatch, argv) == packaged


@pytest.mark.parametrize("argv", [["--steps", "50"], ["--seed", "2"], ["--structure-fraction", "0.25"],
                                  ["--second-generator", "0.5"], ["--scene-fraction", "0.25"],
                                  ["--scene-fraction", "0.25", "--scene-kinds", "lit_edges", "railing"],
                                  CONSERVATIVE_RECIPE[:-2], [*CONSERVATIVE_RECIPE, "--steps", "50"]])
def test_any_other_run_needs_an_out(monkeypatch, capsys, argv, tmp_path):
    with pytest.raises(SystemExit):
        outputs(monkeypatch, argv)
    assert "give --out" in capsys.readouterr().err
    assert outputs(monkeypatch, [*argv, "--out", str(tmp_path / "mine.pt")]) == tmp_path / "mine.pt"


def test_the_second_generator_at_zero_leaves_the_packaged_recipes_crops_as_they_were():
    from tools.synth_damage import load_photos, make_sample

    photos = load_photos()
    images, masks = train_damage_detector.batch(np.random.default_rng(4), photos, 64, 3, train_damage_detector.CropMix())
    rng = np.random.default_rng(4)
    expected = [make_sample(rng, photos, 64) for _ in range(3)]
    assert np.array_equal(images.permute(0, 2, 3, 1).numpy(), np.stack([s.image for s in expected]))
    assert np.array_equal(masks[:, 0].numpy() > 0, np.stack([s.mask for s in expected]))


def test_the_second_generator_draws_its_share_of_the_crops():
    from tools.synth_damage import load_photos
    from tools.validation_damage import make_validation_sample

    photos = load_photos()
    images, _ = train_damage_detector.batch(np.random.default_rng(4), photos, 64, 2,
                                                train_damage_detector.CropMix(second_generator=1.0))
    rng = np.random.default_rng(4)
    expected = []
    for _ in range(2):
        rng.random()  # the draw that chose the generator
        expected.append(make_validation_sample(rng, photos, 64).image)
    assert np.array_equal(images.permute(0, 2, 3, 1).numpy(), np.stack(expected))
