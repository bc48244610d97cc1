"""Drop-in adapter for seed 004 (a synchronous photo-restoration endpoint taking ``imageUrl``).

The seed documents no path; Restora serves it at ``POST /api/v1/restore``. JSON in
(``{"imageUrl": ...}``, optionally ``"outputType": "url" | "base64"``), ``{"output": ...}`` out.
Errors: 400 bad request, 401 missing/bad key (when keys are on), 429 over 100 requests per hour
per key, 500 when the restoration fails. (402 Payment Required does not apply to a local server.)
"""
from __future__ import annotations

import base64

from aiohttp import web

from server.access import check_rate
from server.compat import read_documented, read_file_bytes, remaining_ttl, result_url, start_job, wait_for_end
from server.errors import ApiError, InvalidParams
from server.jobs import JobStatus
from server.state import LIMITS, SETTINGS

routes = web.RouteTableDef()
MAX_BYTES = 5 * 1024 * 1024  # the seed's "Maximum 5MB"
FIELDS = {"outputType": "url"}


@routes.post("/api/v1/restore")
async def restore(request: web.Request) -> web.Response:
    check_rate(request, request.app[LIMITS]["compat-restore"])
    if request.content_type != "application/json":
        raise InvalidParams("Send JSON: {\"imageUrl\": \"https://...\"}.", code="INVALID_CONTENT_TYPE")
    async def check(submission, fields):
        if submission.upload is None:
            raise InvalidParams("imageUrl is required.", code="MISSING_FILE")
        if fields["outputType"] not in ("url", "base64"):
            raise InvalidParams("outputType must be url or base64.", fields=[{"field": "outputType",
                                                                              "message": "not url or base64"}])

    submission, fields = await read_documented(request, (), FIELDS, MAX_BYTES, check)
    output_type = fields["outputType"]
    job = await start_job(request, "restore-photo", submission, {})
    job = await wait_for_end(request.app, job.id, request.app[SETTINGS].sync_timeout_s)
    if job.status != JobStatus.COMPLETE:
        error = job.error or {"code": "TIMEOUT", "message": "The restoration did not finish in time."}
        raise ApiError(f"The restoration failed: {error['message']}", code=error["code"], status=500, jobId=job.id)
    path = job.result["downloadUrl"]
    if output_type == "base64":
        return web.json_response({"output": base64.b64encode(await read_file_bytes(request, job, path)).decode()})
    return web.json_response({"output": result_url(request, path, remaining_ttl(job))})
