"""SSE semantics: current state on connect, Last-Event-ID replay, reconnect after the end,
separate streams for concurrent jobs, heartbeats."""
from __future__ import annotations

import asyncio

from tests.conftest import astronaut, collect, encode, noisy_photo, sse_events, submit


async def test_last_event_id_replays_exactly_the_later_events(client):
    body = await submit(client, encode(astronaut(128)))
    full = await collect(client, body["jobId"])
    assert len(full) >= 4
    middle = full[1].id
    replay = await collect(client, body["jobId"], last_event_id=middle)
    assert [(e.id, e.event, e.data) for e in replay] == [(e.id, e.event, e.data) for e in full if e.id > middle]


async def test_reconnect_after_the_end_gets_the_terminal_event_again(client):
    body = await submit(client, encode(astronaut(64)))
    full = await collect(client, body["jobId"])
    terminal = full[-1]
    # A browser reconnects with the terminal id; a fresh client sends none. Both get it again.
    for last_id in (terminal.id, None, 10_000):
        again = await collect(client, body["jobId"], last_event_id=last_id)
        assert [(e.id, e.event) for e in again] == [(terminal.id, "complete")]


async def test_connect_gets_current_state_at_once(aiohttp_client, settings):
    from server.app import create_app

    # No workers: the job stays queued, so the stream must still answer at once with its state.
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    body = await submit(client, encode(astronaut(64)))
    stream = sse_events(client, body["jobId"])
    first = await asyncio.wait_for(stream.__anext__(), timeout=5)
    assert first.event == "progress" and first.data["phase"] == "queued"
    assert first.data["queuePosition"] == 1
    await stream.aclose()


async def test_queue_positions_are_announced(aiohttp_client, settings):
    from server.app import create_app

    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    ids = [(await submit(client, encode(astronaut(32))))["jobId"] for _ in range(3)]
    snapshots = [await (await client.get(f"/api/v1/jobs/{i}")).json() for i in ids]
    assert [s["queuePosition"] for s in snapshots] == [1, 2, 3]
    await client.delete(f"/api/v1/jobs/{ids[0]}")
    moved = await (await client.get(f"/api/v1/jobs/{ids[2]}")).json()
    assert moved["queuePosition"] == 2 and moved["stage"] == "Waiting in queue (position 2)"


async def test_concurrent_jobs_keep_separate_streams(aiohttp_client, settings):
    from server.app import create_app

    client = await aiohttp_client(create_app(settings.with_overrides(workers=2)))
    first = await submit(client, noisy_photo(400, 300, seed=1), filename="a.png")
    second = await submit(client, encode(astronaut(200)), filename="b.jpg")
    streams = await asyncio.gather(collect(client, first["jobId"]), collect(client, second["jobId"]))
    for job, events in zip((first, second), streams):
        assert events[-1].event == "complete"
        assert events[-1].data["result"]["jobId"] == job["jobId"]
        assert [e.id for e in events] == sorted({e.id for e in events})
    a_result, b_result = streams[0][-1].data["result"], streams[1][-1].data["result"]
    assert a_result["downloadUrl"].endswith("a_restored.png")
    assert b_result["downloadUrl"].endswith("b_restored.jpg")


async def test_heartbeat_comments_while_waiting(aiohttp_client, settings):
    from server.app import create_app

    client = await aiohttp_client(create_app(settings.with_overrides(workers=0, heartbeat_s=0.2)))
    body = await submit(client, encode(astronaut(32)))
    async with client.get(f"/api/v1/jobs/{body['jobId']}/progress") as resp:
        seen = b""
        while seen.count(b": ping") < 2:
            seen += await asyncio.wait_for(resp.content.readany(), timeout=3)
    assert b"event: progress" in seen
