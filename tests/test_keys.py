"""API keys: shown once, stored hashed, required when on; rate limits answer 429 with Retry-After."""
from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys

from server.app import create_app
from server.auth import KeyStore
from server.ratelimit import SlidingWindow
from server.settings import Settings
from tests.conftest import astronaut, collect, encode, form, wait_until
from tests.server_process import ROOT


def test_auth_defaults_follow_the_listening_address(tmp_path):
    base = Settings(data_dir=tmp_path)
    assert not base.auth_enabled  # 127.0.0.1
    assert base.with_overrides(host="0.0.0.0").auth_enabled
    assert base.with_overrides(host="192.168.1.5").auth_enabled
    assert not base.with_overrides(host="0.0.0.0", auth="off").auth_enabled
    assert base.with_overrides(auth="on").auth_enabled


def test_cli_prints_the_key_once_and_stores_only_its_hash(tmp_path):
    run = subprocess.run([sys.executable, "-m", "server.cli", "keys", "create", "laptop", "--data-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    key = run.stdout.strip()
    assert key.startswith("rst_") and len(key) > 40
    rows = sqlite3.connect(tmp_path / "restora.sqlite3").execute("SELECT * FROM api_keys").fetchall()
    assert rows and not any(key in str(value) for value in rows[0])
    listed = subprocess.run([sys.executable, "-m", "server.cli", "keys", "list", "--data-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "laptop" in listed and key not in listed
    assert KeyStore(tmp_path / "restora.sqlite3").verify(key).name == "laptop"


async def test_keys_required_when_on(aiohttp_client, settings):
    key, _ = KeyStore(settings.db_path).create("me")
    client = await aiohttp_client(create_app(settings.with_overrides(auth="on")))
    assert (await client.get("/api/v1/health")).status == 200  # public for monitoring
    assert (await client.get("/")).status == 200  # the page loads; it asks for a key
    denied = await client.get("/api/v1/tools")
    assert denied.status == 401 and denied.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await denied.json())["error"]["code"] == "UNAUTHORIZED"
    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-KEY": key}):
        assert (await client.get("/api/v1/tools", headers=headers)).status == 200
    resp = await client.post("/api/v1/tools/restore-photo", data=form(encode(astronaut(32))),
                             headers={"X-API-KEY": key})
    job_id = (await resp.json())["jobId"]
    async with client.get(f"/api/v1/jobs/{job_id}/progress?key={key}") as stream:  # EventSource can't set headers
        assert stream.status == 200
    assert (await client.post("/api/v1/tools/restore-photo", data=form(encode(astronaut(32))),
                              headers={"X-API-KEY": key + "x"})).status == 401
    KeyStore(settings.db_path).revoke("me")
    assert (await client.get("/api/v1/tools", headers={"X-API-KEY": key})).status == 401


async def _finished_job(client, key: str) -> dict:
    resp = await client.post("/api/v1/tools/restore-photo", data=form(encode(astronaut(32))),
                             headers={"X-API-KEY": key})
    job_id = (await resp.json())["jobId"]

    async def snapshot():
        return await (await client.get(f"/api/v1/jobs/{job_id}", headers={"X-API-KEY": key})).json()

    job = await wait_until(snapshot, lambda job: job["status"] in ("complete", "failed"), what="the job to end")
    assert job["status"] == "complete", job["error"]
    return job


async def test_query_key_only_where_a_browser_cannot_send_headers(aiohttp_client, settings):
    key, _ = KeyStore(settings.db_path).create("me")
    client = await aiohttp_client(create_app(settings.with_overrides(auth="on")))
    job = await _finished_job(client, key)
    async with client.get(f"/api/v1/jobs/{job['jobId']}/progress?key={key}") as stream:  # EventSource
        assert stream.status == 200
    assert (await client.get(f"{job['result']['downloadUrl']}?key={key}")).status == 200  # <img>, <a href>
    # Anywhere else a key in the URL is refused, even next to a good header: it says to use the header.
    for path, headers in ((f"/api/v1/jobs/{job['jobId']}?key={key}", {}), (f"/api/v1/tools?key={key}", {}),
                          (f"/api/v1/bundles?key={key}", {"X-API-KEY": key})):
        refused = await client.get(path, headers=headers)
        error = (await refused.json())["error"]
        assert refused.status == 401 and error["code"] == "UNAUTHORIZED", path
        assert "?key=" in error["message"] and "X-API-KEY" in error["message"]
    refused = await client.post(f"/api/v1/tools/restore-photo?key={key}", data=form(encode(astronaut(32))))
    assert refused.status == 401 and "?key=" in (await refused.json())["error"]["message"]
    assert (await client.get(f"/api/v1/jobs/{job['jobId']}", headers={"X-API-KEY": key})).status == 200


async def test_query_key_never_reaches_the_access_log(aiohttp_client, settings, caplog):
    key, _ = KeyStore(settings.db_path).create("me")
    client = await aiohttp_client(create_app(settings.with_overrides(auth="on")))
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    job = await _finished_job(client, key)
    async with client.get(f"/api/v1/jobs/{job['jobId']}/progress?key={key}&lastEventId=1") as stream:
        assert stream.status == 200
    assert (await client.get(f"/api/v1/tools?KEY={key}")).status == 401  # not a key parameter; still redacted
    access = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert any(f"/api/v1/jobs/{job['jobId']}/progress?key=REDACTED&lastEventId=1" in r.getMessage() for r in access)
    assert not any(key in r.getMessage() or key in str(vars(r)) for r in access)
    assert key not in caplog.text


async def test_submission_rate_limit(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(rate_limit_per_hour=2)))
    ids = []
    for _ in range(2):
        resp = await client.post("/api/v1/tools/restore-photo", data=form(encode(astronaut(32))))
        ids.append((await resp.json())["jobId"])
    limited = await client.post("/api/v1/tools/restore-photo", data=form(encode(astronaut(32))))
    assert limited.status == 429
    assert (await limited.json())["error"]["code"] == "RATE_LIMITED" and int(limited.headers["Retry-After"]) >= 1
    for job_id in ids:
        assert (await collect(client, job_id))[-1].event == "complete"


def test_sliding_window_recovers():
    now = [0.0]
    window = SlidingWindow(2, 60, clock=lambda: now[0])
    assert window.hit("a") is None and window.hit("a") is None
    assert window.hit("a") == 60 and window.hit("b") is None
    now[0] = 61
    assert window.hit("a") is None
    assert window.tracked() == 1  # "b" has been idle for a whole window: forgotten
