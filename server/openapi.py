"""The OpenAPI 3.1 document, generated from the running app: its router (every route it serves,
no more), the tool registry's JSON Schemas, the error-code catalogue and the operation notes in
:mod:`server.openapi_ops`. A route without a note is a bug the test suite catches.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

from aiohttp import web

from pipelines.registry import Registry
from pipelines.tools import Tool
from server.auth import QUERY_KEY_ROUTES
from server.error_codes import ERROR_CODES
from server.jobs import JobKind, JobStatus
from server.openapi_ops import OPERATIONS, Operation

OPENAPI_VERSION = "3.1.0"
_TAG_ORDER = ("Tools", "Jobs", "Batches", "Bundles", "Meta", "Compatibility", "Web")
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_STATUS_TEXT = {200: "OK", 202: "Accepted", 400: "Bad request", 401: "No or bad API key", 403: "Forbidden",
                404: "Not found", 409: "Conflict", 410: "Gone", 413: "Too large", 415: "Unsupported media type",
                422: "Unprocessable", 429: "Too many requests", 500: "Internal error", 503: "Unavailable"}


def served_operations(app: web.Application) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route the app serves; static folders as ``{prefix}/{filename}``."""
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path is None and "prefix" in info:
            path = info["prefix"].rstrip("/") + "/{filename}"
        if path is not None and route.method != "*":
            yield route.method.upper(), _PARAM.sub(r"{\1}", path)


def build_document(app: web.Application, tools: Registry[Tool], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in sorted(set(served_operations(app))):
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, tools)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Restora", "version": version,
                 "description": "Self-hosted photo restoration job server. Submissions answer 202 with a "
                                "job id; progress streams as Server-Sent Events; results are downloads. "
                                "API keys are required only when the server runs with them (see README)."},
        "tags": [{"name": name} for name in _TAG_ORDER],
        "paths": paths,
        "components": {"schemas": _schemas(tools), "securitySchemes": _SECURITY_SCHEMES},
        "security": [{"bearer": []}, {"apiKeyHeader": []}],
    }


def _operation(method: str, path: str, tools: Registry[Tool]) -> dict[str, Any]:
    note = OPERATIONS.get((method, path)) or _head_of(method, path)
    if note is None:
        raise LookupError(f"{method} {path} is served but has no entry in server.openapi_ops.OPERATIONS")
    op: dict[str, Any] = {"operationId": _operation_id(method, path), "summary": note.summary,
                          "tags": [note.tag], "responses": _responses(note, method)}
    parameters = [{"name": name, "in": "path", "required": True, "schema": _path_schema(name, path, tools)}
                  for name in _PARAM.findall(path)]
    if note.sse:
        parameters.append({"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "integer"},
                           "description": "Resume after this event id (browsers send it when they reconnect)."})
    if parameters:
        op["parameters"] = parameters
    if note.body is not None:
        op["requestBody"] = _BODIES[note.body](tools)
    if note.public:
        op["security"] = []
    elif path in QUERY_KEY_ROUTES:
        op["security"] = [{"bearer": []}, {"apiKeyHeader": []}, {"apiKeyQuery": []}]
    if note.description:
        op["description"] = note.description
    return op


def _head_of(method: str, path: str) -> Operation | None:
    """aiohttp answers HEAD on every GET route: the same operation, without the body."""
    get = OPERATIONS.get(("GET", path)) if method == "HEAD" else None
    if get is None:
        return None
    return Operation(f"{get.summary} (headers only)", get.tag, public=get.public, responses=get.responses,
                     content=None)


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return f"{method.lower()}_{words or 'root'}" + ("_slash" if path.endswith("/") and path != "/" else "")


def _path_schema(name: str, path: str, tools: Registry[Tool]) -> dict[str, Any]:
    if name == "tool" and path.startswith(("/api/v1/tools/", "/api/v1/batches/")):
        return {"type": "string", "enum": list(tools)}
    return {"type": "string"}


def _responses(note: Operation, method: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status in note.responses:
        if status < 400:
            out[str(status)] = _success(note, status, method)
        else:
            out[str(status)] = {"description": _STATUS_TEXT.get(status, "Error"),
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return out


def _success(note: Operation, status: int, method: str) -> dict[str, Any]:
    response: dict[str, Any] = {"description": note.success or _STATUS_TEXT.get(status, "OK")}
    if note.sse:
        response["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
        response["description"] += " Event types: " + ", ".join(_SSE_EVENTS) + "."
    elif note.content is not None and method != "HEAD":
        response["content"] = {note.content: {"schema": _content_schema(note)}}
    return response


def _content_schema(note: Operation) -> dict[str, Any]:
    if note.schema:
        return {"$ref": f"#/components/schemas/{note.schema}"}
    if note.content == "application/json":
        return {"type": "object"}
    return {"type": "string", "format": "binary"} if not note.content.startswith("text/") else {"type": "string"}


_SSE_EVENTS = ("progress (phase, stage, percent, queuePosition)", "complete (the result)",
               "failed (error: code, message)", "cancelled")


def _tool_body(tools: Registry[Tool]) -> dict[str, Any]:
    any_tool = {"oneOf": [{"$ref": f"#/components/schemas/{_tool_schema_name(n)}"} for n in tools]}
    multipart = {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary", "description": "The image (or give image_url)."},
        "mask": {"type": "string", "format": "binary",
                 "description": "restore-photo only: white = repair here; the photo's aspect ratio."},
        "settings": {"type": "string", "description": "The tool's parameters as one JSON object string."},
        "image_url": {"type": "string", "format": "uri"}, "webhookUrl": _WEBHOOK_URL},
        "additionalProperties": {"description": "A tool parameter as a form field."}}
    json_body = {"allOf": [any_tool], "properties": {"imageUrl": {"type": "string", "format": "uri"},
                                                     "image_url": {"type": "string", "format": "uri"},
                                                     "webhookUrl": _WEBHOOK_URL}}
    return {"required": True, "content": {"multipart/form-data": {"schema": multipart},
                                          "application/json": {"schema": json_body}}}


_WEBHOOK_URL = {"type": "string", "format": "uri",
                "description": "POSTed to, signed (X-Restora-Signature), when the job (or batch) ends."}


def _batch_body(tools: Registry[Tool]) -> dict[str, Any]:
    multipart = {"type": "object", "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}, "description": "The images."},
        "settings": {"type": "string", "description": "The tool's parameters for every image, as a JSON string."},
        "webhookUrl": _WEBHOOK_URL},
        "additionalProperties": {"description": "A tool parameter as a form field."}}
    json_body = {"type": "object", "required": ["imageUrls"], "properties": {
        "imageUrls": {"type": "array", "items": {"type": "string", "format": "uri"}}, "webhookUrl": _WEBHOOK_URL},
        "additionalProperties": {"description": "A tool parameter, for every image."}}
    return {"required": True, "content": {"multipart/form-data": {"schema": multipart},
                                          "application/json": {"schema": json_body}}}


def _upload_body(field: str) -> Any:
    def body(tools: Registry[Tool]) -> dict[str, Any]:
        schema = {"type": "object", "properties": {field: {"type": "string", "format": "binary"},
                                                   "image_url": {"type": "string", "format": "uri"}},
                  "additionalProperties": {"type": "string"}}
        return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    return body


def _restore_body(tools: Registry[Tool]) -> dict[str, Any]:
    schema = {"type": "object", "required": ["imageUrl"], "additionalProperties": False,
              "properties": {"imageUrl": {"type": "string", "format": "uri"},
                             "outputType": {"type": "string", "enum": ["url", "base64"], "default": "url"}}}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_BODIES = {"tool": _tool_body, "batch": _batch_body, "studio": _upload_body("image_file"), "picwish": _upload_body("image_file"),
           "restore": _restore_body}


def _tool_schema_name(tool: str) -> str:
    return "Params_" + re.sub(r"[^A-Za-z0-9]", "_", tool)


def _schemas(tools: Registry[Tool]) -> dict[str, Any]:
    schemas: dict[str, Any] = {_tool_schema_name(n): tools.get(n).describe()["parameters"] for n in tools}
    schemas["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "enum": sorted(ERROR_CODES),
                                "description": "; ".join(f"{c}: {d}" for c, d in sorted(ERROR_CODES.items()))},
                       "message": {"type": "string", "description": "A sentence for people."},
                       "fields": {"type": "array", "items": {"type": "object"}}},
        "additionalProperties": True}}}
    schemas["JobAccepted"] = {"type": "object", "required": ["jobId"], "properties": {
        "jobId": {"type": "string", "format": "uuid"}, "async": {"type": "boolean"}, "status": {"type": "string"},
        "statusUrl": {"type": "string"}, "progressUrl": {"type": "string"}}}
    schemas["Job"] = {"type": "object", "required": ["jobId", "status"], "properties": {
        "jobId": {"type": "string", "format": "uuid"},
        "kind": {"type": "string", "enum": [kind.value for kind in JobKind]},
        "tool": {"type": "string", "description": "The tool; for a bundle install, its bundle (as before)."},
        "bundle": {"type": ["string", "null"], "description": "The bundle a bundle-install job installs."},
        "status": {"type": "string", "enum": [status.value for status in JobStatus]},
        "phase": {"type": "string"}, "stage": {"type": "string"}, "percent": {"type": "number"},
        "result": {"type": ["object", "null"]}, "error": {"type": ["object", "null"]},
        "webhook": {"type": ["object", "null"], "description": "Its webhook delivery: url, deliveryId, attempts, "
                    "lastStatus, lastError, delivered, lastAttemptAt, nextAttemptAt."}},
        "additionalProperties": True}
    schemas["BatchAccepted"] = {"type": "object", "required": ["batchId", "jobIds"], "properties": {
        "batchId": {"type": "string", "format": "uuid"}, "jobIds": {"type": "array", "items": {"type": "string"}},
        "statusUrl": {"type": "string"}, "progressUrl": {"type": "string"}, "downloadUrl": {"type": "string"}}}
    schemas["Batch"] = {"type": "object", "required": ["batchId", "status", "counts", "jobs"], "properties": {
        "batchId": {"type": "string", "format": "uuid"}, "tool": {"type": "string"},
        "status": {"type": "string", "enum": ["running", "done"]}, "total": {"type": "integer"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "webhook": {"type": ["object", "null"]},
        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}},
        "additionalProperties": True}
    return schemas


_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer rst_..."},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
    "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "key",
                    "description": "Only on the progress streams and downloads (EventSource, links)."},
}
