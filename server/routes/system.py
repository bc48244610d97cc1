"""``/api/v1/health`` and the read side of ``/api/v1/bundles``."""
from __future__ import annotations

from aiohttp import web

from server.state import BUNDLES, EXECUTOR, LIFECYCLE, MANAGER

routes = web.RouteTableDef()


@routes.get("/api/v1/health")
async def health(request: web.Request) -> web.Response:
    pool = request.app[EXECUTOR].describe()
    workers = pool["workers"]
    ready = [w for w in workers if w["state"] != "starting"]
    status = "draining" if request.app[LIFECYCLE].draining else "ok" if ready or not workers else "starting"
    broker = pool.get("broker")  # with --broker only: whether Redis answers
    if broker is not None and broker["state"] != "up" and status == "ok":
        status = "broker-unavailable"
    bundles = {b["name"]: b["status"] for b in request.app[BUNDLES].describe_all()}
    return web.json_response({
        "status": status,
        "devices": sorted({w["device"] for w in ready}),
        "workers": workers,
        "queueDepth": request.app[MANAGER].queue_depth(),
        "bundles": bundles,
        "installedBundles": [name for name, state in bundles.items() if state == "installed"],
        **({"broker": broker} if broker is not None else {}),
    })
