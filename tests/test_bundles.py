"""Bundle installs through the real download path, against a local HTTP server on 127.0.0.1."""
from __future__ import annotations

import asyncio
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from server.bundles.catalog import BundleCatalog
from server.bundles.installer import InstallError, Installer
from server.bundles.local import UnsafeArchive
from server.bundles.maintenance import remove_bundle, verify_bundle
from server.bundles.store import InstallInProgress
from tests.models import FAST, sha256, write_manifests


@pytest.fixture
def catalog(tmp_path, model_server, checkpoints) -> BundleCatalog:
    return BundleCatalog.open(tmp_path / "models", write_manifests(tmp_path / "manifests", model_server, checkpoints))


async def test_install_verifies_and_loads_through_the_real_architectures(catalog, checkpoints):
    record = await Installer(catalog, FAST).install("upscale")
    assert set(record["models"]) == {"realesrgan-x4plus", "realesr-general-x4v3"}
    assert record["models"]["realesrgan-x4plus"]["verifiedBy"] == "sha256"
    tofu = record["models"]["realesr-general-x4v3"]
    assert tofu["verifiedBy"] == "trust-on-first-use" and tofu["sha256"] == sha256(checkpoints["general"])
    assert catalog.state("upscale").status == "installed"

    from pipelines.models.loaders import load_model

    import torch

    x4 = load_model("rrdbnet-x4", catalog.store.model_file(catalog.get("upscale"), "realesrgan-x4plus"), "cpu")
    reference = torch.load(checkpoints["x4"], weights_only=True)["params_ema"]
    assert torch.equal(x4.state_dict()["conv_first.weight"], reference["conv_first.weight"])
    general = load_model("srvgg-x4", catalog.store.model_file(catalog.get("upscale"), "realesr-general-x4v3"), "cpu")
    assert sum(p.numel() for p in general.parameters()) > 1_000_000


async def test_download_cut_halfway_resumes_with_range(catalog, model_server):
    model_server.cut_once.add("x4.pth")
    await Installer(catalog, FAST).install("upscale", only={"realesrgan-x4plus"})
    x4_requests = [rng for name, rng in model_server.requests if name == "x4.pth"]
    assert x4_requests[0] is None
    assert len(x4_requests) == 2 and x4_requests[1].startswith("bytes=") and x4_requests[1] != "bytes=0-"
    assert catalog.state("upscale").status == "installed"
    assert list(catalog.store.partial_dir.iterdir()) == []


async def test_corrupted_download_is_refused_once_and_nothing_is_half_installed(tmp_path, model_server, checkpoints):
    manifests = write_manifests(tmp_path / "manifests", model_server, checkpoints, x4={"sha256": "0" * 64})
    catalog = BundleCatalog.open(tmp_path / "models", manifests)
    with pytest.raises(InstallError, match="does not match the published"):
        await Installer(catalog, FAST).install("upscale")
    assert [name for name, _ in model_server.requests].count("x4.pth") == 1  # no silent re-download loop
    assert catalog.state("upscale").status == "not_installed"
    assert list(catalog.store.partial_dir.iterdir()) == []
    assert not catalog.store.model_path(catalog.get("upscale").model("realesrgan-x4plus")).exists()


async def test_offline_install_from_directory_and_archives(tmp_path, catalog, checkpoints):
    folder = tmp_path / "usb-stick"
    folder.mkdir()
    for path in checkpoints.values():
        (folder / path.name).write_bytes(path.read_bytes())
    await Installer(catalog, FAST).install("upscale", source=folder)
    assert catalog.state("upscale").status == "installed"
    remove_bundle(catalog, "upscale")

    for archive in (_zip(tmp_path / "models.zip", checkpoints), _tar(tmp_path / "models.tar.gz", checkpoints)):
        record = await Installer(catalog, FAST).install("upscale", source=archive)
        assert record["models"]["realesrgan-x4plus"]["source"] == f"local:{archive}"
        remove_bundle(catalog, "upscale")


@pytest.mark.parametrize("evil", ["../RealESRGAN_x4plus.pth", "/tmp/RealESRGAN_x4plus.pth", "link"])
async def test_unsafe_archives_are_refused(tmp_path, catalog, checkpoints, evil):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(checkpoints["general"], arcname="realesr-general-x4v3.pth")
        if evil == "link":
            info = tarfile.TarInfo("RealESRGAN_x4plus.pth")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
        else:  # TarInfo directly: tarfile.add() would strip a leading "/"
            data = checkpoints["x4"].read_bytes()
            info = tarfile.TarInfo(evil)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with tarfile.open(archive) as tf:
        assert evil in tf.getnames() or evil == "link"
    with pytest.raises(UnsafeArchive):
        await Installer(catalog, FAST).install("upscale", source=archive)
    assert catalog.state("upscale").status == "not_installed"
    assert not any(catalog.store.files_dir.rglob("*.pth"))


async def test_zip_slip_is_refused(tmp_path, catalog, checkpoints):
    archive = tmp_path / "slip.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../evil.pth", b"x")
    with pytest.raises(UnsafeArchive, match="escapes"):
        await Installer(catalog, FAST).install("upscale", source=archive)
    assert not (tmp_path / "evil.pth").exists()


async def test_concurrent_installs_of_one_bundle(catalog):
    results = await asyncio.gather(Installer(catalog, FAST).install("upscale"),
                                   Installer(catalog, FAST).install("upscale"), return_exceptions=True)
    assert sum(isinstance(r, InstallInProgress) for r in results) == 1
    assert sum(isinstance(r, dict) for r in results) == 1
    assert catalog.state("upscale").status == "installed"


async def test_shared_models_are_stored_once_and_kept_on_remove(catalog, model_server):
    await Installer(catalog, FAST).install("upscale")
    downloads = [n for n, _ in model_server.requests].count("x4.pth")
    await Installer(catalog, FAST).install("extra")
    assert [n for n, _ in model_server.requests].count("x4.pth") == downloads  # reused, not fetched again
    shared = catalog.store.model_path(catalog.get("extra").model("realesrgan-x4plus"))
    assert remove_bundle(catalog, "upscale") == ["realesr-general-x4v3.pth"]
    assert shared.is_file() and catalog.state("extra").status == "installed"
    assert remove_bundle(catalog, "extra") == ["RealESRGAN_x4plus.pth"]
    assert not shared.exists()


async def test_verify_reports_drift_and_marks_the_bundle_broken(catalog):
    await Installer(catalog, FAST).install("upscale")
    assert {r["status"] for r in verify_bundle(catalog, "upscale")} == {"ok"}
    path = catalog.store.model_path(catalog.get("upscale").model("realesr-general-x4v3"))
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    report = {r["model"]: r["status"] for r in verify_bundle(catalog, "upscale")}
    assert report == {"realesrgan-x4plus": "ok", "realesr-general-x4v3": "drift"}
    assert catalog.state("upscale").status == "broken"
    # Running the install again repairs it: the drifted file is re-verified, discarded, fetched anew.
    await Installer(catalog, FAST).install("upscale")
    assert catalog.state("upscale").status == "installed"


async def test_a_model_the_manifest_dropped_since_the_install_is_passed_over(catalog):
    await Installer(catalog, FAST).install("upscale")
    record = catalog.store.read_record("upscale")
    record["models"]["retired-model"] = {"sha256": "0" * 64, "size": 1}
    catalog.store.write_record("upscale", record)
    assert catalog.state("upscale").status == "installed"
    report = {r["model"]: r["status"] for r in verify_bundle(catalog, "upscale")}
    assert report == {"realesrgan-x4plus": "ok", "realesr-general-x4v3": "ok"}
    assert sorted(remove_bundle(catalog, "upscale")) == ["RealESRGAN_x4plus.pth", "realesr-general-x4v3.pth"]
    assert catalog.state("upscale").status == "not_installed"


async def test_no_network_says_so_and_suggests_from(tmp_path, model_server, checkpoints):
    manifests = write_manifests(tmp_path / "manifests", model_server, checkpoints,
                                x4={"sources": [{"kind": "url", "url": "https://restora-test.invalid/x4.pth"}]})
    catalog = BundleCatalog.open(tmp_path / "models", manifests)
    with pytest.raises(InstallError) as info:
        await Installer(catalog, FAST).install("upscale", only={"realesrgan-x4plus"})
    assert info.value.code == "NETWORK_UNAVAILABLE"
    assert "restora bundles install upscale --from" in str(info.value)


def _zip(path: Path, checkpoints: dict[str, Path]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for ckpt in checkpoints.values():
            zf.write(ckpt, arcname=f"weights/{ckpt.name}")
    return path


def _tar(path: Path, checkpoints: dict[str, Path]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for ckpt in checkpoints.values():
            tf.add(ckpt, arcname=ckpt.name)
    return path



def test_offline_cli_install_says_how_to_install_without_network(tmp_path, monkeypatch, capsys):
    """The shipped upscale manifest, its download hosts unreachable: the CLI names both ways out."""
    from bundles import MANIFEST_DIR
    from server.cli import main

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    shipped = (MANIFEST_DIR / "upscale.toml").read_text()
    (manifests / "upscale.toml").write_text(shipped.replace("https://github.com/", "https://restora-test.invalid/"))
    monkeypatch.setenv("RESTORA_MANIFESTS_DIR", str(manifests))
    assert main(["bundles", "install", "upscale", "--only", "realesrgan-x2plus", "--data-dir", str(tmp_path / "d")]) == 1
    error = capsys.readouterr().err
    assert "no network access" in error
    assert "restora bundles install upscale --embedded" in error and "realesrgan-x4plus" in error
    assert "restora bundles install upscale --from" in error
