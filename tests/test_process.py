"""The real ``restora serve`` process: SIGKILL loses nothing, SIGTERM drains and resumes."""
from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import astronaut, encode, form, noisy_photo, wait_until
from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow


async def submit(session, base, image, name):
    async with session.post(base + "/api/v1/tools/restore-photo", data=form(image, name)) as resp:
        assert resp.status == 202
        return (await resp.json())["jobId"]


async def job(session, base, job_id):
    async with session.get(f"{base}/api/v1/jobs/{job_id}") as resp:
        return await resp.json()


async def wait_job(session, base, job_id, predicate, timeout=120):
    return await wait_until(lambda: job(session, base, job_id), predicate, timeout, interval=0.2,
                            what=f"job {job_id}")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie child of a dead parent is reaped by init; treat a defunct state as gone.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


async def test_a_fresh_data_dir_serves_the_embedded_x4plus(tmp_path):
    """`restora serve` alone (no `make serve`, no network): the packaged x4plus is installed at start,
    so an upscale is accepted (the converted model itself is checked in test_ncnn_conversion)."""
    server = ServerProcess(tmp_path / "data", workers=0)
    async with aiohttp.ClientSession() as session:
        await server.start(session)
        try:
            async with session.get(server.base + "/api/v1/bundles/upscale") as resp:
                bundle = await resp.json()
            async with session.post(server.base + "/api/v1/tools/upscale",
                                    data=form(encode(astronaut(16), "PNG"), "tiny.png", scale=4)) as resp:
                answer = resp.status, await resp.json()
        finally:
            server.stop(signal.SIGTERM)
    assert bundle["status"] == "installed" and bundle["installedModels"] == ["realesrgan-x4plus"]
    assert answer[0] == 202, answer


async def test_sigkill_of_the_server_loses_no_job(tmp_path):
    server = ServerProcess(tmp_path / "data")
    async with aiohttp.ClientSession() as session:
        await server.start(session)
        slow = await submit(session, server.base, noisy_photo(1600, 1200), "slow.png")
        quick = [await submit(session, server.base, encode(astronaut(64)), f"q{i}.jpg") for i in range(2)]
        await wait_job(session, server.base, slow, lambda s: s["status"] == "running")
        async with session.get(server.base + "/api/v1/health") as resp:
            worker = (await resp.json())["workers"][0]["pid"]
        server.stop(signal.SIGKILL)
        # Orphaned workers notice the server is gone (stdin closes) and exit on their own.
        deadline = time.monotonic() + 10
        while not gone(worker) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert gone(worker)

        await server.start(session)
        try:
            done = [await wait_job(session, server.base, j, lambda s: s["status"] == "complete")
                    for j in [slow, *quick]]
        finally:
            server.stop(signal.SIGTERM)
    assert done[0]["attempts"] == 2  # it was running when the server died: re-run
    assert [d["attempts"] for d in done[1:]] == [1, 1]  # queued ones simply resumed


async def test_sigterm_drains_and_the_job_resumes(tmp_path):
    server = ServerProcess(tmp_path / "data")
    async with aiohttp.ClientSession() as session:
        await server.start(session)
        slow = await submit(session, server.base, noisy_photo(1600, 1200), "slow.png")
        await wait_job(session, server.base, slow, lambda s: s["status"] == "running" and s["percent"] >= 6)
        started = time.monotonic()
        assert server.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 20
        await server.start(session)
        try:
            resumed = await job(session, server.base, slow)
            assert resumed["status"] in ("queued", "running")
            done = await wait_job(session, server.base, slow, lambda s: s["status"] == "complete")
        finally:
            server.stop(signal.SIGTERM)
    assert done["attempts"] == 1  # an interruption by shutdown does not count as a failed attempt
