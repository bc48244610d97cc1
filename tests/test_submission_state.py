"""A submission that fails leaves nothing behind; concurrent submissions cannot overshoot the queue."""
from __future__ import annotations

import asyncio
import sqlite3

from server.app import create_app
from tests.conftest import astronaut, encode, submit, wait_until

BOUNDARY = "restora-test-boundary"


async def test_an_upload_whose_job_cannot_be_stored_leaves_no_folder(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    with sqlite3.connect(settings.db_path) as db:  # the database refuses new jobs (as a full disk would)
        db.execute("CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    body = await submit(client, encode(astronaut(64)), expect=500)
    assert body["error"]["code"] == "INTERNAL"
    assert list(settings.jobs_dir.iterdir()) == []
    assert list(settings.tmp_dir.iterdir()) == []


class HeldUpload:
    """A multipart upload whose last bytes are sent only when ``finish()`` is called."""

    def __init__(self, client, image: bytes):
        self.release = asyncio.Event()
        head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"held.jpg\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + image[:100]
        tail = image[100:] + f"\r\n--{BOUNDARY}--\r\n".encode()
        self.response = asyncio.create_task(client.post(
            "/api/v1/tools/restore-photo", data=self._body(head, tail),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}))

    async def _body(self, head: bytes, tail: bytes):
        yield head
        await self.release.wait()
        yield tail

    async def finish(self) -> int:
        self.release.set()
        return (await self.response).status


async def test_uploads_in_flight_hold_their_place_in_the_queue(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0, max_queue=2)))
    image = encode(astronaut(64))
    held = []
    for count in (1, 2):  # two uploads are being read (their files exist), none is queued yet
        held.append(HeldUpload(client, image))
        await wait_until(lambda: asyncio.sleep(0, len(list(settings.tmp_dir.glob("upload-*")))),
                         lambda n, count=count: n == count, what=f"{count} upload(s) in progress")
    body = await submit(client, image, expect=429)
    assert body["error"]["code"] == "QUEUE_FULL"
    assert [await upload.finish() for upload in held] == [202, 202]
    health = await (await client.get("/api/v1/health")).json()
    assert health["queueDepth"] == 2


async def test_a_refused_submission_gives_its_place_back(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0, max_queue=1)))
    for _ in range(3):
        await submit(client, b"not an image", expect=415)
    await submit(client, encode(astronaut(64)))
    assert (await submit(client, encode(astronaut(64)), expect=429))["error"]["code"] == "QUEUE_FULL"
