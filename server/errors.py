"""The API's error hierarchy and the one middleware that turns errors into JSON responses.

Every error a client sees is ``{"error": {"code": ..., "message": ..., ...details}}`` with a stable
code. Handlers and services raise either an :class:`ApiError` or a domain error of the layers
below (parameters, registries, decoding, bundles); :data:`DOMAIN_ERRORS` is the one table that
maps the latter to HTTP, so no handler catches them one by one. Anything else is logged with its
traceback and answered with a generic 500.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from pipelines.imaging.errors import ImageTooLarge, Undecodable
from pipelines.params import ParamError
from pipelines.registry import UnknownName
from server.bundles.maintenance import NotInstalled
from server.bundles.store import InstallInProgress

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


def _unknown_name(exc: UnknownName) -> ApiError:
    # A path names a bundle (404, like any missing resource); a tool is a request field (400).
    status = 404 if exc.kind == "bundle" else 400
    return ApiError(str(exc), code=f"UNKNOWN_{exc.kind.upper()}", status=status, known=exc.known)


def _invalid_params(exc: ParamError) -> ApiError:
    return InvalidParams("Some parameters are invalid: " + str(exc), fields=exc.problems)


def _not_installed(exc: NotInstalled) -> ApiError:
    return NotFound(str(exc), code="BUNDLE_NOT_INSTALLED", bundle=exc.bundle)


# Domain error → its HTTP answer; the first matching row wins, so subclasses come first.
DOMAIN_ERRORS: tuple[tuple[type[Exception], Callable[[Any], ApiError]], ...] = (
    (ParamError, _invalid_params),
    (UnknownName, _unknown_name),
    (ImageTooLarge, lambda e: PayloadTooLarge(e.message, code="IMAGE_TOO_LARGE", **e.details)),
    (Undecodable, lambda e: ApiError(f"The image could not be read: {e.message}", code="UNDECODABLE", status=422)),
    (NotInstalled, _not_installed),
    (InstallInProgress, lambda e: Conflict(str(e), code="INSTALL_RUNNING")),
)


def as_api_error(exc: BaseException) -> ApiError | None:
    """The HTTP form of an API or domain error; None for anything else (a bug: a 500)."""
    if isinstance(exc, ApiError):
        return exc
    for kind, translate in DOMAIN_ERRORS:
        if isinstance(exc, kind):
            return translate(exc)
    return None


def error_response(error: ApiError) -> web.Response:
    return web.json_response(error.payload(), status=error.status, headers=error.headers)


# aiohttp's own HTTP errors (unknown route, wrong method) get stable codes too.
_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, f"HTTP_{exc.status}")
        message = exc.reason if exc.status != 404 else f"No such endpoint: {request.method} {request.path}"
        return error_response(ApiError(message, code=code, status=exc.status))
    except Exception as exc:
        if (error := as_api_error(exc)) is not None:
            return error_response(error)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ApiError("Internal server error; the server log has the details.",
                                       code="INTERNAL", status=500))
