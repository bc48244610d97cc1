"""The training script replaces a shipped detector only when asked to reproduce it exactly."""
from __future__ import annotations

import sys
from pathlib import Path

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
                                  CONSERVATIVE_RECIPE[:-2], [*CONSERVATIVE_RECIPE, "--steps", "50"]])
def test_any_other_run_needs_an_out(monkeypatch, capsys, argv, tmp_path):
    with pytest.raises(SystemExit):
        outputs(monkeypatch, argv)
    assert "give --out" in capsys.readouterr().err
    assert outputs(monkeypatch, [*argv, "--out", str(tmp_path / "mine.pt")]) == tmp_path / "mine.pt"
