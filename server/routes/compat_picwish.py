"""Drop-in adapter for seed 002 (PicWish photo enhancement: /api/tasks/visual/scale).

Responses use the seed's envelope ``{status, message, data}`` with the HTTP status equal to
``status``. State codes: 1 done; 2 queued, 3 processing (>1: processing); -1 failed, -2 cancelled,
-3 expired (<0: failed). Result URLs are valid for 1 hour, as documented.
"""
from __future__ import annotations

import base64
from typing import Any, Awaitable, Callable

from aiohttp import web

from pipelines.imaging.sniff import ImageHeader
from server.compat import read_documented, read_file_bytes, result_url, start_job, wait_for_end
from server.errors import InvalidParams, PayloadTooLarge, UnsupportedMediaType, as_api_error
from server.jobs import Job, JobStatus
from server.job_lookup import content_type, job_or_404
from server.state import SETTINGS

routes = web.RouteTableDef()
MAX_BYTES = 20 * 1024 * 1024
MAX_SIDE = 4096
FORMATS = ("jpeg", "png", "bmp", "webp", "tiff", "raw")  # the seed's jpg/jpeg/bmp/png/webp/tiff/raw...
URL_TTL_S = 3600.0
FIELDS = {"sync": "0", "type": "clean", "scale_factor": "", "return_type": "1"}
_STATE = {JobStatus.COMPLETE: 1, JobStatus.QUEUED: 2, JobStatus.RUNNING: 3, JobStatus.FAILED: -1,
          JobStatus.CANCELLED: -2, JobStatus.EXPIRED: -3}


def _enveloped(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Errors in the seed's envelope, so PicWish clients read ``status`` and ``message``."""
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            if (error := as_api_error(exc)) is None:
                raise  # a bug: the error middleware logs it and answers 500
            body = {"status": error.status, "message": error.message, "error": error.payload()["error"]}
            return web.json_response(body, status=error.status, headers=error.headers)
    return wrapper


def _choice(fields: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = str(fields[name]).strip()
    if value not in allowed:
        raise InvalidParams(f"{name} must be one of {', '.join(a or 'empty' for a in allowed)}.",
                            fields=[{"field": name, "message": "not an allowed value"}])
    return value


@routes.post("/api/tasks/visual/scale")
@_enveloped
async def create_task(request: web.Request) -> web.StreamResponse:
    async def check(submission, fields):
        for name, allowed in (("sync", ("0", "1")), ("type", ("clean", "face")),
                              ("scale_factor", ("", "1", "2", "4")),
                              ("return_type", ("1", "2", "3") if str(fields["sync"]) == "1" else ("1", "2"))):
            fields[name] = _choice(fields, name, allowed)
        if submission.upload is None:
            raise InvalidParams("Give image_url or image_file.", code="MISSING_FILE")

    submission, fields = await read_documented(request, ("image_file",), FIELDS, MAX_BYTES, check)
    sync, kind, scale, return_type = fields["sync"], fields["type"], fields["scale_factor"], fields["return_type"]
    params = {"mode": "enhance", "type": kind, "scale": scale or "auto"}
    job = await start_job(request, "enhance", submission, params, meta={"returnType": int(return_type)},
                          check_header=_check_limits)
    if sync == "0":
        return web.json_response({"status": 200, "message": "success", "data": {"task_id": job.id}})
    job = await wait_for_end(request.app, job.id, request.app[SETTINGS].sync_timeout_s)
    if return_type == "3" and job.status == JobStatus.COMPLETE:
        path = job.result["downloadUrl"]
        return web.Response(body=await read_file_bytes(request, job, path), content_type=content_type(path))
    return web.json_response({"status": 200, "message": "success", "data": await _data(request, job)})


@routes.get("/api/tasks/visual/scale/{id}")
@_enveloped
async def get_task(request: web.Request) -> web.Response:
    job = job_or_404(request)
    return web.json_response({"status": 200, "message": "success", "data": await _data(request, job)})


def _check_limits(header: ImageHeader) -> None:
    if header.format not in FORMATS:
        raise UnsupportedMediaType(f"The {header.format} format is not accepted here (jpg, png, bmp, webp, tiff).",
                                   code="UNSUPPORTED_FORMAT")
    if max(header.width, header.height) > MAX_SIDE:
        raise PayloadTooLarge(f"The image is {header.width}×{header.height}; at most {MAX_SIDE}×{MAX_SIDE} "
                              f"is accepted.", code="IMAGE_TOO_LARGE")


async def _data(request: web.Request, job: Job) -> dict[str, Any]:
    done = job.status == JobStatus.COMPLETE
    return {"task_id": job.id, "created_at": int(job.created_at),
            "processed_at": int(job.started_at) if job.started_at else None,
            "completed_at": int(job.finished_at) if job.finished_at else None,
            "image": await _image(request, job) if done else None,
            "progress": 100 if done else int(job.percent), "state": _STATE[job.status],
            **({"message": (job.error or {}).get("message")} if job.status == JobStatus.FAILED else {})}


async def _image(request: web.Request, job: Job) -> str:
    path = job.result["downloadUrl"]
    if job.meta.get("returnType") == 2:
        return base64.b64encode(await read_file_bytes(request, job, path)).decode()
    return result_url(request, path, URL_TTL_S)
