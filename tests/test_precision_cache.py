"""Precision decisions on disk: measured once per model file and device, read back by the next
worker, measured again when the file, the device or the file's contents change."""
from __future__ import annotations

import json
import os

import pytest

from pipelines import precision
from pipelines.models.loaders import build_loader_registry
from pipelines.models.precision_cache import PrecisionCache
from pipelines.precision import Precision
from tests.model_factories import srvgg_checkpoint

BF16 = Precision("bf16", "cpu", channels_last=True, calibration_psnr_db=52.5)


def counting(result: Precision):
    calls = []

    def decide() -> Precision:
        calls.append(1)
        return result
    return decide, calls


def test_a_decision_is_measured_once_and_read_back_by_the_next_worker(tmp_path):
    model = tmp_path / "model.pth"
    model.write_bytes(b"weights")
    decide, calls = counting(BF16)
    assert PrecisionCache(tmp_path / "decisions.json").decided(model, "cpu", decide) == BF16
    assert PrecisionCache(tmp_path / "decisions.json").decided(model, "cpu", decide) == BF16  # a new worker
    assert len(calls) == 1
    PrecisionCache(tmp_path / "decisions.json").decided(model, "cuda:0", decide)  # another device
    assert len(calls) == 2
    model.write_bytes(b"other weights")  # a reinstalled bundle: another size and modification time
    os.utime(model, ns=(1, 1))
    PrecisionCache(tmp_path / "decisions.json").decided(model, "cpu", decide)
    assert len(calls) == 3


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"x": 1}'])
def test_a_damaged_file_is_measured_again_and_rewritten(tmp_path, content):
    model, store = tmp_path / "model.pth", tmp_path / "decisions.json"
    model.write_bytes(b"weights")
    store.write_text(content)
    decide, calls = counting(BF16)
    assert PrecisionCache(store).decided(model, "cpu", decide) == BF16 and len(calls) == 1
    assert PrecisionCache(store).decided(model, "cpu", decide) == BF16 and len(calls) == 1
    assert isinstance(json.loads(store.read_text()), dict)


def test_a_stored_entry_that_is_not_a_decision_is_measured_again(tmp_path):
    from pipelines.models.precision_cache import decision_key

    model, store = tmp_path / "model.pth", tmp_path / "decisions.json"
    model.write_bytes(b"weights")
    store.write_text(json.dumps({decision_key(model, "cpu"): {"name": "bf16", "bogus": 1}}))
    decide, calls = counting(BF16)
    assert PrecisionCache(store).decided(model, "cpu", decide) == BF16 and len(calls) == 1


def test_the_loader_calibrates_a_model_file_once(tmp_path, monkeypatch):
    """The real loader path: realesr-general-x4v3 with random weights, bf16 allowed, so the
    calibration (a bf16 and an fp32 forward) runs the first time only."""
    weights = srvgg_checkpoint(tmp_path / "realesr-general-x4v3.pth")
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    measured = []
    real = precision.bf16_agreement_db
    monkeypatch.setattr(precision, "bf16_agreement_db", lambda *a: measured.append(1) or real(*a))
    store = tmp_path / "decisions.json"
    first = build_loader_registry(PrecisionCache(store)).get("srvgg-x4")(weights, "cpu").precision
    second = build_loader_registry(PrecisionCache(store)).get("srvgg-x4")(weights, "cpu").precision
    assert measured == [1] and first == second and first.calibration_psnr_db is not None
    uncached = build_loader_registry().get("srvgg-x4")(weights, "cpu").precision
    assert measured == [1, 1] and uncached == first
