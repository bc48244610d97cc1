"""Bundles through the HTTP API and the CLI: install jobs with SSE, remove, broken bundles, kills."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.app import create_app
from server.bundles.catalog import BundleCatalog
from server.db import Store
from server.jobs import JobKind
from tests.conftest import astronaut, collect, encode, submit
from tests.models import manifest_toml, sha256, write_manifests
from tests.server_process import ROOT


@pytest.fixture
def manifests(tmp_path, model_server, checkpoints) -> Path:
    return write_manifests(tmp_path / "manifests", model_server, checkpoints)


@pytest.fixture
async def api(aiohttp_client, settings, manifests):
    return await aiohttp_client(create_app(settings.with_overrides(manifests_dir=manifests)))


async def test_install_through_the_api_streams_progress(api):
    resp = await api.post("/api/v1/bundles/upscale/install")
    assert resp.status == 202
    job_id = (await resp.json())["jobId"]
    again = await api.post("/api/v1/bundles/upscale/install")
    assert again.status == 409 and (await again.json())["error"]["code"] == "INSTALL_RUNNING"
    events = await collect(api, job_id)
    assert events[-1].event == "complete", events[-1]
    assert events[-1].data["result"]["models"] == ["realesr-general-x4v3", "realesrgan-x4plus"]
    stages = " ".join(e.data["stage"] for e in events)
    assert "RealESRGAN_x4plus.pth (1/2) downloading" in stages
    percents = [e.data["percent"] for e in events[:-1]]
    assert percents == sorted(percents)
    listed = {b["name"]: b for b in (await (await api.get("/api/v1/bundles")).json())["bundles"]}
    assert listed["upscale"]["status"] == "installed"
    assert listed["upscale"]["installedModels"] == ["realesrgan-x4plus", "realesr-general-x4v3"]


async def test_an_install_job_names_its_bundle_in_a_field_of_its_own(api, settings):
    job_id = (await (await api.post("/api/v1/bundles/upscale/install")).json())["jobId"]
    assert (await collect(api, job_id))[-1].event == "complete"
    snapshot = await (await api.get(f"/api/v1/jobs/{job_id}")).json()
    # "tool" still shows the bundle, as it always did for installs.
    assert (snapshot["kind"], snapshot["bundle"], snapshot["tool"]) == ("bundle-install", "upscale", "upscale")
    store = Store(settings.db_path)
    stored = store.get_job(job_id)
    store.close()
    assert (stored.kind, stored.bundle, stored.tool) == (JobKind.BUNDLE_INSTALL, "upscale", "")


async def test_an_unexpected_install_error_fails_the_job(api, monkeypatch):
    from server.bundles.installer import Installer

    async def broken(self, name, **options):
        raise LookupError("a bug, not a network problem")

    monkeypatch.setattr(Installer, "install", broken)
    job_id = (await (await api.post("/api/v1/bundles/upscale/install")).json())["jobId"]
    events = await asyncio.wait_for(collect(api, job_id), 30)
    assert events[-1].event == "failed" and events[-1].data["error"]["code"] == "INTERNAL", events[-1]


async def test_unknown_bundle_is_404_and_remove(api):
    resp = await api.post("/api/v1/bundles/nope/install")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "UNKNOWN_BUNDLE"
    resp = await api.delete("/api/v1/bundles/upscale")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "BUNDLE_NOT_INSTALLED"
    job_id = (await (await api.post("/api/v1/bundles/upscale/install")).json())["jobId"]
    await collect(api, job_id)
    removed = await (await api.delete("/api/v1/bundles/upscale")).json()
    assert removed["status"] == "not_installed"
    # No other installed bundle uses either file ("extra" shares x4 but is not installed): both go.
    assert sorted(removed["removedFiles"]) == ["RealESRGAN_x4plus.pth", "realesr-general-x4v3.pth"]


async def test_broken_bundle_answers_503_for_its_steps_only(aiohttp_client, settings, tmp_path, checkpoints):
    folder = tmp_path / "broken-manifests"
    folder.mkdir()
    model = {"id": "tiny-face", "file": "tiny.pth", "license": "MIT", "loader": "gfpgan-v1-clean",
             "sha256": sha256(checkpoints["general"]), "sources": [{"kind": "url", "url": "http://127.0.0.1:9/x"}]}
    (folder / "photo-restoration.toml").write_text(manifest_toml("photo-restoration", [model]))
    (folder / "colorization.toml").write_text(manifest_toml("colorization", [dict(model, id="tiny-color",
                                                                                file="c.pth")]))
    source = tmp_path / "src"
    source.mkdir()
    (source / "tiny.pth").write_bytes(checkpoints["general"].read_bytes())
    catalog = BundleCatalog.open(settings.models_dir, folder)
    from server.bundles.installer import Installer

    await Installer(catalog).install("photo-restoration", source=source)
    catalog.store.model_path(catalog.get("photo-restoration").model("tiny-face")).unlink()
    client = await aiohttp_client(create_app(settings.with_overrides(manifests_dir=folder)))
    body = await submit(client, encode(astronaut(64)), expect=503, settings={"faceEnhancement": True})
    assert body["error"]["code"] == "BUNDLE_BROKEN" and body["error"]["bundle"] == "photo-restoration"
    ok = await submit(client, encode(astronaut(64)))
    result = (await collect(client, ok["jobId"]))[-1].data["result"]
    assert result["skipped"][0]["reason"] == "the photo-restoration bundle is broken"


@pytest.mark.slow
async def test_killed_install_leaves_nothing_half_installed_and_resumes(tmp_path, model_server, manifests):
    model_server.slow.add("general.pth")
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "server.cli", "bundles", "install", "upscale",
               "--only", "realesr-general-x4v3", "--data-dir", str(data_dir)]
    env = {**os.environ, "RESTORA_MANIFESTS_DIR": str(manifests)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    part = data_dir / "models" / "partial" / "realesr-general-x4v3--realesr-general-x4v3.pth.part"
    deadline = time.monotonic() + 30
    while (not part.exists() or part.stat().st_size < 500_000) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    catalog = BundleCatalog.open(data_dir / "models", manifests)
    assert catalog.state("upscale").status == "not_installed"
    assert 0 < part.stat().st_size < model_server.files["general.pth"].stat().st_size
    model_server.slow.clear()
    done = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env)
    assert await done.wait() == 0
    assert catalog.state("upscale").status == "installed"
    ranges = [rng for name, rng in model_server.requests if name == "general.pth"]
    assert ranges[-1] is not None and ranges[-1].startswith("bytes=") and ranges[-1] != "bytes=0-"
