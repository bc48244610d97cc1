"""Who may call what: the API-key middleware, and per-key rate limits."""
from __future__ import annotations

from aiohttp import web

from server.auth import ApiKey, presented_key, takes_query_key
from server.errors import ApiError, Handler, TooManyRequests
from server.ratelimit import SlidingWindow
from server.state import KEYS

# The contract and its page are public: they describe the API, never its data.
_PUBLIC = ("/", "/api/v1/health", "/api/v1/openapi.json", "/api/v1/docs")
# /internal/ is for worker hosts, which present the worker token instead (server/routes/internal.py).
_PUBLIC_PREFIXES = ("/static/", "/api/v1/docs/assets/", "/internal/")
API_KEY = web.RequestKey("api_key", ApiKey)


class Unauthorized(ApiError):
    status, code = 401, "UNAUTHORIZED"


def auth_middleware():
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _PUBLIC or request.path.startswith(_PUBLIC_PREFIXES) or _signed_download(request):
            return await handler(request)
        _refuse_key_in_url(request)
        key = presented_key(request)
        record = request.app[KEYS].verify(key) if key else None
        if record is None:
            message = "This server needs an API key" if key is None else "The API key is not valid (or was revoked)"
            raise Unauthorized(f"{message}: send it as 'Authorization: Bearer KEY' or 'X-API-KEY: KEY'. "
                               f"An administrator creates one with `restora keys create NAME`.",
                               headers={"WWW-Authenticate": 'Bearer realm="restora"'})
        request[API_KEY] = record
        return await handler(request)

    return middleware


def _refuse_key_in_url(request: web.Request) -> None:
    """A ``?key=`` where headers could be sent is refused, not ignored: the client learns to stop
    putting its key in URLs (histories, proxies' logs) even when a header key came too."""
    if "key" in request.query and not takes_query_key(request):
        raise Unauthorized("An API key in the URL (?key=) is accepted only by the progress stream and "
                           "downloads; send it as 'Authorization: Bearer KEY' or 'X-API-KEY: KEY'.",
                           headers={"WWW-Authenticate": 'Bearer realm="restora"'})


def _signed_download(request: web.Request) -> bool:
    # Signature validity is checked by the download handler itself (it must answer 410 when expired).
    return request.path.startswith("/api/v1/download/") and "sig" in request.query


def identity(request: web.Request) -> str:
    key: ApiKey | None = request.get(API_KEY)
    return f"key:{key.id}" if key is not None else f"addr:{request.remote}"


def check_rate(request: web.Request, limiter: SlidingWindow | None) -> None:
    if limiter is None:
        return
    wait = limiter.hit(identity(request))
    if wait is not None:
        raise TooManyRequests(f"Rate limit reached ({limiter.limit} requests per hour); try again in {wait:.0f} s.",
                              code="RATE_LIMITED", headers={"Retry-After": str(int(wait))}, retryAfter=int(wait))
