"""Every error code a client can meet, with what it means: the OpenAPI document lists them, and a
test checks that every code the source raises is here (so docs and code cannot drift apart).

Codes are answered as ``{"error": {"code", "message", ...}}``, or appear in a failed job's
``error`` (those marked "job").
"""
from __future__ import annotations

ERROR_CODES: dict[str, str] = {
    # Requests: 400
    "BAD_REQUEST": "The request is not valid.",
    "INVALID_REQUEST": "The request body could not be parsed (multipart structure, part headers, encoding).",
    "INVALID_JSON": "A JSON body or `settings` field is not a valid JSON object.",
    "INVALID_PARAMS": "One or more parameters are invalid; `fields` lists each with a reason.",
    "INVALID_CONTENT_TYPE": "The endpoint takes another content type.",
    "INVALID_URL": "The image or webhook URL is empty or malformed.",
    "URL_NOT_ALLOWED": "The URL points to a non-public address or an unsupported scheme.",
    "INVALID_WEBHOOK_URL": "The webhook URL is malformed, not http(s), or points to a non-public address.",
    "BAD_MULTIPART": "Nested multipart bodies are not supported.",
    "MISSING_FILE": "No image was sent (no `file` part and no image URL).",
    "TOO_MANY_FILES": "More than one image (or mask) in one request; a batch over its limit (413).",
    "TOO_MANY_FIELDS": "Too many form fields.",
    "TOO_MANY_SOURCES": "Both a file and an image URL were sent.",
    "FIELD_TOO_LONG": "A form field is longer than 64 KiB.",
    "BODY_TOO_LARGE": "The JSON body is too large.",
    "UNKNOWN_TOOL": "No tool has that name; `known` lists them.",
    "INVALID_MASK": "The repair mask could not be read.",
    "MASK_ASPECT_MISMATCH": "The mask's aspect ratio differs from the photo's.",
    "MASK_TOO_LARGE": "The mask has far more pixels than the photo.",
    "MASK_NOT_ACCEPTED": "This tool takes no mask.",
    "URL_FETCH_FAILED": "The image URL could not be fetched.",
    # Access: 401, 403, 429
    "UNAUTHORIZED": "A valid API key is required (Authorization: Bearer, or X-API-KEY).",
    "BAD_SIGNATURE": "A signed download link's signature is not valid.",
    "RATE_LIMITED": "Too many requests for this key; see Retry-After.",
    "TOO_MANY_REQUESTS": "Too many requests; see Retry-After.",
    "QUEUE_FULL": "The job queue is full; see Retry-After.",
    # Resources: 404, 405, 409, 410
    "NOT_FOUND": "No such endpoint.",
    "CONFLICT": "The request conflicts with the resource's state.",
    "GONE": "The resource is gone.",
    "METHOD_NOT_ALLOWED": "The endpoint does not take this method.",
    "JOB_NOT_FOUND": "No job has that id.",
    "BATCH_NOT_FOUND": "No batch has that id.",
    "TASK_NOT_FOUND": "No task has that id (compatibility routes).",
    "FILE_NOT_FOUND": "The job produced no file of that name.",
    "UNKNOWN_BUNDLE": "No bundle has that name; `known` lists them.",
    "BUNDLE_NOT_INSTALLED": "The step needs a bundle that is not installed; `install` says how.",
    "MODEL_NOT_INSTALLED": "The step needs a model of a bundle that is not installed.",
    "INSTALL_RUNNING": "An install of this bundle is running.",
    "RESULT_NOT_READY": "The job has no result (yet).",
    "RESULT_EXPIRED": "The result has expired and its files were removed.",
    "LINK_EXPIRED": "The signed download link has expired.",
    # Payload: 413, 415, 422
    "PAYLOAD_TOO_LARGE": "The request body is too large.",
    "UNSUPPORTED_MEDIA_TYPE": "The body's media type is not supported.",
    "UPLOAD_TOO_LARGE": "The image is larger than the upload limit.",
    "IMAGE_TOO_LARGE": "The image has more pixels than the limit.",
    "OUTPUT_TOO_LARGE": "The result would be larger than the output limit; choose a smaller scale.",
    "EMPTY_FILE": "The uploaded file is empty.",
    "UNSUPPORTED_FORMAT": "The file is not an image in a supported format.",
    "UNDECODABLE": "The image claims a format but cannot be decoded.",
    # Server: 500, 503
    "INTERNAL": "An internal error; the server log has the details (also job).",
    "SHUTTING_DOWN": "The server is shutting down; see Retry-After.",
    "BUNDLE_BROKEN": "The bundle's files fail verification; reinstall it.",
    "SERVICE_UNAVAILABLE": "The service is not available right now.",
    "BROKER_UNAVAILABLE": "Redis (the broker for worker hosts) cannot be reached; see Retry-After.",
    # Internal worker routes (/internal/v1, worker hosts only): 409
    "STALE_ATTEMPT": "The worker's attempt is not the job's current one.",
    "NOT_RUNNABLE": "The job is not waiting to run (cancelled or ended).",
    "NO_MASK": "The job has no mask to fetch.",
    "MISSING_UPLOAD": "A result file the worker reported was not uploaded.",
    # Jobs (a failed job's `error.code`)
    "CANCELLED": "The job was cancelled (job).",
    "INTERRUPTED": "The job or install was interrupted (job).",
    "WORKER_CRASHED": "The worker running the job died more often than the retry limit (job).",
    "OUT_OF_MEMORY": "The job ran out of memory (job).",
    "TIMEOUT": "The job did not finish in time (job).",
    "PIPELINE_ERROR": "A step failed (job).",
    "UNKNOWN_MODEL": "A step asked for a model no bundle provides (job).",
    "NO_MODEL_PROVIDER": "A step needing models ran without a model provider (job).",
    # Bundle installs (an install job's `error.code`)
    "INSTALL_FAILED": "The install failed (job).",
    "NETWORK_UNAVAILABLE": "A model could not be downloaded: no network (job).",
    "MODEL_FILE_NOT_FOUND": "The local install source lacks a model's file (job).",
    "NOTHING_TO_INSTALL": "The bundle has no model this install can fetch (job).",
    "CONVERSION_FAILED": "Converting a model to its official format failed (job).",
}
