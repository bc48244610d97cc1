"""``/api/v1/bundles``: list, inspect, install (a job with SSE progress), remove."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid

from aiohttp import web

from server.bundles.catalog import BundleCatalog
from server.bundles.installer import INSTALL_FAILURES, Installer, Progress
from server.bundles.maintenance import remove_bundle
from server.bundles.manifest import Manifest
from server.bundles.progressbar import Speedometer, describe
from server.bundles.store import INSTALLING
from server.errors import Conflict
from server.executor.base import EventKind, ExecutorEvent
from server.jobs import Job, JobKind
from server.manager import JobManager
from server.state import BUNDLES, INSTALLS, MANAGER
from server.submissions import SUBMISSIONS

log = logging.getLogger("restora.bundles")
routes = web.RouteTableDef()
_FAILURES = INSTALL_FAILURES + (OSError,)


def _manifest(request: web.Request) -> Manifest:
    return request.app[BUNDLES].get(request.match_info["name"])  # unknown: 404 UNKNOWN_BUNDLE


@routes.get("/api/v1/bundles")
async def list_bundles(request: web.Request) -> web.Response:
    return web.json_response({"bundles": request.app[BUNDLES].describe_all()})


@routes.get("/api/v1/bundles/{name}")
async def get_bundle(request: web.Request) -> web.Response:
    return web.json_response(request.app[BUNDLES].describe(_manifest(request).name))


@routes.post("/api/v1/bundles/{name}/install")
async def install_bundle(request: web.Request) -> web.Response:
    manifest = _manifest(request)
    request.app[SUBMISSIONS].refuse_when_draining()
    installs: dict[str, asyncio.Task] = request.app[INSTALLS]
    if manifest.name in installs or request.app[BUNDLES].state(manifest.name).status == INSTALLING:
        raise Conflict(f"An install of {manifest.name} is already running.", code="INSTALL_RUNNING")
    job = Job(id=str(uuid.uuid4()), kind=JobKind.BUNDLE_INSTALL, tool="", bundle=manifest.name, params={},
              stage=f"Installing {manifest.name}")
    request.app[MANAGER].create(job, in_process=True)
    task = asyncio.create_task(_run_install(request.app[BUNDLES], request.app[MANAGER], manifest, job.id))
    installs[manifest.name] = task
    task.add_done_callback(lambda _: installs.pop(manifest.name, None))
    location = f"/api/v1/jobs/{job.id}"
    return web.json_response({"jobId": job.id, "async": True, "statusUrl": location,
                              "progressUrl": f"{location}/progress"}, status=202, headers={"Location": location})


@routes.delete("/api/v1/bundles/{name}")
async def delete_bundle(request: web.Request) -> web.Response:
    manifest = _manifest(request)
    if manifest.name in request.app[INSTALLS]:
        raise Conflict(f"An install of {manifest.name} is running; remove it when it has finished.",
                       code="INSTALL_RUNNING")
    # Not installed: 404 BUNDLE_NOT_INSTALLED; being installed elsewhere: 409 INSTALL_RUNNING.
    removed = await asyncio.to_thread(remove_bundle, request.app[BUNDLES], manifest.name)
    return web.json_response({**request.app[BUNDLES].describe(manifest.name), "removedFiles": removed})


async def _run_install(catalog: BundleCatalog, manager: JobManager, manifest: Manifest, job_id: str) -> None:
    sink = _JobProgress(manager, manifest, job_id)
    try:
        record = await Installer(catalog).install(manifest.name, progress=sink)
    except _FAILURES as exc:
        code = getattr(exc, "code", "INSTALL_FAILED")
        manager.apply(ExecutorEvent(EventKind.FAILED, job_id, {"code": code, "message": str(exc)}))
        return
    except asyncio.CancelledError:
        manager.apply(ExecutorEvent(EventKind.FAILED, job_id, {
            "code": "INTERRUPTED", "message": "The install was interrupted; run it again to resume."}))
        raise
    except Exception:  # report, never swallow: else the job would stay "running" until a restart
        log.exception("install of %s failed", manifest.name)
        manager.apply(ExecutorEvent(EventKind.FAILED, job_id, {
            "code": "INTERNAL", "message": "An internal error stopped this install; the server log has details."}))
        return
    result = {"bundle": manifest.name, "version": record["version"], "models": sorted(record["models"]),
              "status": catalog.state(manifest.name).status}
    manager.apply(ExecutorEvent(EventKind.DONE, job_id, {"result": result}))


class _JobProgress:
    """Installer progress as job progress: overall percent weighted by model sizes, ~4 updates/s."""

    def __init__(self, manager: JobManager, manifest: Manifest, job_id: str):
        self.manager, self.job_id = manager, job_id
        self.sizes = [m.display_size or 1 for m in manifest.models]
        self.last = 0.0
        self.speed = Speedometer()
        self.current: tuple[str, str] | None = None

    def __call__(self, p: Progress) -> None:
        if (p.model, p.stage) != self.current:
            self.current = (p.model, p.stage)
            self.speed.reset(p.done)
        now = time.monotonic()
        if now - self.last < 0.25 and p.stage in ("downloading", "copying"):
            return
        self.last = now
        fraction = min(1.0, p.done / p.total) if p.total else 0.0
        # Models install in manifest order: those before this one are done.
        done = sum(self.sizes[: p.index - 1]) + fraction * self.sizes[p.index - 1]
        percent = 99 * done / sum(self.sizes)
        self.manager.apply(ExecutorEvent(EventKind.PROGRESS, self.job_id,
                                         {"stage": describe(p, self.speed), "percent": percent}))


async def cancel_installs(app: web.Application) -> None:
    for task in list(app[INSTALLS].values()):
        task.cancel()
    await asyncio.gather(*app[INSTALLS].values(), return_exceptions=True)
