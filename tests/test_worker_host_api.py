"""A worker host's calls to the API: a request the API took and never answered is asked again."""
from __future__ import annotations

import asyncio

from aiohttp import web

from server.worker_host import HostConfig, WorkerHost


async def test_a_call_the_api_accepted_and_never_answered_is_asked_again(aiohttp_server, tmp_path):
    calls, never = [], asyncio.Event()

    async def start_attempt(request: web.Request) -> web.Response:
        calls.append(await request.json())
        if len(calls) == 1:
            await never.wait()  # the API took the request, then stopped answering (it was shutting down)
        return web.json_response({"attempt": 1})

    app = web.Application()
    app.router.add_post("/internal/v1/jobs/j1/attempts", start_attempt)
    server = await aiohttp_server(app)
    host = WorkerHost(HostConfig(broker="redis://127.0.0.1:1", api=str(server.make_url("/")), token="t",
                                 data_dir=tmp_path, name="h1", device="cpu", api_read_timeout_s=0.5))
    try:
        async with host.api_session() as host.http:
            # Without a read timeout the first call waits for aiohttp's default 5-minute total.
            answer = await asyncio.wait_for(host._call("POST", "/internal/v1/jobs/j1/attempts",
                                                       json={"worker": "h1", "lock": "L"}), 30)
    finally:
        never.set()
    assert answer == {"attempt": 1}
    assert calls == [{"worker": "h1", "lock": "L"}] * 2  # the same request again: the API answers it idempotently
