"""``/internal/v1``: what worker hosts (server/worker_host.py) call on the API, with a broker only.

Authenticated by the worker token (``DATA_DIR/worker-token``), not by API keys, and bound to an
attempt: a host starts one (``POST .../attempts``) and names it in every read, upload and result
after that; an attempt that is no longer the job's current one is answered 409 STALE_ATTEMPT and
changes nothing. Uploads stream into a partial file that is renamed into place once complete, so a
result file is either whole or absent. A result posted again (its answer was lost) is answered with
the stored state and changes nothing either.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from server.errors import ApiError, Conflict, InvalidParams
from server.executor.base import EventKind, ExecutorEvent, WorkItem
from server.jobs import Job, JobStatus
from server.state import EXECUTOR, MANAGER
from server.worker_token import token_matches

log = logging.getLogger("restora.internal")
routes = web.RouteTableDef()
WORKER_TOKEN = web.AppKey("worker_token", str)
_ATTEMPT = "/internal/v1/jobs/{job_id}/attempts/{attempt:[0-9]+}"
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_FINISHES = {"done": EventKind.DONE, "failed": EventKind.FAILED, "cancelled": EventKind.CANCELLED,
             "interrupted": EventKind.INTERRUPTED}
_CHUNK = 256 * 1024


def _authorize(request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    presented = header[len("Bearer "):] if header.startswith("Bearer ") else None
    if not token_matches(presented, request.app[WORKER_TOKEN]):
        raise ApiError("Worker routes need the worker token (DATA_DIR/worker-token) as 'Authorization: Bearer TOKEN'.",
                       code="UNAUTHORIZED", status=401)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidParams("The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise InvalidParams("The body must be a JSON object.")
    return body


def _current(request: web.Request) -> tuple[Job, int, WorkItem]:
    """The job and its work item, when the attempt in the URL is the one running now."""
    _authorize(request)
    job_id, attempt = request.match_info["job_id"], int(request.match_info["attempt"])
    job = request.app[MANAGER].get(job_id)
    executor = request.app[EXECUTOR]
    item = executor.work_item(job_id)
    if (job is None or job.status != JobStatus.RUNNING or job.attempts != attempt
            or executor.current_attempt(job_id) != attempt or item is None):
        raise Conflict(f"Attempt {attempt} of job {job_id} is not the one running now.", code="STALE_ATTEMPT")
    return job, attempt, item


@routes.post("/internal/v1/jobs/{job_id}/attempts")
async def start_attempt(request: web.Request) -> web.Response:
    _authorize(request)
    body = await _body(request)
    worker, lock = str(body.get("worker") or "")[:200], str(body.get("lock") or "")[:200]
    manager, executor = request.app[MANAGER], request.app[EXECUTOR]
    job_id = request.match_info["job_id"]
    job = manager.get(job_id)
    if job is not None and job.status == JobStatus.RUNNING and lock and executor.attempt_lock(job_id) == lock:
        return _started(job.attempts, executor.work_item(job_id))  # asked again: the answer was lost
    if job is not None and job.status == JobStatus.RUNNING:
        # BullMQ handed the job out again, so the last attempt's host stopped renewing its lock
        # without anyone here noticing yet (its stalled event not read, or this API restarted).
        previous = job.meta.get("worker") or "its worker host"
        executor.attempt_ended(job_id)
        manager.apply(ExecutorEvent(EventKind.LOST, job_id, {"reason": f"{previous} stopped renewing its lock"}))
        job = manager.get(job_id)
    item = executor.work_item(job_id)
    if job is None or job.status != JobStatus.QUEUED or item is None:
        raise Conflict(f"Job {job_id} is not waiting to run (it was cancelled, or it has ended).", code="NOT_RUNNABLE")
    attempt = job.attempts + 1
    executor.attempt_started(job_id, attempt, worker, lock)
    job.meta = {**job.meta, "worker": worker}  # stored with the start event, in the same transaction
    manager.apply(ExecutorEvent(EventKind.STARTED, job_id, {"worker": worker}))
    log.info("job %s attempt %d started on %s", job_id, attempt, worker)
    return _started(attempt, item)


def _started(attempt: int, item: WorkItem) -> web.Response:
    return web.json_response({"attempt": attempt, "job": {
        "tool": item.tool, "plan": item.plan, "inputFormat": item.input_format, "outputStem": item.output_stem,
        "options": item.options, "inputName": Path(item.input_path).name,
        "maskName": Path(item.mask_path).name if item.mask_path else None}})


@routes.get(_ATTEMPT + "/input")
async def read_input(request: web.Request) -> web.StreamResponse:
    _, _, item = _current(request)
    path = item.mask_path if request.query.get("part") == "mask" else item.input_path
    if path is None:
        raise Conflict("This job has no mask.", code="NO_MASK")
    return web.FileResponse(path)


@routes.put(_ATTEMPT + "/files/{name}")
async def upload_file(request: web.Request) -> web.Response:
    job, attempt, _ = _current(request)
    name = request.match_info["name"]
    if not _FILE_NAME.fullmatch(name) or ".." in name:
        raise InvalidParams(f"'{name}' is not a valid result file name.")
    folder = request.app[MANAGER].job_dir(job.id)
    partial = folder / f".{name}.attempt-{attempt}.partial"
    try:
        with open(partial, "wb") as handle:
            while chunk := await request.content.read(_CHUNK):
                handle.write(chunk)
        _current(request)  # still the running attempt once the last byte is in
        os.replace(partial, folder / name)
    finally:
        partial.unlink(missing_ok=True)
    return web.Response(status=204)


@routes.post(_ATTEMPT + "/finish")
async def finish_attempt(request: web.Request) -> web.Response:
    _authorize(request)
    body = await _body(request)
    kind = _FINISHES.get(str(body.get("type")))
    if kind is None:
        raise InvalidParams(f"type must be one of {sorted(_FINISHES)}.")
    replayed = _replayed(request)
    if replayed is not None:
        return replayed
    job, attempt, item = _current(request)
    if kind == EventKind.DONE:
        _check_uploaded(request, job, body)
    data = {k: v for k, v in body.items() if k != "type"}
    request.app[EXECUTOR].attempt_ended(job.id, final=kind != EventKind.INTERRUPTED)
    _apply(request, ExecutorEvent(kind, job.id, data))
    if kind == EventKind.INTERRUPTED:  # the host put it back in BullMQ; count it as waiting here
        request.app[EXECUTOR].submit(item, front=True)
    return web.json_response({"status": job.status.value})


def _replayed(request: web.Request) -> web.Response | None:
    job = request.app[MANAGER].get(request.match_info["job_id"])
    if job is not None and job.status.terminal and job.attempts == int(request.match_info["attempt"]):
        return web.json_response({"status": job.status.value, "replayed": True})
    return None


def _check_uploaded(request: web.Request, job: Job, body: dict[str, Any]) -> None:
    result = body.get("result")
    files = result.get("files") if isinstance(result, dict) else None
    if not isinstance(files, dict) or "output" not in files:
        raise InvalidParams("A done result needs result.files with an 'output' file.")
    folder = request.app[MANAGER].job_dir(job.id)
    missing = [n for n in files.values() if not isinstance(n, str) or not (folder / n).is_file()]
    if missing:
        raise Conflict(f"Result files not uploaded: {missing}.", code="MISSING_UPLOAD")


def _apply(request: web.Request, event: ExecutorEvent) -> None:
    """A result the manager cannot apply fails its job (INTERNAL), never leaves it running."""
    manager = request.app[MANAGER]
    try:
        manager.apply(event)
    except Exception:
        log.exception("could not apply %s from a worker host; the job fails", event)
        manager.apply(ExecutorEvent(EventKind.FAILED, event.job_id, {
            "code": "INTERNAL", "message": "An internal error stopped this job; the server log has details."}))
        raise
