"""Drop-in adapter for seeds 000 and 003 (3D AI Studio's image-enhance and remove-bg tools)."""
from __future__ import annotations

from aiohttp import web

from server.compat import read_documented, remaining_ttl, result_url, start_job
from server.errors import NotFound
from server.jobs import Job, JobKind, JobStatus
from server.job_lookup import job_or_404
from server.views import iso

routes = web.RouteTableDef()
FILE_FIELDS = ("image_file",)
_STATUS = {JobStatus.QUEUED: "PENDING", JobStatus.RUNNING: "IN_PROGRESS", JobStatus.COMPLETE: "FINISHED",
           JobStatus.FAILED: "FAILED", JobStatus.CANCELLED: "CANCELLED", JobStatus.EXPIRED: "EXPIRED"}
ENHANCE_FIELDS = {"enhance": True, "mode": "enhance", "remove_bg": False, "remove_bg_quality": "medium"}
REMOVE_BG_FIELDS = {"quality": "medium", "return_mask": False}


def _accepted(job: Job) -> web.Response:
    return web.json_response({"task_id": job.id, "created_at": iso(job.created_at)})


@routes.post("/v1/tools/image-enhance/")
@routes.post("/v1/tools/image-enhance")
async def image_enhance(request: web.Request) -> web.Response:
    submission, fields = await read_documented(request, FILE_FIELDS, ENHANCE_FIELDS)
    return _accepted(await start_job(request, "enhance", submission, fields))


@routes.post("/v1/tools/remove-bg/")
@routes.post("/v1/tools/remove-bg")
async def remove_bg(request: web.Request) -> web.Response:
    submission, fields = await read_documented(request, FILE_FIELDS, REMOVE_BG_FIELDS)
    params = {"quality": fields["quality"], "returnMask": fields["return_mask"]}
    return _accepted(await start_job(request, "remove-bg", submission, params))


@routes.get("/v1/generation-request/{id}/status/")
@routes.get("/v1/generation-request/{id}/status")
async def status(request: web.Request) -> web.Response:
    try:
        job = job_or_404(request)
    except NotFound:
        raise NotFound(f"No task with id '{request.match_info['id']}'.", code="TASK_NOT_FOUND") from None
    if job.kind != JobKind.TOOL:
        raise NotFound(f"No task with id '{job.id}'.", code="TASK_NOT_FOUND")
    body = {"status": _STATUS[job.status], "progress": 100 if job.status == JobStatus.COMPLETE else int(job.percent),
            "failure_reason": (job.error or {}).get("message"), "results": _results(request, job)}
    return web.json_response(body)


def _results(request: web.Request, job: Job) -> list[dict]:
    if job.status != JobStatus.COMPLETE or not job.result:
        return []
    ttl = remaining_ttl(job)  # results expire with the job (24 h by default)
    out = []
    for item in job.result["results"]:
        metadata = {"result_type": item["resultType"]}
        if job.tool == "remove-bg":
            metadata["quality"] = job.params.get("quality")
        out.append({"asset": result_url(request, item["downloadUrl"], ttl), "asset_type": "EDITED_IMAGE",
                    "metadata": metadata})
    return out
