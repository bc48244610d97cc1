"""``create_app(settings)`` builds the whole server; nothing happens at import time."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

from aiohttp import web

from pipelines.steps import build_step_registry
from pipelines.tools import build_tool_registry
from server.access import auth_middleware
from server.auth import KeyStore
from server.bundles.catalog import BundleCatalog
from server.bundles.defaults import install_missing_embedded
from server.capacity import QueuePlaces
from server.db import Store
from server.errors import error_middleware
from server.events import EventHub
from server.executor.base import Executor
from server.executor.pool import ProcessPool
from server.http_logs import install_http_log_filters
from server.integrations import add_integrations
from server.jobs import Job, JobKind
from server.manager import JobManager
from server.ratelimit import SlidingWindow
from server.routes import (bundles, compat_picwish, compat_restore, compat_studio, docs, internal, jobs, system,
                           tools)
from server.routes.bundles import cancel_installs
from server.routes.web import add_web_routes
from server.settings import Settings
from server.signing import UrlSigner
from server.lifecycle import Lifecycle
from server.worker_token import ensure_worker_token
from server.state import (BUNDLES, EXECUTOR, HUB, INSTALLS, KEYS, LIFECYCLE, LIMITS, MANAGER, PROBES, QUEUE_PLACES,
                          SETTINGS, SIGNER, STEPS, STORE, TOOLS)
from server.submissions import SUBMISSIONS, SubmissionService
from server.views import public_result
from server.webhooks import WEBHOOKS

log = logging.getLogger("restora")
# With --broker and --workers N: the worker host in this process, and the task that runs it.
LOCAL_HOST = web.AppKey("local_host", tuple)


def create_app(settings: Settings, *, executor: Executor | None = None) -> web.Application:
    settings.validate()
    install_http_log_filters()
    middlewares = [error_middleware] + ([auth_middleware()] if settings.auth_enabled else [])
    app = web.Application(middlewares=middlewares)
    app[SETTINGS] = settings
    app[TOOLS] = build_tool_registry()
    app[STEPS] = build_step_registry()
    app[LIFECYCLE] = Lifecycle()
    app[INSTALLS] = {}
    app[LIMITS] = {
        "submit": SlidingWindow(settings.rate_limit_per_hour) if settings.rate_limit_per_hour else None,
        "compat-restore": SlidingWindow(settings.compat_restore_rate_per_hour),
    }
    app.cleanup_ctx.append(_storage)
    app.cleanup_ctx.append(_embedded_defaults)  # before the workers start, so they see them
    add_integrations(app)  # webhooks and batches: before the job system, which reports to them
    app.cleanup_ctx.append(_job_system(executor))
    app.on_shutdown.append(_begin_drain)
    for module in (tools, jobs, system, bundles, compat_studio, compat_picwish, compat_restore, docs):
        app.add_routes(module.routes)
    if settings.broker:
        app.add_routes(internal.routes)
    add_web_routes(app)
    return app


async def _storage(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    for folder in (settings.data_dir, settings.jobs_dir, settings.tmp_dir):
        folder.mkdir(parents=True, exist_ok=True)
    _clear_stale_uploads(settings)
    app[STORE] = Store(settings.db_path)
    app[HUB] = EventHub(app[STORE])
    app[BUNDLES] = BundleCatalog.open(settings.models_dir, settings.manifests_dir)
    app[KEYS] = KeyStore(settings.db_path)
    app[PROBES] = asyncio.Semaphore(settings.probes_at_once)
    app[SIGNER] = UrlSigner.from_data_dir(settings.data_dir)
    yield
    app[KEYS].close()
    app[STORE].close()


async def _embedded_defaults(app: web.Application) -> AsyncIterator[None]:
    if app[SETTINGS].install_embedded:
        await install_missing_embedded(app[BUNDLES])
    yield


def _job_system(executor: Executor | None):
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        app[EXECUTOR] = executor or _default_executor(app)
        app[MANAGER] = JobManager(settings, app[STORE], app[HUB], app[EXECUTOR], _result_builder(app))
        app[MANAGER].on_terminal = app[WEBHOOKS].job_finished
        app[QUEUE_PLACES] = QueuePlaces(settings.max_queue, app[MANAGER].queue_depth)
        app[SUBMISSIONS] = SubmissionService(settings, app[TOOLS], app[STEPS], app[BUNDLES], app[MANAGER],
                                             app[QUEUE_PLACES], app[PROBES], app[LIFECYCLE], app[LIMITS]["submit"])
        await app[EXECUTOR].start()
        await app[MANAGER].start()
        if settings.broker and settings.workers:
            _start_local_host(app)
        log.info("data in %s; %d worker(s) on %s", settings.data_dir, settings.workers, settings.device)
        yield
        await _stop_workers(app)
        await app[MANAGER].stop()

    return context


def _default_executor(app: web.Application) -> Executor:
    settings = app[SETTINGS]
    if settings.broker:
        from server.executor.broker import BrokerExecutor

        app[internal.WORKER_TOKEN] = ensure_worker_token(settings.data_dir)
        return BrokerExecutor(settings)
    return ProcessPool(settings, worker_config(settings))


def _start_local_host(app: web.Application) -> None:
    from server.worker_host import local_host

    host = local_host(app[SETTINGS], app[internal.WORKER_TOKEN])
    app[EXECUTOR].local_hosts.append(host)
    app[LOCAL_HOST] = (host, asyncio.create_task(host.serve(), name="local-worker-host"))


def worker_config(settings: Settings) -> dict[str, Any]:
    """What each spawned worker process is told: where models are, how long a decode may take."""
    return {"modelsDir": str(settings.models_dir),
            "manifestsDir": str(settings.manifests_dir) if settings.manifests_dir else None,
            "decodeTimeout": settings.decode_timeout_s,
            # bf16-or-fp32 decisions per model file and device: a restarted worker does not calibrate again
            "precisionCache": str(settings.data_dir / "precision-decisions.json")}


def _result_builder(app: web.Application):
    def build(job: Job, raw: dict[str, Any]) -> dict[str, Any]:
        if job.kind != JobKind.TOOL:
            return raw
        tool = app[TOOLS].get(job.tool)
        return public_result(job, raw, tool.result_type, tool.result_defaults)

    return build


async def drain(app: web.Application) -> None:
    """SIGTERM, while the server still listens: new work is refused (503, health "draining"), running
    steps stop at their next boundary (their jobs stay queued) and submissions being read are
    read to the end and answered; each part waits at most the shutdown grace period."""
    await _begin_drain(app)
    await asyncio.gather(_stop_workers(app), _answer_submissions(app))


async def _begin_drain(app: web.Application) -> None:
    """Refuse new work (503), end SSE streams. Also on the app's shutdown, for servers not drained."""
    app[LIFECYCLE].draining = True
    await cancel_installs(app)
    app[HUB].close()


async def _stop_workers(app: web.Application) -> None:
    lifecycle = app[LIFECYCLE]
    if lifecycle.workers_stopped:
        return
    lifecycle.workers_stopped = True
    if LOCAL_HOST in app:  # its running jobs go back to the broker's queue first
        host, task = app[LOCAL_HOST]
        host.stop()
        await task
    await app[EXECUTOR].stop(app[SETTINGS].shutdown_grace_s)
    await app[MANAGER].drain()  # INTERRUPTED jobs go back to queued


async def _answer_submissions(app: web.Application) -> None:
    places = app[QUEUE_PLACES]
    try:
        await asyncio.wait_for(places.all_given_back(), app[SETTINGS].shutdown_grace_s)
    except asyncio.TimeoutError:
        log.warning("closing with %d submission(s) still being read", places.held)


def _clear_stale_uploads(settings: Settings) -> None:
    """Uploads interrupted by a crash never became jobs; remove them."""
    for leftover in (settings.tmp_dir).glob("upload-*"):
        leftover.unlink(missing_ok=True)
