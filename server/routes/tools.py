"""``/api/v1/tools``: list tools, and submit a job to one (202 with a job id)."""
from __future__ import annotations

from aiohttp import web

from server.state import TOOLS
from server.submissions import SUBMISSIONS

routes = web.RouteTableDef()


@routes.get("/api/v1/tools")
async def list_tools(request: web.Request) -> web.Response:
    tools = request.app[TOOLS]
    return web.json_response({"tools": [tools.get(name).describe() for name in tools]})


@routes.post("/api/v1/tools/{tool}")
async def submit(request: web.Request) -> web.Response:
    service = request.app[SUBMISSIONS]
    service.refuse_when_draining()
    tool = request.app[TOOLS].get(request.match_info["tool"])  # unknown: 400 UNKNOWN_TOOL, nothing read
    job = await service.submit(tool, await service.read(request, mask_for=tool))
    location = f"/api/v1/jobs/{job.id}"
    body = {"jobId": job.id, "async": True, "status": job.status.value,
            "statusUrl": location, "progressUrl": f"{location}/progress"}
    return web.json_response(body, status=202, headers={"Location": location})
