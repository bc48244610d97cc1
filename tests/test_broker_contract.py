"""The job contract again, through the broker: the same tests (imported, not copied) with ``client``
and ``settings`` giving an API whose executor is BullMQ over a Redis of the test's own, and whose
jobs run on a worker host inside the API process (``--broker URL --workers 1``), over loopback HTTP."""
from __future__ import annotations

import asyncio

import pytest

from server.app import create_app
from server.state import EXECUTOR
from tests.broker_cluster import RedisServer, require_redis
from tests.conftest import astronaut, encode, form
from tests.server_process import free_port
from tests.test_api import (  # noqa: F401  (collected here again, with this module's fixtures)
    test_download_refuses_files_the_job_did_not_produce, test_garbage_pixel_data_fails_the_job_with_undecodable,
    test_invalid_params_listed_and_nothing_queued, test_output_format_follows_input, test_submit_stream_and_download,
    test_tools_and_health)
from tests.test_durability import (  # noqa: F401
    test_cancel_queued_job, test_cancel_running_job_removes_files_and_is_idempotent,
    test_delete_answers_the_stored_state_and_a_second_delete_changes_nothing,
    test_delete_of_a_finished_job_answers_expired, test_full_queue_is_429)
from tests.test_sse import (  # noqa: F401
    test_last_event_id_replays_exactly_the_later_events, test_reconnect_after_the_end_gets_the_terminal_event_again)


@pytest.fixture
def redis_url(tmp_path):
    require_redis()
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def settings(settings, redis_url):
    return settings.with_overrides(broker=redis_url, port=free_port(), broker_poll_s=0.5)


@pytest.fixture
async def client(settings, aiohttp_client):  # settings (and Redis) first: they outlive the app
    # The in-process host calls this API at settings.port, so the test server listens there.
    return await aiohttp_client(create_app(settings), server_kwargs={"port": settings.port})


async def test_the_job_is_in_bullmq_before_the_202(client, monkeypatch):
    """A crash of the API right after the 202 must not depend on recovery: BullMQ already has the job."""
    queue = client.app[EXECUTOR]._queue
    real_add, taken = queue.add, []

    async def slow_add(name, data, options):  # a broker that takes its time
        await asyncio.sleep(0.5)
        job = await real_add(name, data, options)
        taken.append(options["jobId"])
        return job
    monkeypatch.setattr(queue, "add", slow_add)
    resp = await client.post("/api/v1/tools/restore-photo", data=form(encode(astronaut(32))))
    assert resp.status == 202
    assert taken == [(await resp.json())["jobId"]]
