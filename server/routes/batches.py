"""``/api/v1/batches``: submit many images at once, follow them as one, download them as one ZIP."""
from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from server.batch_intake import submit_batch
from server.batch_store import Batch
from server.batches import BATCHES, batch_ended
from server.errors import Conflict, NotFound
from server.events import EventHub, JobEvent
from server.job_lookup import last_event_id
from server.jobs import JobStatus
from server.state import LIFECYCLE, MANAGER, SETTINGS, TOOLS
from server.submissions import SUBMISSIONS
from server.views import iso, snapshot
from server.webhooks import WEBHOOKS
from server.zipstream import stream_zip

routes = web.RouteTableDef()
_BATCH_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@routes.post("/api/v1/batches/{tool}")
async def submit(request: web.Request) -> web.Response:
    service = request.app[SUBMISSIONS]
    service.refuse_when_draining()
    tool = request.app[TOOLS].get(request.match_info["tool"])  # unknown: 400 UNKNOWN_TOOL, nothing read
    batch = await submit_batch(request, tool, service, request.app[BATCHES])
    location = f"/api/v1/batches/{batch.id}"
    body = {"batchId": batch.id, "jobIds": batch.job_ids, "statusUrl": location,
            "progressUrl": f"{location}/progress", "downloadUrl": f"{location}/download"}
    return web.json_response(body, status=202, headers={"Location": location})


@routes.get("/api/v1/batches/{id}")
async def get_batch(request: web.Request) -> web.Response:
    return web.json_response(_view(request, _batch_or_404(request)))


@routes.delete("/api/v1/batches/{id}")
async def cancel_batch(request: web.Request) -> web.Response:
    """Cancel the jobs not finished yet; finished results stay. Idempotent."""
    batch = _batch_or_404(request)
    manager = request.app[MANAGER]
    for job_id in batch.job_ids:
        job = manager.get(job_id)
        if job is not None and not job.status.terminal:
            manager.cancel(job_id)
    return web.json_response(_view(request, request.app[BATCHES].get(batch.id) or batch))


@routes.get("/api/v1/batches/{id}/progress")
async def batch_progress(request: web.Request) -> web.StreamResponse:
    batch = _batch_or_404(request)
    hub, lifecycle = request.app[BATCHES].hub, request.app[LIFECYCLE]
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    async with sse_response(request, headers=headers, ping_interval=request.app[SETTINGS].heartbeat_s) as resp:
        cursor = 0
        for event in first_events(hub, batch.id, last_event_id(request)):
            if await _send(resp, event):
                return resp
            cursor = event.seq
        while not lifecycle.draining and not hub.closed and resp.is_connected():
            for event in await hub.wait_after(batch.id, cursor, timeout=5.0):
                if await _send(resp, event):
                    return resp
                cursor = event.seq
    return resp


@routes.get("/api/v1/batches/{id}/download")
async def download(request: web.Request) -> web.StreamResponse:
    """Every finished result of the batch (its main file), in one ZIP streamed as it is written."""
    batch = _batch_or_404(request)
    entries = _finished_files(request, batch)
    if not entries:
        raise Conflict("No job of this batch has a result to download yet.", code="RESULT_NOT_READY")
    resp = web.StreamResponse(headers={"Content-Type": "application/zip", "Cache-Control": "private",
                                       "Content-Disposition": f'attachment; filename="batch-{batch.id}.zip"'})
    await resp.prepare(request)
    await stream_zip(resp, entries)
    await resp.write_eof()
    return resp


def first_events(hub: EventHub, batch_id: str, last_id: int | None) -> list[JobEvent]:
    """The job streams' rules for a batch: a new connection gets the current state (each job's
    latest event, then the totals, in log order); ``Last-Event-ID`` gets exactly the events after
    it; a reconnect after the end gets the final event again."""
    events = hub.after(batch_id, 0)
    if not events:
        return []
    latest = events[-1]
    if last_id is None or last_id > latest.seq:
        newest: dict[str, JobEvent] = {}
        for event in events:
            newest[event.data.get("jobId", "")] = event  # "" holds the latest totals
        return sorted(newest.values(), key=lambda e: e.seq)
    missed = [e for e in events if e.seq > last_id]
    return missed or ([latest] if batch_ended(latest) else [])


async def _send(resp: EventSourceResponse, event: JobEvent) -> bool:
    """Send one event; True when it was the batch's end and the stream should close."""
    await resp.send(json.dumps(event.data), id=str(event.seq), event=event.type)
    return batch_ended(event)


def _view(request: web.Request, batch: Batch) -> dict[str, Any]:
    manager, webhooks = request.app[MANAGER], request.app[WEBHOOKS]
    jobs = [job for job in (manager.get(job_id) for job_id in batch.job_ids) if job is not None]
    counts = Counter(job.status.value for job in jobs)
    location = f"/api/v1/batches/{batch.id}"
    return {
        "batchId": batch.id, "tool": batch.tool, "status": "done" if batch.finished_at else "running",
        "total": len(batch.job_ids), "counts": {status.value: counts.get(status.value, 0) for status in JobStatus},
        "createdAt": iso(batch.created_at), "finishedAt": iso(batch.finished_at),
        "progressUrl": f"{location}/progress", "downloadUrl": f"{location}/download",
        "webhook": webhooks.view(f"batch:{batch.id}", batch.webhook_url),
        "jobs": [snapshot(job, manager.queue_position(job.id), webhooks.job_view(job)) for job in jobs],
    }


def _finished_files(request: web.Request, batch: Batch) -> list[tuple[str, Any]]:
    """(name in the ZIP, path) of each complete job's main file still on disk; names made unique."""
    manager, entries, used = request.app[MANAGER], [], set()
    for job_id in batch.job_ids:
        job = manager.get(job_id)
        if job is None or job.status != JobStatus.COMPLETE or not job.result:
            continue
        filename = job.result["downloadUrl"].rsplit("/", 1)[-1]
        path = manager.job_dir(job.id) / filename
        if path.is_file():
            entries.append((_unique(filename, used), path))
    return entries


def _unique(name: str, used: set[str]) -> str:
    stem, dot, ext = name.rpartition(".")
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}{dot}{ext}" if dot else f"{name}-{n}"
    used.add(candidate)
    return candidate


def _batch_or_404(request: web.Request) -> Batch:
    batch_id = request.match_info["id"]
    batch = request.app[BATCHES].get(batch_id) if _BATCH_ID.match(batch_id) else None
    if batch is None:
        raise NotFound(f"No batch with id '{batch_id}'.", code="BATCH_NOT_FOUND")
    return batch
