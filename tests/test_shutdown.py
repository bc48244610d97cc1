"""SIGTERM on a real `restora serve`: new work is answered 503 while running steps drain."""
from __future__ import annotations

import asyncio
import signal
import sqlite3
import textwrap
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import astronaut, encode, form, wait_until
from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow
BOUNDARY = "restora-shutdown-boundary"

# The real worker, whose job holds its step until the test creates the file RELEASE: the drain
# lasts exactly as long as the test needs.
_HELD_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from server.executor import worker

    RELEASE = Path(sys.argv.pop(1))

    def held_run(self, job):
        self.channel.send("progress", jobId=job["job_id"], stage="Holding...", percent=10)
        while not RELEASE.exists():
            time.sleep(0.05)
        self.channel.send("interrupted" if self.stopping.is_set() else "cancelled", jobId=job["job_id"])

    worker.Worker._run = held_run
    worker.main()
""")


def held_worker_server(tmp_path: Path) -> tuple[ServerProcess, Path]:
    code, release = tmp_path / "held_worker.py", tmp_path / "release"
    code.write_text(_HELD_WORKER)
    prelude = (f"import sys\nfrom pathlib import Path\nfrom server.executor import pool\n"
               f"pool.WORKER_COMMAND = (sys.executable, '-c', Path({str(code)!r}).read_text(), {str(release)!r})")
    return ServerProcess(tmp_path / "data", prelude=prelude), release


async def get_json(session, url):
    async with session.get(url) as resp:
        return await resp.json()


async def start_held_job(session, server) -> str:
    async with session.post(server.base + "/api/v1/tools/restore-photo", data=form(encode(astronaut(32)))) as resp:
        assert resp.status == 202
        job_id = (await resp.json())["jobId"]
    await wait_until(lambda: get_json(session, f"{server.base}/api/v1/jobs/{job_id}"),
                     lambda s: s["stage"] == "Holding...", what="the job to hold its step")
    return job_id


async def test_new_work_during_the_drain_is_answered_503(tmp_path):
    server, release = held_worker_server(tmp_path)
    async with aiohttp.ClientSession() as session:
        await server.start(session)
        job_id = await start_held_job(session, server)
        server.proc.send_signal(signal.SIGTERM)
        health = await wait_until(lambda: get_json(session, server.base + "/api/v1/health"),
                                  lambda h: h["status"] == "draining", what="health to say draining")
        assert health["workers"][0]["jobId"] == job_id  # the step is still running: this is the drain
        async with session.post(server.base + "/api/v1/tools/restore-photo",
                                data=form(encode(astronaut(32)))) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"]
            assert (await resp.json())["error"]["code"] == "SHUTTING_DOWN"
        release.touch()
        assert await asyncio.to_thread(server.proc.wait, 60) == 0
    # The held step was interrupted, not failed: its job waits for the next start, the attempt uncounted.
    with sqlite3.connect(server.data_dir / "restora.sqlite3") as db:
        assert db.execute("SELECT status, attempts FROM jobs").fetchall() == [("queued", 0)]


class HeldUpload:
    """A multipart upload whose last bytes are sent only when ``finish()`` is called."""

    def __init__(self, session, url: str, image: bytes):
        self.release = asyncio.Event()
        head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"held.jpg\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + image[:100]
        tail = image[100:] + f"\r\n--{BOUNDARY}--\r\n".encode()
        self.response = asyncio.create_task(self._post(session, url, head, tail))

    async def _post(self, session, url, head, tail):
        async with session.post(url, data=self._body(head, tail),
                                headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}) as resp:
            return resp.status, dict(resp.headers), await resp.json()

    async def _body(self, head: bytes, tail: bytes):
        yield head
        await self.release.wait()
        yield tail

    async def finish(self):
        self.release.set()
        return await self.response


async def test_an_upload_in_flight_at_sigterm_is_read_and_answered_503(tmp_path):
    server = ServerProcess(tmp_path / "data", workers=0)  # no step to drain: only the upload holds it open
    async with aiohttp.ClientSession() as session:
        await server.start(session)
        upload = HeldUpload(session, server.base + "/api/v1/tools/restore-photo", encode(astronaut(64)))
        tmp = server.data_dir / "tmp"
        await wait_until(lambda: asyncio.sleep(0, list(tmp.glob("upload-*"))), bool, what="the upload to begin")
        server.proc.send_signal(signal.SIGTERM)
        await wait_until(lambda: get_json(session, server.base + "/api/v1/health"),
                         lambda h: h["status"] == "draining", what="health to say draining")
        status, headers, body = await upload.finish()
        assert status == 503 and headers["Retry-After"] and body["error"]["code"] == "SHUTTING_DOWN"
        # Nothing waits for idle keep-alive connections: the server exits once the upload is answered.
        assert await asyncio.to_thread(server.proc.wait, 60) == 0
    assert list((server.data_dir / "jobs").iterdir()) == [] and list(tmp.glob("upload-*")) == []
