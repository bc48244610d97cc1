"""``/api/v1/openapi.json`` (the API contract, generated from the app) and ``/api/v1/docs`` (it,
rendered by Swagger UI from the pinned PyPI package ``swagger-ui-py``, served here: no CDN)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from aiohttp import web

from server.errors import NotFound
from server.openapi import build_document
from server.state import TOOLS

routes = web.RouteTableDef()
# Only what the page loads; the package also ships an editor and source maps we do not serve.
_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
           "favicon-32x32.png": "image/png", "LICENSE": "text/plain"}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Restora API</title>
<link rel="icon" href="/api/v1/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/api/v1/docs/assets/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="/api/v1/docs/assets/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#docs", deepLinking: true});</script>
</body></html>
"""


def _swagger_static() -> Path:
    spec = importlib.util.find_spec("swagger_ui")  # found, not imported: its handlers pull in jinja2
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("The documentation page's assets are not installed (pip package swagger-ui-py).",
                       code="FILE_NOT_FOUND")
    return Path(spec.submodule_search_locations[0]) / "static"


@routes.get("/api/v1/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    document = build_document(request.app, request.app[TOOLS], importlib.metadata.version("restora"))
    return web.json_response(document, headers={"Cache-Control": "no-cache"})


@routes.get("/api/v1/docs")
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=_PAGE, content_type="text/html", headers={"Cache-Control": "no-cache"})


@routes.get("/api/v1/docs/assets/{filename}")
async def docs_asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["filename"]
    if name not in _ASSETS:
        raise NotFound(f"No documentation asset named '{name}'.", code="FILE_NOT_FOUND")
    return web.FileResponse(_swagger_static() / name, headers={"Content-Type": _ASSETS[name],
                                                               "Cache-Control": "public, max-age=86400"})
