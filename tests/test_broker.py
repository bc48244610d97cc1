"""The distributed executor with real processes: Redis, one API (`restora serve --broker`), two worker
hosts (`restora worker`) with separate data dirs and no shared folder, and real SIGKILLs."""
from __future__ import annotations

import io
import signal

import aiohttp
import pytest
from PIL import Image

from tests.broker_cluster import Cluster, require_redis, wait_for
from tests.conftest import astronaut, encode

pytestmark = pytest.mark.slow


@pytest.fixture
async def cluster(tmp_path):
    require_redis()
    async with aiohttp.ClientSession() as session:
        running = Cluster(tmp_path, session)
        try:
            await running.start(hosts=2)
            yield running
        finally:
            running.stop()


def held(cluster: Cluster) -> None:
    """Held jobs go on from now on."""
    cluster.release.touch()


async def test_a_job_runs_on_a_worker_host_and_its_bytes_never_go_through_redis(cluster):
    photo = encode(astronaut(64))
    body = await cluster.submit(photo)
    worker = await cluster.held_on(body["jobId"], attempt=1)
    assert worker in cluster.hosts
    health = await wait_for(cluster.health, lambda h: any(w["name"] == worker and w["state"] == "busy"
                                                          for w in h["workers"]), what="health to show the busy host")
    assert health["broker"]["state"] == "up"
    busy = [w for w in health["workers"] if w["name"] == worker][0]
    assert busy["jobId"] == body["jobId"] and busy["device"] == "cpu"
    assert busy["host"] and busy["lastHeartbeat"] > 0
    held(cluster)
    events = await cluster.events(body["jobId"], last_event_id=0)
    assert events[-1].event == "complete", events[-1].data
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert any(e.data["stage"] == "Holding..." for e in events)  # progress came through Redis
    snapshot = await cluster.job(body["jobId"])
    assert snapshot["attempts"] == 1 and snapshot["worker"] == worker
    async with cluster.session.get(cluster.api.base + events[-1].data["result"]["downloadUrl"]) as resp:
        assert resp.status == 200
        assert Image.open(io.BytesIO(await resp.read())).size == (64, 64)
    dump = "".join(cluster.redis.cli("--no-raw", "dump", key) for key in cluster.redis.cli("keys", "*").split())
    assert "JFIF" not in dump and len(dump) < 20_000  # the JPEG never went into Redis


async def test_worker_host_killed_mid_job_another_host_finishes_it(cluster):
    body = await cluster.submit(encode(astronaut(64)))
    first = await cluster.held_on(body["jobId"], attempt=1)
    cluster.hosts[first].kill()
    second = await cluster.held_on(body["jobId"], attempt=2)
    assert second != first
    held(cluster)
    events = await cluster.events(body["jobId"], last_event_id=0)
    assert events[-1].event == "complete", events[-1].data
    assert sum(e.event == "complete" for e in events) == 1
    assert any("retrying" in e.data["stage"] for e in events)
    snapshot = await cluster.job(body["jobId"])
    assert snapshot["attempts"] == 2 and snapshot["worker"] == second
    # The dead host leaves the registry once its heartbeat is overdue.
    await wait_for(cluster.health, lambda h: [w["name"] for w in h["workers"]] == [second],
                   what="the killed host to leave health")


async def test_a_job_that_kills_its_hosts_fails_worker_crashed_and_nothing_else_is_affected(cluster):
    body = await cluster.submit(encode(astronaut(64)))
    for attempt in (1, 2, 3):  # Settings.broker_max_attempts: killed once, then twice more
        host = cluster.hosts[await cluster.held_on(body["jobId"], attempt)]
        host.kill()
        host.start()  # the host comes back (rebooted) and may take the next attempt
    events = await cluster.events(body["jobId"], last_event_id=0)
    assert events[-1].event == "failed" and events[-1].data["error"]["code"] == "WORKER_CRASHED"
    assert "3 times" in events[-1].data["error"]["message"]
    assert sum(e.data["stage"].endswith("retrying") for e in events) == 2
    held(cluster)
    other = await cluster.submit(encode(astronaut(48)))
    assert (await cluster.events(other["jobId"]))[-1].event == "complete"
    assert (await cluster.job(body["jobId"]))["status"] == "failed"


async def test_cancel_reaches_a_job_on_another_host(cluster):
    body = await cluster.submit(encode(astronaut(64)))
    worker = await cluster.held_on(body["jobId"], attempt=1)
    async with cluster.session.delete(f"{cluster.api.base}/api/v1/jobs/{body['jobId']}") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    await wait_for(cluster.health, lambda h: [w for w in h["workers"] if w["name"] == worker][0]["state"] == "idle",
                   what="the host to stop the cancelled job")
    held(cluster)
    assert (await cluster.events(body["jobId"]))[-1].event == "cancelled"
    # The host is free again: a queued job is taken and completes.
    other = await cluster.submit(encode(astronaut(48)))
    assert (await cluster.events(other["jobId"]))[-1].event == "complete"


async def test_a_replayed_result_for_a_finished_job_changes_nothing(cluster):
    held(cluster)
    body = await cluster.submit(encode(astronaut(64)))
    events = await cluster.events(body["jobId"])
    assert events[-1].event == "complete"
    url = cluster.api.base + events[-1].data["result"]["downloadUrl"]
    token = (cluster.api.data_dir / "worker-token").read_text().strip()
    finish = f"{cluster.api.base}/internal/v1/jobs/{body['jobId']}/attempts/1/finish"
    for kind in ("cancelled", "failed", "done"):
        async with cluster.session.post(finish, json={"type": kind, "code": "X", "message": "late"},
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "complete"
    async with cluster.session.post(finish, json={"type": "done"}) as resp:
        assert resp.status == 401  # no worker token
    stale = f"{cluster.api.base}/internal/v1/jobs/{body['jobId']}/attempts/1/files/evil.jpg"
    async with cluster.session.put(stale, data=b"x", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 409
    async with cluster.session.get(url) as resp:
        assert resp.status == 200  # the results are still there
    assert (await cluster.job(body["jobId"]))["status"] == "complete"


async def test_redis_killed_and_restarted_every_accepted_job_completes(cluster):
    first = await cluster.submit(encode(astronaut(64)))
    await cluster.held_on(first["jobId"], attempt=1)
    queued = [await cluster.submit(encode(astronaut(40 + i))) for i in range(2)]
    cluster.redis.kill()
    health = await wait_for(cluster.health, lambda h: h["broker"]["state"] == "down", what="health to see Redis down")
    assert health["status"] == "broker-unavailable"
    refused = await cluster.submit(encode(astronaut(32)), expect=503)
    assert refused["error"]["code"] == "BROKER_UNAVAILABLE" and int(refused["headers"]["Retry-After"]) > 0
    cluster.redis.start()  # on its own files (AOF, appendfsync always)
    await wait_for(cluster.health, lambda h: h["broker"]["state"] == "up", what="health to see Redis back")
    held(cluster)
    for body in [first, *queued]:
        events = await cluster.events(body["jobId"])
        assert events[-1].event == "complete", (body["jobId"], events[-1].data)


async def test_api_killed_mid_job_and_restarted_adopts_it(cluster):
    body = await cluster.submit(encode(astronaut(64)))
    worker = await cluster.held_on(body["jobId"], attempt=1)
    snapshot = await cluster.job(body["jobId"])
    cluster.api.stop(signal.SIGKILL)
    await cluster.api.start(cluster.session)
    held(cluster)
    events = await cluster.events(body["jobId"], last_event_id=0)
    assert events[-1].event == "complete", events[-1].data
    assert [e.id for e in events] == list(range(1, len(events) + 1))  # ids go on from where they were
    assert events[-1].id > snapshot["lastEventId"]
    assert not any("restart" in e.data["stage"] for e in events)  # adopted, never reset to queued
    after = await cluster.job(body["jobId"])
    assert after["attempts"] == 1 and after["worker"] == worker


async def test_a_host_frozen_past_its_lock_is_shut_out(cluster):
    body = await cluster.submit(encode(astronaut(64)))
    frozen = await cluster.held_on(body["jobId"], attempt=1)
    cluster.hosts[frozen].signal_group(signal.SIGSTOP)
    winner = await cluster.held_on(body["jobId"], attempt=2)
    assert winner != frozen
    held(cluster)
    events = await cluster.events(body["jobId"], last_event_id=0)
    assert events[-1].event == "complete"
    url = cluster.api.base + events[-1].data["result"]["downloadUrl"]
    async with cluster.session.get(url) as resp:
        result = await resp.read()
    cluster.hosts[frozen].signal_group(signal.SIGCONT)  # it wakes with a finished job of its own
    await wait_for(cluster.health, lambda h: any(w["name"] == frozen and w["state"] == "idle" for w in h["workers"]),
                   what="the frozen host to drop its stale attempt")
    after = await cluster.events(body["jobId"], last_event_id=0)
    assert sum(e.event == "complete" for e in after) == 1 and after == events
    async with cluster.session.get(url) as resp:
        assert await resp.read() == result  # the winning attempt's results, untouched
    assert (await cluster.job(body["jobId"]))["worker"] == winner


@pytest.fixture
async def api_only(tmp_path):
    """Redis and the API, no host: the test plays a worker host itself, call by call."""
    require_redis()
    async with aiohttp.ClientSession() as session:
        running = Cluster(tmp_path, session)
        try:
            await running.start(hosts=0)
            yield running
        finally:
            running.stop()


async def test_every_worker_call_is_bound_to_the_current_attempt(api_only):
    cluster = api_only
    photo = encode(astronaut(64))
    body = await cluster.submit(photo)
    token = (cluster.api.data_dir / "worker-token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    jobs = f"{cluster.api.base}/internal/v1/jobs/{body['jobId']}"

    async def start(lock):
        async with cluster.session.post(jobs + "/attempts", json={"worker": "me", "lock": lock}, headers=auth) as resp:
            assert resp.status == 200
            return (await resp.json())["attempt"]
    assert await start("lock-a") == 1
    assert await start("lock-a") == 1  # the same hand-out asking again (its answer was lost)
    assert await start("lock-b") == 2  # handed out again: the first attempt's host is presumed gone
    async with cluster.session.get(jobs + "/attempts/1/input", headers=auth) as resp:
        assert resp.status == 409 and (await resp.json())["error"]["code"] == "STALE_ATTEMPT"
    async with cluster.session.get(jobs + "/attempts/2/input", headers=auth) as resp:
        assert resp.status == 200 and await resp.read() == photo
    for attempt, status in ((1, 409), (2, 204)):
        async with cluster.session.put(f"{jobs}/attempts/{attempt}/files/out.png", data=photo, headers=auth) as resp:
            assert resp.status == status
    done = {"type": "done", "result": {"files": {"output": "out.png", "preview": "missing.webp"}}}
    async with cluster.session.post(jobs + "/attempts/2/finish", json=done, headers=auth) as resp:
        assert resp.status == 409 and (await resp.json())["error"]["code"] == "MISSING_UPLOAD"
    failed = {"type": "failed", "code": "UNDECODABLE", "message": "no"}
    async with cluster.session.post(jobs + "/attempts/1/finish", json=failed, headers=auth) as resp:
        assert resp.status == 409
    async with cluster.session.post(jobs + "/attempts/2/finish", json=failed, headers=auth) as resp:
        assert resp.status == 200
    snapshot = await cluster.job(body["jobId"])
    assert snapshot["status"] == "failed" and snapshot["attempts"] == 2 and snapshot["worker"] == "me"
    assert not list((cluster.api.data_dir / "jobs" / body["jobId"]).glob(".*partial"))
