"""Batches against the real app: many files or image URLs as ordinary jobs, all checked before
any is queued (a bad item refuses the batch with its index), one SSE stream with replay, one ZIP,
cancel, and one webhook when the batch ends."""
from __future__ import annotations

import io
import json
import zipfile

from aiohttp import FormData, web

from server.app import create_app
from tests.conftest import SseEvent, astronaut, encode, sse_stream, wait_until
from tests.test_webhooks import Receiver


def batch_form(images: list[tuple[str, bytes]], **fields) -> FormData:
    data = FormData()
    for name, image in images:
        data.add_field("file", image, filename=name, content_type="application/octet-stream")
    for key, value in fields.items():
        data.add_field(key, value if isinstance(value, str) else json.dumps(value))
    return data


async def submit_batch(client, images, expect: int = 202, tool: str = "restore-photo", **fields) -> dict:
    resp = await client.post(f"/api/v1/batches/{tool}", data=batch_form(images, **fields))
    body = await resp.json()
    assert resp.status == expect, body
    return body


async def batch_stream(client, batch_id: str, last_event_id: int | None = None) -> list[SseEvent]:
    return [event async for event in sse_stream(client, f"/api/v1/batches/{batch_id}/progress", last_event_id)]


async def batch_of(client, batch_id: str) -> dict:
    return await (await client.get(f"/api/v1/batches/{batch_id}")).json()


async def nothing_queued(client, settings) -> None:
    health = await (await client.get("/api/v1/health")).json()
    assert health["queueDepth"] == 0 and not any(settings.jobs_dir.iterdir())
    assert not list(settings.tmp_dir.glob("upload-*"))


IMAGES = [("a.jpg", encode(astronaut(32))), ("b.png", encode(astronaut(48), "PNG")), ("a.jpg", encode(astronaut(40)))]


async def test_a_batch_runs_every_item_streams_them_and_zips_the_results(client):
    body = await submit_batch(client, IMAGES, settings={"denoise": False})
    batch_id, job_ids = body["batchId"], body["jobIds"]
    assert len(job_ids) == 3 and body["progressUrl"] == f"/api/v1/batches/{batch_id}/progress"
    events = await batch_stream(client, batch_id)
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    final = events[-1]
    assert final.event == "batch" and final.data["status"] == "done"
    assert final.data["counts"] == {"queued": 0, "running": 0, "complete": 3, "failed": 0, "cancelled": 0}
    for job_id in job_ids:  # each job's events, tagged with its id, up to its own end
        own = [e for e in events if e.data.get("jobId") == job_id]
        assert own[-1].event == "complete" and any(e.data["phase"] == "processing" for e in own)
    totals = [e.data["counts"]["complete"] for e in events if e.event == "batch"]
    assert totals == sorted(totals) and totals[-1] == 3
    # Every item is an ordinary job, with the batch's settings.
    snapshot = await batch_of(client, batch_id)
    assert snapshot["status"] == "done" and snapshot["counts"]["complete"] == 3 and snapshot["total"] == 3
    assert [j["jobId"] for j in snapshot["jobs"]] == job_ids
    assert all(j["params"]["denoise"] is False for j in snapshot["jobs"])
    # The ZIP holds each result once, names made unique, bytes as downloaded one by one.
    resp = await client.get(f"/api/v1/batches/{batch_id}/download")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(await resp.read()))
    assert archive.testzip() is None
    assert archive.namelist() == ["a_restored.jpg", "b_restored.png", "a_restored-2.jpg"]
    for job, name in zip(snapshot["jobs"], archive.namelist()):
        single = await (await client.get(job["result"]["downloadUrl"])).read()
        assert archive.read(name) == single


async def test_batch_stream_replays_like_a_job_stream(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    body = await submit_batch(client, IMAGES[:2])
    for job_id in body["jobIds"]:
        await client.delete(f"/api/v1/jobs/{job_id}")
    full = await batch_stream(client, body["batchId"], last_event_id=0)
    assert full[-1].event == "batch" and full[-1].data["status"] == "done"
    assert [e.id for e in full] == list(range(1, len(full) + 1))
    middle = full[len(full) // 2].id
    replay = await batch_stream(client, body["batchId"], last_event_id=middle)
    assert [(e.id, e.event, e.data) for e in replay] == [(e.id, e.event, e.data) for e in full if e.id > middle]
    again = await batch_stream(client, body["batchId"], last_event_id=full[-1].id)
    assert [(e.id, e.event) for e in again] == [(full[-1].id, "batch")]
    # A new connection: each job's latest event, then the totals.
    fresh = await batch_stream(client, body["batchId"])
    assert [(e.event, e.data.get("jobId")) for e in fresh] == \
        [("cancelled", body["jobIds"][0]), ("cancelled", body["jobIds"][1]), ("batch", None)]


async def test_one_bad_item_refuses_the_batch_with_its_index(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    images = [IMAGES[0], ("notes.jpg", b"not an image at all"), IMAGES[1]]
    body = await submit_batch(client, images, expect=415)
    error = body["error"]
    assert (error["code"], error["index"], error["filename"]) == ("UNSUPPORTED_FORMAT", 1, "notes.jpg")
    assert error["message"].startswith("Item 1 (notes.jpg): ")
    await nothing_queued(client, settings)
    # A setting no item accepts: the first item is refused, with the fields of the problem.
    body = await submit_batch(client, IMAGES, expect=400, settings={"noSuchSetting": 1})
    assert body["error"]["code"] == "INVALID_PARAMS" and body["error"]["index"] == 0 and body["error"]["fields"]
    await nothing_queued(client, settings)


async def test_batch_limits(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0, max_batch_items=2)))
    body = await submit_batch(client, IMAGES, expect=413)
    assert (body["error"]["code"], body["error"]["index"], body["error"]["maxItems"]) == ("TOO_MANY_FILES", 2, 2)
    await nothing_queued(client, settings)
    full = await aiohttp_client(create_app(settings.with_overrides(workers=0, max_queue=2)))
    body = await submit_batch(full, IMAGES, expect=429)
    assert (body["error"]["code"], body["error"]["index"]) == ("QUEUE_FULL", 2)
    await nothing_queued(full, settings)
    empty = await full.post("/api/v1/batches/restore-photo", data=batch_form([], settings={}))
    assert empty.status == 400 and (await empty.json())["error"]["code"] == "MISSING_FILE"
    unknown = await full.post("/api/v1/batches/no-such-tool", data=batch_form(IMAGES))
    assert unknown.status == 400 and (await unknown.json())["error"]["code"] == "UNKNOWN_TOOL"
    missing = await full.get("/api/v1/batches/00000000-0000-0000-0000-000000000000")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "BATCH_NOT_FOUND"


async def test_json_list_of_image_urls(aiohttp_client, aiohttp_server, settings):
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=encode(astronaut(int(request.match_info["size"]))))

    app = web.Application()
    app.router.add_get("/{size}.jpg", image)
    images = await aiohttp_server(app)
    urls = [str(images.make_url(f"/{size}.jpg")) for size in (32, 40)]
    # Loopback is refused by default: the refused item is named.
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    resp = await client.post("/api/v1/batches/restore-photo", json={"imageUrls": urls})
    error = (await resp.json())["error"]
    assert resp.status == 400 and (error["code"], error["index"]) == ("URL_NOT_ALLOWED", 0)
    await nothing_queued(client, settings)
    await client.close()
    trusted = await aiohttp_client(create_app(settings.with_overrides(workers=0, allow_private_urls=True)))
    resp = await trusted.post("/api/v1/batches/restore-photo", json={"imageUrls": urls, "denoise": False})
    body = await resp.json()
    assert resp.status == 202 and len(body["jobIds"]) == 2, body
    snapshot = await batch_of(trusted, body["batchId"])
    assert [j["status"] for j in snapshot["jobs"]] == ["queued", "queued"]
    assert all(j["params"]["denoise"] is False for j in snapshot["jobs"])


async def test_delete_cancels_the_rest_and_the_batch_webhook_fires_once(aiohttp_client, aiohttp_server, settings):
    receiver = await Receiver(200).start(aiohttp_server)
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0, allow_private_urls=True)))
    body = await submit_batch(client, IMAGES[:2], webhookUrl=receiver.url)
    first = body["jobIds"][0]
    await client.delete(f"/api/v1/jobs/{first}")  # one ends on its own: no webhook yet
    assert (await batch_of(client, body["batchId"]))["status"] == "running"
    resp = await client.delete(f"/api/v1/batches/{body['batchId']}")
    snapshot = await resp.json()
    assert resp.status == 200 and snapshot["status"] == "done" and snapshot["counts"]["cancelled"] == 2
    hook = await wait_until(lambda: batch_of(client, body["batchId"]), lambda s: s["webhook"]["delivered"],
                            what="the batch webhook")
    assert hook["webhook"]["attempts"] == 1
    [call] = receiver.calls
    payload = json.loads(call["body"])
    assert (payload["event"], payload["batchId"], payload["counts"]["cancelled"]) == \
        ("batch.done", body["batchId"], 2)
    assert [j["jobId"] for j in payload["jobs"]] == body["jobIds"]
    assert all(j["webhook"] is None for j in snapshot["jobs"])  # the items have no webhook of their own
    nothing = await client.get(f"/api/v1/batches/{body['batchId']}/download")
    assert nothing.status == 409 and (await nothing.json())["error"]["code"] == "RESULT_NOT_READY"
    again = await client.delete(f"/api/v1/batches/{body['batchId']}")
    assert again.status == 200 and len(receiver.calls) == 1


async def test_bad_batch_webhook_url_queues_nothing(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    body = await submit_batch(client, IMAGES, expect=400, webhookUrl="http://127.0.0.1:9/hook")
    assert body["error"]["code"] == "INVALID_WEBHOOK_URL"
    await nothing_queued(client, settings)


async def test_an_open_batch_survives_a_restart(aiohttp_client, settings):
    first = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    body = await submit_batch(first, IMAGES[:2])
    await first.close()
    second = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    assert (await batch_of(second, body["batchId"]))["status"] == "running"
    await second.delete(f"/api/v1/batches/{body['batchId']}")
    events = await batch_stream(second, body["batchId"], last_event_id=0)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].data["status"] == "done" and events[-1].data["counts"]["cancelled"] == 2


async def test_a_job_end_the_batch_log_missed_is_logged_at_the_next_start(aiohttp_client, settings):
    """As if the server died after storing a job's end and before its batch logged it."""
    from server.batch_store import BatchStore
    from server.db import Store
    from server.jobs import JobStatus
    from server.views import terminal_data

    first = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    body = await submit_batch(first, IMAGES[:2])
    await first.close()
    last_logged = BatchStore(settings.db_path).get(body["batchId"]).last_seq
    store = Store(settings.db_path)
    for job_id in body["jobIds"]:
        job = store.get_job(job_id)
        job.status, job.phase, job.stage, job.last_event_id = JobStatus.CANCELLED, "cancelled", "Cancelled", \
            job.last_event_id + 1
        store.save_job(job, event=(job.last_event_id, "cancelled", terminal_data(job)))
    store.close()
    second = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    events = await batch_stream(second, body["batchId"], last_event_id=last_logged)
    assert [(e.event, e.data.get("jobId")) for e in events] == \
        [("cancelled", body["jobIds"][0]), ("cancelled", body["jobIds"][1]), ("batch", None)]
    assert events[-1].data["status"] == "done" and events[-1].data["counts"]["cancelled"] == 2
    assert (await batch_of(second, body["batchId"]))["status"] == "done"


async def test_batches_need_a_key_and_take_it_in_the_url_only_where_browsers_need_it(aiohttp_client, settings):
    from server.auth import KeyStore

    key, _ = KeyStore(settings.db_path).create("me")
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0, auth="on")))
    denied = await client.post("/api/v1/batches/restore-photo", data=batch_form(IMAGES))
    assert denied.status == 401
    resp = await client.post("/api/v1/batches/restore-photo", data=batch_form(IMAGES), headers={"X-API-KEY": key})
    batch_id = (await resp.json())["batchId"]
    assert (await client.delete(f"/api/v1/batches/{batch_id}", headers={"X-API-KEY": key})).status == 200
    async with client.get(f"/api/v1/batches/{batch_id}/progress?key={key}") as stream:  # EventSource
        assert stream.status == 200 and b"event: batch" in await stream.read()
    download = await client.get(f"/api/v1/batches/{batch_id}/download?key={key}")  # <a href>
    assert download.status == 409  # let in: nothing finished to zip
    refused = await client.get(f"/api/v1/batches/{batch_id}?key={key}")
    assert refused.status == 401 and "?key=" in (await refused.json())["error"]["message"]


async def test_a_job_that_cannot_be_stored_takes_the_batch_back(aiohttp_client, settings):
    """The disk fails on the second item: the first, already queued, is cancelled; nothing runs."""
    from server.state import MANAGER

    app = create_app(settings.with_overrides(workers=0))
    client = await aiohttp_client(app)
    manager, created = app[MANAGER], []
    real_create = manager.create

    def failing_create(job, **kwargs):
        if created:
            raise OSError("disk full")
        created.append(real_create(job, **kwargs))
        return created[-1]

    manager.create = failing_create
    resp = await client.post("/api/v1/batches/restore-photo", data=batch_form(IMAGES))
    assert resp.status == 500 and (await resp.json())["error"]["code"] == "INTERNAL"
    [first] = created
    assert (await (await client.get(f"/api/v1/jobs/{first.id}")).json())["status"] == "cancelled"
    assert (await (await client.get("/api/v1/health")).json())["queueDepth"] == 0
