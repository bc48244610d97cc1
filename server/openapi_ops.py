"""What the OpenAPI document says of each route: one entry per (method, path) the app serves.

server/openapi.py walks the router and refuses a route that has no entry here, and the test suite
checks that every entry is a served route: a new route cannot ship undocumented.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    responses: tuple[int, ...] = (200,)
    body: str | None = None  # a request-body kind of server.openapi._BODIES
    content: str | None = "application/json"  # the success response's media type
    schema: str | None = None  # its component schema, where one is named
    success: str | None = None
    sse: bool = False
    public: bool = False  # answered without an API key even when keys are on
    description: str | None = None


_SUBMIT_ERRORS = (400, 401, 409, 413, 415, 422, 429, 503)
_JOB = "Jobs"
_BATCH = "Batches"
_COMPAT = "Compatibility"
_STUDIO = ("3D AI Studio's image-enhance tool (seed 000): multipart `image_file` and its documented fields; "
           "answers `{task_id, created_at}`.")
_REMOVE_BG = "3D AI Studio's remove-bg tool (seed 003): multipart `image_file`, `quality`, `return_mask`."
_STATUS = "3D AI Studio's task status (seeds 000 and 003): `{status, progress, failure_reason, results}`."

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/"): Operation("The web page: upload, live progress, before/after", "Web", content="text/html",
                            public=True),
    ("GET", "/static/{filename}"): Operation("The web page's assets", "Web", (200, 404),
                                             content="application/octet-stream", public=True),
    ("GET", "/api/v1/openapi.json"): Operation("This document", "Meta", public=True),
    ("GET", "/api/v1/docs"): Operation("This document, rendered for people (Swagger UI, served locally)", "Meta",
                                       content="text/html", public=True),
    ("GET", "/api/v1/docs/assets/{filename}"): Operation("The documentation page's assets", "Meta", (200, 404),
                                                         content="application/octet-stream", public=True),
    ("GET", "/api/v1/health"): Operation("Status, devices, workers, queue depth, bundles", "Meta", public=True),
    ("GET", "/api/v1/tools"): Operation("Every tool with its parameters' JSON Schema", "Tools"),
    ("POST", "/api/v1/tools/{tool}"): Operation(
        "Submit a job to a tool", "Tools", (202,) + _SUBMIT_ERRORS, body="tool", schema="JobAccepted",
        success="Queued: the job id, and a Location header to its snapshot.",
        description="A multipart `file` (or `image_url` / `imageUrl`) and the tool's parameters, as one "
                    "`settings` JSON string, as individual fields, or as a JSON body. Unknown parameters are "
                    "refused; nothing is queued on any error."),
    ("GET", "/api/v1/jobs/{id}"): Operation("A job's snapshot", _JOB, (200, 401, 404), schema="Job"),
    ("DELETE", "/api/v1/jobs/{id}"): Operation("Cancel a job and remove its files (idempotent)", _JOB,
                                               (200, 401, 404), schema="Job"),
    ("GET", "/api/v1/jobs/{id}/progress"): Operation(
        "A job's progress as Server-Sent Events", _JOB, (200, 401, 404), sse=True, content="text/event-stream",
        description="Event ids increase per job; reconnect with Last-Event-ID to get exactly what was missed. "
                    "The stream ends after the terminal event."),
    ("GET", "/api/v1/download/{id}/{filename}"): Operation(
        "A file the job produced", _JOB, (200, 401, 403, 404, 409, 410), content="application/octet-stream",
        description="Signed links (`expires`, `sig`) from the compatibility routes work without a key."),
    ("POST", "/api/v1/batches/{tool}"): Operation(
        "Submit many images to a tool at once", _BATCH, (202,) + _SUBMIT_ERRORS, body="batch", schema="BatchAccepted",
        success="Queued: the batch id and its jobs' ids, and a Location header to its snapshot.",
        description="Many multipart `file` parts and one `settings` for all, or JSON `{imageUrls: [...], "
                    "...settings}`. Every item is an ordinary job; all are checked before any is queued, and one "
                    "bad item refuses the batch (its error has the item's `index` and `filename`). A "
                    "`webhookUrl` is POSTed once, when the batch ends."),
    ("GET", "/api/v1/batches/{id}"): Operation("A batch: counts by status and each job's snapshot", _BATCH,
                                               (200, 401, 404), schema="Batch"),
    ("DELETE", "/api/v1/batches/{id}"): Operation("Cancel the batch's unfinished jobs (idempotent)", _BATCH,
                                                  (200, 401, 404), schema="Batch"),
    ("GET", "/api/v1/batches/{id}/progress"): Operation(
        "A batch's progress as Server-Sent Events", _BATCH, (200, 401, 404), sse=True, content="text/event-stream",
        description="Every job's events, their data tagged with `jobId`, and a `batch` event with the totals "
                    "after each change of a job's status. Ids increase per batch; Last-Event-ID replays what was "
                    "missed. The stream ends after the `batch` event whose status is `done`."),
    ("GET", "/api/v1/batches/{id}/download"): Operation(
        "Every finished result of the batch as one ZIP, streamed", _BATCH, (200, 401, 404, 409),
        content="application/zip"),
    ("GET", "/api/v1/bundles"): Operation("Every model bundle with its status", "Bundles"),
    ("GET", "/api/v1/bundles/{name}"): Operation("One bundle", "Bundles", (200, 401, 404)),
    ("POST", "/api/v1/bundles/{name}/install"): Operation(
        "Install a bundle (a job with SSE progress)", "Bundles", (202, 401, 404, 409, 503), schema="JobAccepted"),
    ("DELETE", "/api/v1/bundles/{name}"): Operation("Remove a bundle", "Bundles", (200, 401, 404, 409)),
    ("POST", "/v1/tools/image-enhance"): Operation("Image enhance (3D AI Studio)", _COMPAT,
                                                   (200,) + _SUBMIT_ERRORS, body="studio", description=_STUDIO),
    ("POST", "/v1/tools/image-enhance/"): Operation("Image enhance (3D AI Studio)", _COMPAT,
                                                    (200,) + _SUBMIT_ERRORS, body="studio", description=_STUDIO),
    ("POST", "/v1/tools/remove-bg"): Operation("Remove background (3D AI Studio)", _COMPAT,
                                               (200,) + _SUBMIT_ERRORS, body="studio", description=_REMOVE_BG),
    ("POST", "/v1/tools/remove-bg/"): Operation("Remove background (3D AI Studio)", _COMPAT,
                                                (200,) + _SUBMIT_ERRORS, body="studio", description=_REMOVE_BG),
    ("GET", "/v1/generation-request/{id}/status"): Operation("Task status (3D AI Studio)", _COMPAT, (200, 401, 404),
                                                             description=_STATUS),
    ("GET", "/v1/generation-request/{id}/status/"): Operation("Task status (3D AI Studio)", _COMPAT,
                                                              (200, 401, 404), description=_STATUS),
    ("POST", "/api/tasks/visual/scale"): Operation(
        "Photo enhancement task (PicWish, seed 002)", _COMPAT, (200,) + _SUBMIT_ERRORS, body="picwish",
        description="`sync`, `type`, `scale_factor`, `return_type`; answers in the seed's `{status, message, data}` "
                    "envelope (with `return_type` 3 and `sync` 1: the image bytes)."),
    ("GET", "/api/tasks/visual/scale/{id}"): Operation("Photo enhancement task status (PicWish)", _COMPAT,
                                                       (200, 401, 404)),
    ("POST", "/api/v1/restore"): Operation(
        "Restore a photo synchronously (seed 004)", _COMPAT, (200, 400, 401, 429, 500), body="restore",
        description="JSON `{imageUrl, outputType}` in, `{output}` (a URL or base64) out; 100 requests per hour "
                    "per key."),
}
