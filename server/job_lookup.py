"""Finding a request's job, the content type of its files and a stream's Last-Event-ID: shared by
the native, batch and compatibility routes, so route modules need not import each other."""
from __future__ import annotations

import re

from aiohttp import web

from server.errors import NotFound
from server.jobs import Job
from server.state import MANAGER

_CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif",
                  "tif": "image/tiff"}  # explicit: the platform's mimetypes table may lack webp/avif
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def content_type(filename: str) -> str:
    return _CONTENT_TYPES.get(filename.rsplit(".", 1)[-1], "application/octet-stream")


def last_event_id(request: web.Request) -> int | None:
    """The id a reconnecting EventSource sends (or ``?lastEventId=``); None when absent or not a number."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def job_or_404(request: web.Request) -> Job:
    job_id = request.match_info["id"]
    job = request.app[MANAGER].get(job_id) if _JOB_ID.match(job_id) else None
    if job is None:
        raise NotFound(f"No job with id '{job_id}'.", code="JOB_NOT_FOUND")
    return job
