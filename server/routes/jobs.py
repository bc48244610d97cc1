"""``/api/v1/jobs/{id}``: snapshot, Server-Sent Events progress, cancel; and result downloads."""
from __future__ import annotations

import json
import time

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from server.errors import ApiError, Conflict, Gone, NotFound
from server.job_lookup import content_type, job_or_404, last_event_id
from server.events import EventHub, JobEvent
from server.jobs import JobStatus
from server.state import HUB, LIFECYCLE, MANAGER, SETTINGS, SIGNER
from server.views import snapshot
from server.webhooks import WEBHOOKS

routes = web.RouteTableDef()


@routes.get("/api/v1/jobs/{id}")
async def get_job(request: web.Request) -> web.Response:
    job = job_or_404(request)
    return web.json_response(snapshot(job, request.app[MANAGER].queue_position(job.id),
                                      request.app[WEBHOOKS].job_view(job)))


@routes.delete("/api/v1/jobs/{id}")
async def delete_job(request: web.Request) -> web.Response:
    job = request.app[MANAGER].cancel(job_or_404(request).id)
    return web.json_response(snapshot(job, None, request.app[WEBHOOKS].job_view(job)))


@routes.get("/api/v1/jobs/{id}/progress")
async def job_progress(request: web.Request) -> web.StreamResponse:
    job = job_or_404(request)
    hub, lifecycle = request.app[HUB], request.app[LIFECYCLE]
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    async with sse_response(request, headers=headers, ping_interval=request.app[SETTINGS].heartbeat_s) as resp:
        last_id = last_event_id(request)
        # A reconnect that missed nothing continues after its Last-Event-ID, not from the start.
        cursor = last_id or 0
        for event in first_events(hub, job.id, last_id):
            if await _send(resp, event):
                return resp
            cursor = event.seq
        while not lifecycle.draining and resp.is_connected():
            for event in await hub.wait_after(job.id, cursor, timeout=5.0):
                if await _send(resp, event):
                    return resp
                cursor = event.seq
    return resp


def first_events(hub: EventHub, job_id: str, last_id: int | None) -> list[JobEvent]:
    """What a new connection gets at once: the current state, or exactly the events it missed.

    After the terminal event, a reconnect (which browsers make automatically) gets the terminal
    event again, so an EventSource never waits forever.
    """
    latest = hub.last(job_id)
    if latest is None:
        return []
    if last_id is None or last_id > latest.seq:
        return [latest]
    missed = hub.after(job_id, last_id)
    return missed or ([latest] if latest.terminal else [])


async def _send(resp: EventSourceResponse, event: JobEvent) -> bool:
    """Send one event; True when it was the terminal one and the stream should close."""
    await resp.send(json.dumps(event.data), id=str(event.seq), event=event.type)
    return event.terminal


def _check_signature(request: web.Request) -> None:
    """Signed links (compat routes) work without an API key until they expire."""
    verdict = request.app[SIGNER].check(request.path, request.query.get("expires"), request.query.get("sig"))
    if verdict == "expired":
        raise Gone("This download link has expired; fetch a fresh one from the job's status.", code="LINK_EXPIRED")
    if verdict == "invalid":
        raise ApiError("This download link's signature is not valid.", code="BAD_SIGNATURE", status=403)


@routes.get("/api/v1/download/{id}/{filename}")
async def download(request: web.Request) -> web.FileResponse:
    _check_signature(request)
    job = job_or_404(request)
    filename = request.match_info["filename"]
    if job.status == JobStatus.EXPIRED or (job.expires_at is not None and job.expires_at <= time.time()):
        raise Gone("This result has expired and its files were removed.", code="RESULT_EXPIRED",
                   expiredAt=job.expires_at)
    if job.status != JobStatus.COMPLETE:
        raise Conflict(f"The job is {job.status.value}; it has no result to download.", code="RESULT_NOT_READY")
    # Only names the job itself produced are served; the path is never built from user input alone.
    if filename not in (job.result or {}).get("files", []):
        raise NotFound(f"The job produced no file named '{filename}'.", code="FILE_NOT_FOUND")
    path = request.app[MANAGER].job_dir(job.id) / filename
    if not path.is_file():
        raise Gone("This result's files were removed.", code="RESULT_EXPIRED")
    return web.FileResponse(path, headers={"Content-Disposition": f'inline; filename="{filename}"',
                                           "Content-Type": content_type(filename), "Cache-Control": "private, max-age=3600"})
