"""restora.client against the real app on 127.0.0.1: submit, follow, wait, download, cancel; the
server's errors as RestoraError; a dropped progress stream resumed with Last-Event-ID; the sync client."""
from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from restora.client import AsyncClient, Client, RestoraError, result_filename
from server.app import create_app
from server.auth import KeyStore
from tests.conftest import astronaut, encode, wait_until
from tests.server_process import free_port


async def _serve(aiohttp_server, settings) -> str:
    server = await aiohttp_server(create_app(settings))
    return str(server.make_url("/"))


async def test_submit_follow_wait_and_download(aiohttp_server, settings, tmp_path):
    base = await _serve(aiohttp_server, settings)
    async with AsyncClient(base) as client:
        accepted = await client.submit("restore-photo", encode(astronaut(48)), {"denoise": False},
                                       filename="photo.jpg")
        events = [event async for event in client.events(accepted["jobId"])]
        assert [e.type for e in events][-1] == "complete" and not any(e.terminal for e in events[:-1])
        ids = [e.id for e in events]
        assert ids == sorted(set(ids))
        result = events[-1].data["result"]
        assert result_filename(result["downloadUrl"]) == "photo_restored.jpg"
        assert (await client.job(accepted["jobId"]))["status"] == "complete"
        (tmp_path / "out").mkdir()
        dest = await client.download(result["downloadUrl"], tmp_path / "out" / "restored.jpg")
        assert dest.read_bytes() == await client.download_bytes(result["downloadUrl"])
        assert Image.open(dest).size == (48, 48)
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["restored.jpg"]  # no partial file left


async def test_a_path_or_a_url_keeps_its_name_and_a_failed_job_raises_its_error(aiohttp_server, settings, tmp_path):
    base = await _serve(aiohttp_server, settings.with_overrides(allow_private_urls=True))  # the URL is 127.0.0.1
    scan = tmp_path / "old scan.png"
    scan.write_bytes(encode(astronaut(32), "PNG"))
    async def wedding(request: web.Request) -> web.Response:
        return web.Response(body=encode(astronaut(36)), content_type="image/jpeg")

    photos = web.Application()
    photos.router.add_get("/photos/wedding.jpg", wedding)
    photo_url = str((await aiohttp_server(photos)).make_url("/photos/wedding.jpg"))
    good = encode(astronaut(64), "JPEG")
    broken = good[:600] + bytes(range(256)) * 8  # a valid header, then noise instead of scan data
    async with AsyncClient(base) as client:
        result = await client.wait((await client.submit("restore-photo", scan))["jobId"])
        assert result_filename(result["downloadUrl"]) == "old-scan_restored.png"
        fetched = await client.wait((await client.submit("restore-photo", photo_url, {"denoise": False}))["jobId"])
        assert result_filename(fetched["downloadUrl"]) == "wedding_restored.jpg" and fetched["width"] == 36
        job_id = (await client.submit("restore-photo", broken, filename="broken.jpg"))["jobId"]
        with pytest.raises(RestoraError) as failed:
            await client.wait(job_id)
    assert (failed.value.code, failed.value.status, failed.value.job_id) == ("UNDECODABLE", None, job_id)
    assert failed.value.message


async def test_errors_carry_the_servers_code_message_and_status(aiohttp_server, settings):
    base = await _serve(aiohttp_server, settings.with_overrides(workers=0))
    async with AsyncClient(base) as client:
        with pytest.raises(RestoraError) as unknown:
            await client.submit("restore-fotos", encode(astronaut(32)))
        assert (unknown.value.code, unknown.value.status) == ("UNKNOWN_TOOL", 400)
        assert "restore-photo" in unknown.value.details["known"]
        with pytest.raises(RestoraError) as invalid:
            await client.submit("restore-photo", encode(astronaut(32)), {"denoiseStrength": 500, "bogus": 1})
        assert (invalid.value.code, invalid.value.status) == ("INVALID_PARAMS", 400)
        assert {p["field"] for p in invalid.value.details["fields"]} == {"denoiseStrength", "bogus"}
        with pytest.raises(RestoraError) as missing:
            await client.job("00000000-0000-0000-0000-000000000000")
        assert (missing.value.code, missing.value.status) == ("JOB_NOT_FOUND", 404)
        mask = encode(np.zeros((32, 32), np.uint8), "PNG")
        with pytest.raises(RestoraError) as no_mask_here:
            await client.submit("upscale", encode(astronaut(32)), mask=mask)
        assert (no_mask_here.value.code, no_mask_here.value.status) == ("MASK_NOT_ACCEPTED", 400)
        queued = await client.submit("restore-photo", encode(astronaut(32)), mask=mask)
        assert (await client.job(queued["jobId"]))["status"] == "queued"
        with pytest.raises(RestoraError) as not_ready:
            await client.download_bytes(f"/api/v1/download/{queued['jobId']}/photo_restored.jpg")
        assert (not_ready.value.code, not_ready.value.status) == ("RESULT_NOT_READY", 409)
    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as nobody:
        with pytest.raises(RestoraError) as refused:
            await nobody.tools()
    assert (refused.value.code, refused.value.status) == ("CONNECTION_FAILED", None)


async def test_cancel_ends_the_job_and_wait_says_so(aiohttp_server, settings):
    base = await _serve(aiohttp_server, settings.with_overrides(workers=0))  # stays queued until cancelled
    async with AsyncClient(base) as client:
        job_id = (await client.submit("restore-photo", encode(astronaut(32))))["jobId"]
        assert (await client.cancel(job_id))["status"] == "cancelled"
        with pytest.raises(RestoraError) as cancelled:
            await client.wait(job_id)
    assert (cancelled.value.code, cancelled.value.job_id) == ("CANCELLED", job_id)


class CuttingProxy:
    """Forwards progress streams to the real app; cuts the first one right after its first event,
    as a restart or an idle-timeout proxy would."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.last_event_ids: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/jobs/{id}/progress", self.progress)
        return app

    async def progress(self, request: web.Request) -> web.StreamResponse:
        last_id = request.headers.get("Last-Event-ID")
        self.last_event_ids.append(last_id)
        cut = len(self.last_event_ids) == 1
        headers = {"Last-Event-ID": last_id} if last_id else {}
        async with aiohttp.ClientSession() as session, \
                session.get(self.upstream + request.path, headers=headers) as upstream:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            had_data = False
            async for line in upstream.content:
                await resp.write(line)
                had_data = had_data or line.startswith(b"data:")
                if cut and had_data and not line.strip():
                    assert request.transport is not None
                    request.transport.close()
                    return resp
        return resp


async def test_a_dropped_stream_is_resumed_with_last_event_id(aiohttp_server, settings):
    base = await _serve(aiohttp_server, settings.with_overrides(workers=0))
    proxy = CuttingProxy(base)
    proxied = str((await aiohttp_server(proxy.app())).make_url("/"))
    async with AsyncClient(base) as direct, AsyncClient(proxied, reconnect_delay_s=0.05) as via_proxy:
        job_id = (await direct.submit("restore-photo", encode(astronaut(32))))["jobId"]
        follow = asyncio.create_task(_events(via_proxy, job_id))

        async def requests() -> list[str | None]:
            return list(proxy.last_event_ids)

        await wait_until(requests, lambda seen: len(seen) == 2, what="the client to reconnect")
        await direct.cancel(job_id)
        events = await asyncio.wait_for(follow, timeout=30)
        # A fresh stream starts at the current state; from there on, every event exactly once.
        every = await _events(direct, job_id, last_event_id=events[0].id - 1)
    assert proxy.last_event_ids == [None, str(events[0].id)]
    assert [(e.id, e.type) for e in events] == [(e.id, e.type) for e in every]  # none lost, none twice
    assert [e.type for e in events] == ["progress", "cancelled"]


async def _events(client: AsyncClient, job_id: str, last_event_id: int | None = None) -> list:
    return [event async for event in client.events(job_id, last_event_id)]


async def test_api_key_is_sent_and_its_absence_is_the_servers_401(aiohttp_server, settings):
    key, _ = KeyStore(settings.db_path).create("cli")
    base = await _serve(aiohttp_server, settings.with_overrides(workers=0, auth="on"))
    async with AsyncClient(base, api_key=key) as client:
        assert "restore-photo" in {tool["name"] for tool in await client.tools()}
    async with AsyncClient(base) as anonymous:
        with pytest.raises(RestoraError) as denied:
            await anonymous.tools()
    assert (denied.value.code, denied.value.status) == ("UNAUTHORIZED", 401)


def _sync_round_trip(base: str, photo: Path, dest: Path) -> tuple[dict, list[str], Path]:
    with Client(base) as client:
        job_id = client.submit("restore-photo", str(photo), {"denoise": "false"})["jobId"]
        types = [event.type for event in client.events(job_id)]
        result = client.wait(job_id)  # after the end: the terminal event again
        return result, types, client.download(result["downloadUrl"], dest)


async def test_the_sync_client_does_the_same(aiohttp_server, settings, tmp_path):
    base = await _serve(aiohttp_server, settings)
    photo = tmp_path / "family.jpg"
    photo.write_bytes(encode(astronaut(40)))
    # The sync client blocks its caller, so it runs in a thread while this loop serves the app.
    result, types, dest = await asyncio.to_thread(_sync_round_trip, base, photo, tmp_path / "out.jpg")
    assert types[-1] == "complete" and result_filename(result["downloadUrl"]) == "family_restored.jpg"
    assert Image.open(dest).size == (40, 40)
