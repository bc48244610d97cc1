"""The API's error hierarchy and the one middleware that turns errors into JSON responses.

Every error a client sees is ``{"error": {"code": ..., "message": ..., ...details}}`` with a stable
code. Unexpected exceptions are logged with their traceback and answered with a generic 500.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

log = logging.getLogger("restora.http")


class ApiError(Exception):
    status = 400
    code = "BAD_REQUEST"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None, **details: Any):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.headers = headers or {}
        self.details = details

    def payload(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class InvalidParams(ApiError):
    status, code = 400, "INVALID_PARAMS"


class MalformedRequest(ApiError):
    """The request body could not be parsed (its multipart structure, part headers, encoding)."""
    status, code = 400, "INVALID_REQUEST"


class NotFound(ApiError):
    status, code = 404, "NOT_FOUND"


class Conflict(ApiError):
    status, code = 409, "CONFLICT"


class Gone(ApiError):
    status, code = 410, "GONE"


class PayloadTooLarge(ApiError):
    status, code = 413, "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ApiError):
    status, code = 415, "UNSUPPORTED_MEDIA_TYPE"


class TooManyRequests(ApiError):
    status, code = 429, "TOO_MANY_REQUESTS"


class ServiceUnavailable(ApiError):
    status, code = 503, "SERVICE_UNAVAILABLE"


def error_response(error: ApiError) -> web.Response:
    return web.json_response(error.payload(), status=error.status, headers=error.headers)


# aiohttp's own HTTP errors (unknown route, wrong method) get stable codes too.
_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, f"HTTP_{exc.status}")
        message = exc.reason if exc.status != 404 else f"No such endpoint: {request.method} {request.path}"
        return error_response(ApiError(message, code=code, status=exc.status))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ApiError("Internal server error; the server log has the details.",
                                       code="INTERNAL", status=500))
