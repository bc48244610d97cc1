"""Filling damage: Telea (8 and 16 bits) and LaMa (a random TorchScript model in big-lama.pt's
interface) on native-resolution crops, and restore-photo reporting which one ran."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from bundles import MANIFEST_DIR
from pipelines.base import Cancelled, ModelUnavailable
from pipelines.inpainting import CONTEXT, CROP_SIDE, FEATHER, damage_crops, fill_damage
from pipelines.models.lama import MODEL_ID, padded_side
from pipelines.models.loaders import load_model
from server.app import create_app
from server.bundles.manifest import parse_manifest
from server.bundles.verify import digests
from tests.conftest import collect, completed, encode, photo, step_context, submit
from tests.model_factories import lama_torchscript
from tests.models import manifest_toml


def drawn_mask(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A wandering 2 px scratch, a 3 px straight one and a dozen specks of radius 1-3."""
    height, width = shape[:2]
    mask = np.zeros((height, width), np.uint8)
    ys = np.linspace(0, height - 1, 40)
    xs = width * (0.4 + 0.1 * np.sin(ys / height * 7))
    cv2.polylines(mask, [np.stack([xs, ys], 1).round().astype(np.int32)], False, 1, 2)
    cv2.line(mask, (0, height // 3), (width - 1, height // 2), 1, 3)
    rng = np.random.default_rng(seed)
    for _ in range(12):
        cv2.circle(mask, (int(rng.integers(0, width)), int(rng.integers(0, height))), int(rng.integers(1, 4)), 1, -1)
    return mask.astype(bool)


def damaged(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked pixels made white, or black on every other row: the scratches stand out both ways."""
    out = rgb.copy()
    value = np.where(np.arange(rgb.shape[0])[:, None] % 2 == 0, 1.0, 0.0) * np.ones(rgb.shape[:2])
    out[mask] = value[mask][:, None]
    return out


def psnr_inside(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a[mask] - b[mask]) ** 2)))


def near(mask: np.ndarray, reach: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)) > 0


class RecordingLama:
    """The loaded TorchScript model, recording what it is given."""

    def __init__(self, model: Any):
        self.model = model
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, image, mask):
        self.calls.append((image.numpy().copy(), mask.numpy().copy()))
        return self.model(image, mask)


class Models:
    """A model provider holding only what it was given."""

    def __init__(self, **models: Any):
        self.models = models

    def get(self, model_id: str) -> Any:
        if model_id not in self.models:
            raise ModelUnavailable(f"{model_id} is not installed", details={"bundle": "photo-restoration"})
        return self.models[model_id]


@pytest.fixture(scope="module")
def lama_file(tmp_path_factory) -> Path:
    return lama_torchscript(tmp_path_factory.mktemp("lama") / "big-lama.pt")


@pytest.fixture
def lama(lama_file) -> RecordingLama:
    return RecordingLama(load_model("lama-torchscript", lama_file, "cpu"))


def lama_context(lama: RecordingLama, **context_args):
    ctx = step_context(**context_args)
    ctx.models = Models(**{MODEL_ID: lama})
    return ctx


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut"])
def test_telea_fills_only_the_mask_and_repairs_it(name):
    clean = photo(name)
    mask = drawn_mask(clean.shape)
    broken = damaged(clean, mask)
    repaired, method = fill_damage(broken, mask, 8, step_context())
    assert method == "telea"
    assert np.array_equal(repaired[~mask], broken[~mask])
    # Measured inside the mask: chelsea 5.3 -> 28.4 dB, coffee 4.6 -> 26.3, astronaut 4.5 -> 23.1.
    assert psnr_inside(repaired, clean, mask) - psnr_inside(broken, clean, mask) > 15.0


def test_sixteen_bit_photos_are_filled_in_sixteen_bits():
    clean = photo("coffee")
    mask = drawn_mask(clean.shape, seed=1)
    broken = damaged(clean, mask)
    repaired, method = fill_damage(broken, mask, 16, step_context())
    assert method == "telea" and np.array_equal(repaired[~mask], broken[~mask])
    assert psnr_inside(repaired, clean, mask) - psnr_inside(broken, clean, mask) > 15.0  # measured +21.9 dB
    off_8bit_grid = np.abs(repaired[mask] * 255 - np.round(repaired[mask] * 255)) > 0.01
    assert off_8bit_grid.mean() > 0.5


def test_an_empty_mask_changes_nothing():
    clean = photo("chelsea")
    repaired, method = fill_damage(clean, np.zeros(clean.shape[:2], bool), 8, step_context())
    assert repaired is clean and method == "none"


@pytest.fixture(scope="module")
def large() -> tuple[np.ndarray, np.ndarray]:
    """A 1500x1100 photo whose scratches cross many crops."""
    clean = np.clip(cv2.resize(photo("astronaut"), (1500, 1100), interpolation=cv2.INTER_CUBIC), 0, 1)
    mask = drawn_mask(clean.shape, seed=2)
    return damaged(clean, mask), mask


def test_lama_sees_native_resolution_crops_padded_to_multiples_of_8(large, lama):
    broken, mask = large
    events: list = []
    repaired, method = fill_damage(broken, mask, 8, lama_context(lama, events=events))
    assert method == "lama"
    crops = damage_crops(mask, reach=FEATHER)
    assert len(lama.calls) == len(crops) > 4
    for (image, holes), crop in zip(lama.calls, crops):
        height, width = image.shape[2:]
        assert image.shape[:2] == (1, 3) and holes.shape == (1, 1, height, width)
        assert height % 8 == 0 and width % 8 == 0 and max(height, width) <= CROP_SIDE
        window = broken[crop.window]
        # The photo's own pixels, not a resized copy; the mask is binary and covers the damage.
        assert np.array_equal(image[0, :, :window.shape[0], :window.shape[1]].transpose(1, 2, 0), window)
        assert set(np.unique(holes)) <= {0.0, 1.0}
        assert np.all(holes[0, 0, :window.shape[0], :window.shape[1]][mask[crop.window]] == 1.0)
    untouched = ~near(mask, FEATHER)
    assert np.array_equal(repaired[untouched], broken[untouched])
    assert np.all(np.any(repaired[mask] != broken[mask], axis=1))  # every damaged pixel was replaced
    fractions = [fraction for fraction, _ in events]
    assert len(fractions) == len(crops) and fractions[-1] == pytest.approx(1.0)
    assert all(later > earlier for earlier, later in zip(fractions, fractions[1:]))


def test_a_speck_gets_context_on_every_side_and_a_feathered_edge(lama):
    clean = photo("chelsea")
    mask = np.zeros(clean.shape[:2], bool)
    mask[150, 250] = True
    repaired, _ = fill_damage(clean, mask, 8, lama_context(lama))
    [(image, holes)] = lama.calls
    side = padded_side(1 + 2 * FEATHER + 2 * CONTEXT)
    assert image.shape[2:] == (side, side)
    assert holes.sum() == (2 * FEATHER + 1) ** 2  # the speck and its feathered ring
    changed = np.any(repaired != clean, axis=2)
    assert changed[150, 250] and changed.sum() > 1 and not changed[~near(mask, FEATHER)].any()


def test_without_the_model_the_fill_is_telea(lama):
    clean = photo("chelsea")
    mask = drawn_mask(clean.shape)
    broken = damaged(clean, mask)
    without_provider, method = fill_damage(broken, mask, 8, step_context())
    ctx = step_context()
    ctx.models = Models()  # a provider whose bundles lack LaMa
    without_model, other_method = fill_damage(broken, mask, 8, ctx)
    assert method == other_method == "telea" and np.array_equal(without_provider, without_model)


@pytest.mark.parametrize("allowed_checks", [0, 2])
def test_cancellation_is_checked_between_crops(large, lama, allowed_checks):
    checks = iter(range(allowed_checks + 1))
    with pytest.raises(Cancelled):
        fill_damage(large[0], large[1], 8, lama_context(lama, is_cancelled=lambda: next(checks) >= allowed_checks))
    assert len(lama.calls) == allowed_checks


def scratched_photo() -> bytes:
    """A 512 px photo with two long straight scratches, which today's detector finds."""
    rgb = photo("astronaut")
    cv2.line(rgb, (40, 0), (120, 511), (1.0, 1.0, 1.0), 2)
    cv2.line(rgb, (0, 300), (511, 380), (0.02, 0.02, 0.02), 2)
    return encode((rgb * 255).round().astype(np.uint8), "PNG")


@pytest.fixture
def lama_manifests(tmp_path, model_server, lama_file) -> Path:
    """photo-restoration holding only the shipped manifest's big-lama entry, its file served from
    127.0.0.1 with its md5 (all upstream publishes); the other bundles as shipped."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    shipped = parse_manifest(MANIFEST_DIR / "photo-restoration.toml").model(MODEL_ID)
    model_server.files["big-lama.pt"] = lama_file
    model = {"id": shipped.id, "file": shipped.file, "license": shipped.license, "loader": shipped.loader,
             "md5": digests(lama_file).md5, "sources": [{"kind": "url", "url": model_server.url("big-lama.pt")}]}
    (folder / "photo-restoration.toml").write_text(manifest_toml("photo-restoration", [model], ("restore-photo",)))
    for name in ("upscale", "colorization", "background-removal"):
        shutil.copy(MANIFEST_DIR / f"{name}.toml", folder / f"{name}.toml")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("installed, expected", [(True, "lama"), (False, "telea")])
async def test_restore_photo_reports_the_inpainting_it_used(aiohttp_client, settings, lama_manifests, installed,
                                                           expected):
    client = await aiohttp_client(create_app(settings.with_overrides(manifests_dir=lama_manifests)))
    if installed:
        job = await (await client.post("/api/v1/bundles/photo-restoration/install")).json()
        assert (await collect(client, job["jobId"]))[-1].event == "complete"
    body = await submit(client, scratched_photo(), filename="photo.png",
                        settings={"faceEnhancement": False, "denoise": False})
    result = await completed(client, body, "Removing scratches...")
    assert result["inpainting"] == expected and result["scratchCoverage"] > 0.3
