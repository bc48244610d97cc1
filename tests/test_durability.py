"""Jobs are never lost: cancel, worker crashes, restarts (SIGKILL and SIGTERM), expiry, draining."""
from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
import uuid

import pytest

from server.app import create_app
from server.db import SCHEMA, Store
from server.jobs import Job, JobKind, JobStatus
from server.views import progress_data
from tests.conftest import astronaut, collect, encode, form, noisy_photo, submit, wait_until

SLOW = dict(width=1600, height=1200)  # denoise on a noisy 2 MP photo: several seconds


def job_getter(client, job_id):
    async def fetch():
        return await (await client.get(f"/api/v1/jobs/{job_id}")).json()
    return fetch


async def worker_pid(client) -> int:
    health = await wait_until(lambda: _health(client), lambda h: h["workers"][0]["pid"] and
                              h["workers"][0]["state"] != "starting")
    return health["workers"][0]["pid"]


async def _health(client):
    return await (await client.get("/api/v1/health")).json()


async def running(client, job_id):
    return await wait_until(job_getter(client, job_id),
                            lambda s: s["status"] == "running" and s["percent"] >= 6)


async def test_cancel_running_job_removes_files_and_is_idempotent(client, settings):
    body = await submit(client, noisy_photo(**SLOW), filename="slow.png")
    job_id = body["jobId"]
    await running(client, job_id)
    resp = await client.delete(f"/api/v1/jobs/{job_id}")
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    events = await collect(client, job_id)
    assert events[-1].event == "cancelled" and events[-1].data["phase"] == "cancelled"
    await wait_until(lambda: asyncio.sleep(0, not (settings.jobs_dir / job_id).exists()), bool, timeout=15)
    again = await client.delete(f"/api/v1/jobs/{job_id}")
    assert again.status == 200
    # The worker is free again: a new job completes.
    quick = await submit(client, encode(astronaut(64)))
    assert (await collect(client, quick["jobId"]))[-1].event == "complete"


async def test_cancel_queued_job(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    body = await submit(client, encode(astronaut(64)))
    await client.delete(f"/api/v1/jobs/{body['jobId']}")
    snapshot = await job_getter(client, body["jobId"])()
    assert snapshot["status"] == "cancelled" and snapshot["queuePosition"] is None
    assert not (settings.jobs_dir / body["jobId"]).exists()


async def test_delete_answers_the_stored_state_and_a_second_delete_changes_nothing(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    body = await submit(client, encode(astronaut(64)))
    for _ in range(2):
        answer = await (await client.delete(f"/api/v1/jobs/{body['jobId']}")).json()
        stored = await job_getter(client, body["jobId"])()
        assert answer["status"] == stored["status"] == "cancelled"


async def test_delete_of_a_finished_job_answers_expired(client, settings):
    body = await submit(client, encode(astronaut(64)))
    assert (await collect(client, body["jobId"]))[-1].event == "complete"
    for _ in range(2):
        answer = await (await client.delete(f"/api/v1/jobs/{body['jobId']}")).json()
        stored = await job_getter(client, body["jobId"])()
        assert answer["status"] == stored["status"] == "expired"
    assert not (settings.jobs_dir / body["jobId"]).exists()


async def test_worker_killed_mid_job_is_replaced_and_job_retried(client):
    slow = await submit(client, noisy_photo(**SLOW), filename="slow.png")
    waiting = await submit(client, encode(astronaut(96)), filename="other.jpg")
    await running(client, slow["jobId"])
    os.kill(await worker_pid(client), signal.SIGKILL)
    events = await collect(client, slow["jobId"])
    assert events[-1].event == "complete", events[-1]
    assert any("retrying" in e.data["stage"] for e in events)
    assert (await job_getter(client, slow["jobId"])())["attempts"] == 2
    other = await collect(client, waiting["jobId"])
    assert other[-1].event == "complete"


async def test_job_that_kills_its_worker_twice_fails_clearly(client):
    body = await submit(client, noisy_photo(**SLOW), filename="slow.png")
    for attempt in (1, 2):
        await wait_until(job_getter(client, body["jobId"]),
                         lambda s: s["status"] == "running" and s["attempts"] == attempt and s["percent"] >= 6)
        os.kill(await worker_pid(client), signal.SIGKILL)
    events = await collect(client, body["jobId"])
    assert events[-1].event == "failed"
    assert events[-1].data["error"]["code"] == "WORKER_CRASHED"
    assert "2 times" in events[-1].data["error"]["message"]
    health = await wait_until(lambda: _health(client), lambda h: h["workers"][0]["state"] == "idle")
    assert health["workers"][0]["restarts"] == 2


async def test_queued_jobs_survive_a_restart(aiohttp_client, settings):
    first = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    ids = [(await submit(first, encode(astronaut(64)), filename=f"{i}.jpg"))["jobId"] for i in range(3)]
    await first.close()
    second = await aiohttp_client(create_app(settings))
    for job_id in ids:
        events = await collect(second, job_id)
        assert events[-1].event == "complete"
        assert events[0].id < events[-1].id


async def test_results_expire_with_410(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(result_ttl_s=0.5, expiry_sweep_s=0.1)))
    body = await submit(client, encode(astronaut(64)))
    result = (await collect(client, body["jobId"]))[-1].data["result"]
    await wait_until(job_getter(client, body["jobId"]), lambda s: s["status"] == "expired", timeout=10)
    resp = await client.get(result["downloadUrl"])
    assert resp.status == 410
    assert (await resp.json())["error"]["code"] == "RESULT_EXPIRED"
    assert not (settings.jobs_dir / body["jobId"]).exists()
    # The stream still ends with the terminal event, so a client never hangs.
    assert (await collect(client, body["jobId"]))[-1].event == "complete"


async def test_draining_server_refuses_new_jobs(client):
    await client.app.shutdown()
    resp = await client.post("/api/v1/tools/restore-photo", data=form(encode(astronaut(32))))
    assert resp.status == 503
    body = await resp.json()
    assert body["error"]["code"] == "SHUTTING_DOWN" and resp.headers["Retry-After"]


@pytest.mark.parametrize("queue", [2])
async def test_full_queue_is_429(aiohttp_client, settings, queue):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0, max_queue=queue)))
    for _ in range(queue):
        await submit(client, encode(astronaut(32)))
    body = await submit(client, encode(astronaut(32)), expect=429)
    assert body["error"]["code"] == "QUEUE_FULL"


def _old_database(path, rows):
    """A database as the release before the "bundle" column wrote it, holding ``rows``."""
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace(",\n    bundle TEXT NOT NULL DEFAULT ''", ""))
    assert "bundle" not in {row[1] for row in old.execute("PRAGMA table_info(jobs)")}
    for row in rows:
        row = {"params": "{}", "plan": "[]", "skipped": "[]", "input_name": "", "input_file": "",
               "input_size": 0, "input_format": "", "output_stem": "result", "created_at": time.time(),
               "attempts": 1, "percent": 40.0, "last_event_id": 1, "meta": "{}", **row}
        old.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))
    old.commit()
    old.close()


async def test_an_install_from_an_older_database_loads_and_fails_as_interrupted(aiohttp_client, settings):
    install_id, photo_id = str(uuid.uuid4()), str(uuid.uuid4())
    settings.db_path.parent.mkdir(parents=True)
    _old_database(settings.db_path, [
        {"id": install_id, "kind": "bundle-install", "tool": "upscale", "status": "running",
         "phase": "processing", "stage": "Installing upscale"},
        {"id": photo_id, "kind": "tool", "tool": "restore-photo", "status": "cancelled",
         "phase": "cancelled", "stage": "Cancelled"}])
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    install = await job_getter(client, install_id)()
    assert (install["kind"], install["bundle"], install["tool"]) == ("bundle-install", "upscale", "upscale")
    assert install["status"] == "failed" and install["error"]["code"] == "INTERRUPTED"
    photo = await job_getter(client, photo_id)()
    assert (photo["kind"], photo["bundle"], photo["tool"]) == ("tool", None, "restore-photo")
    store = Store(settings.db_path)
    stored = [store.get_job(job_id) for job_id in (install_id, photo_id)]
    store.close()
    assert [(j.kind, j.bundle, j.tool) for j in stored] == [(JobKind.BUNDLE_INSTALL, "upscale", ""),
                                                          (JobKind.TOOL, "", "restore-photo")]


async def test_a_restart_requeues_running_jobs_in_order_and_fails_those_out_of_attempts(aiohttp_client, settings):
    """As a SIGKILLed server leaves them: two jobs still marked running, one queued."""
    left = [(JobStatus.RUNNING, 1), (JobStatus.RUNNING, settings.max_attempts), (JobStatus.QUEUED, 0)]
    jobs = [Job(id=str(uuid.uuid4()), kind=JobKind.TOOL, tool="restore-photo", params={}, status=status,
                attempts=attempts, created_at=1000.0 + i, last_event_id=1) for i, (status, attempts) in enumerate(left)]
    store = Store(settings.db_path)
    for job in jobs:
        store.insert_job(job, event=(1, "progress", progress_data(job)))
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    snapshots = [await job_getter(client, job.id)() for job in jobs]
    assert [(s["status"], s["queuePosition"]) for s in snapshots] == [("queued", 1), ("failed", None), ("queued", 2)]
    assert snapshots[1]["error"]["code"] == "WORKER_CRASHED"
    assert f"{settings.max_attempts} times" in snapshots[1]["error"]["message"]
    assert "Resuming after a server restart" in [data["stage"] for _, _, data in store.events_after(jobs[0].id, 0)]
    store.close()
