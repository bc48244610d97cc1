"""A late or replayed executor event about a job that already ended changes nothing: before, the
manager removed the folder of any job it no longer tracked, so it deleted a finished job's results."""
from __future__ import annotations

import pytest

from server.executor.base import EventKind, ExecutorEvent
from server.state import MANAGER
from tests.conftest import astronaut, collect, encode, submit


@pytest.mark.parametrize("kind", [EventKind.DONE, EventKind.FAILED, EventKind.CANCELLED, EventKind.LOST])
async def test_a_late_event_for_a_finished_job_keeps_its_results(client, settings, kind):
    body = await submit(client, encode(astronaut(64)))
    events = await collect(client, body["jobId"])
    assert events[-1].event == "complete"
    client.app[MANAGER].apply(ExecutorEvent(kind, body["jobId"], {"result": {}, "reason": "late"}))
    download = await client.get(events[-1].data["result"]["downloadUrl"])
    assert download.status == 200
    snapshot = await (await client.get(f"/api/v1/jobs/{body['jobId']}")).json()
    assert snapshot["status"] == "complete" and snapshot["lastEventId"] == events[-1].id
