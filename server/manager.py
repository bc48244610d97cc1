"""The job manager: creates jobs, follows the executor's events, retries, cancels.

``_record`` is the one function that changes a job: it validates a status change, persists the job
and its new event in one transaction, then publishes the event to SSE subscribers. Restart recovery
(server/recovery.py) and expiry (server/expiry.py) decide what happens; they change jobs through it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from server.db import Store
from server.events import EventHub, JobEvent
from server.executor.base import EventKind, Executor, ExecutorEvent, WorkItem
from server.expiry import Expiry, JobFolders
from server.jobs import TERMINAL_EVENT, Job, JobStatus, check_transition
from server.recovery import recover
from server.settings import Settings
from server.views import progress_data, terminal_data

log = logging.getLogger("restora.jobs")

ResultBuilder = Callable[[Job, dict[str, Any]], dict[str, Any]]


class JobManager:
    def __init__(self, settings: Settings, store: Store, hub: EventHub, executor: Executor,
                 build_result: ResultBuilder):
        self.settings = settings
        self.store = store
        self.hub = hub
        self.executor = executor
        self._build_result = build_result
        self._active: dict[str, Job] = {}
        self._positions: dict[str, int] = {}
        self._tasks: list[asyncio.Task] = []
        self._folders = JobFolders(settings.jobs_dir)
        self._expiry = Expiry(store, hub, self._folders, self._record)
        # Called with a job that just ended, before its end is stored or published (webhooks).
        self.on_terminal: Callable[[Job], None] = lambda job: None

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self._recover()
        self._tasks = [asyncio.create_task(self._consume(), name="executor-events"),
                       asyncio.create_task(self._expiry.sweep_forever(self.settings.expiry_sweep_s),
                                           name="expiry")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self) -> None:
        """After the executor stopped: apply its last events (INTERRUPTED jobs go back to queued)."""
        await asyncio.gather(self._tasks[0], return_exceptions=True)

    # -- queries ----------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        return self._active.get(job_id) or self.store.get_job(job_id)

    def queue_position(self, job_id: str) -> int | None:
        return self.executor.queue_position(job_id) if job_id in self._active else None

    def queue_depth(self) -> int:
        return sum(1 for job in self._active.values() if job.status == JobStatus.QUEUED)

    def job_dir(self, job_id: str):
        return self._folders.path(job_id)

    # -- commands ---------------------------------------------------------------------------
    def create(self, job: Job, *, in_process: bool = False) -> Job:
        """Persist a new queued job with its first event, then hand it to the executor.

        ``in_process`` jobs (bundle installs) are run by the server itself, which reports their
        progress through :meth:`apply` with the same events a worker would produce.
        """
        job.last_event_id = 1
        try:
            if not in_process:
                self.executor.check_accepting()  # e.g. 503 BROKER_UNAVAILABLE: never accepted, never lost
            self.store.insert_job(job, event=(1, "progress", progress_data(job, None)))
        except BaseException:  # never stored, so nothing would ever remove its folder
            self._folders.remove(job.id)
            raise
        if in_process:
            self._active[job.id] = job
            self.apply(ExecutorEvent(EventKind.STARTED, job.id))
        else:
            self._enqueue(job)
            self._announce_positions()
        return job

    async def handed_over(self, jobs: list[Job]) -> None:
        """Awaited before a submission is answered: the executor holds the jobs (see Executor.handed_over)."""
        await self.executor.handed_over([job.id for job in jobs])

    def apply(self, event: ExecutorEvent) -> None:
        """Apply an event about an in-process job, exactly as if the executor had sent it."""
        self._handle(event)

    def cancel(self, job_id: str) -> Job | None:
        """DELETE: cancel unfinished work, expire a finished result; idempotent. Returns the job as
        stored afterwards (a cancelled job stays cancelled: it has no result to expire)."""
        job = self.get(job_id)
        if job is None:
            return None
        if not job.status.terminal:
            self._stop_work(job_id)
            self._finish(job, JobStatus.CANCELLED, stage="Cancelled")
            self._announce_positions()
        elif job.status in (JobStatus.COMPLETE, JobStatus.FAILED):
            self._expiry.expire(job, stage="Deleted")
        self._folders.remove(job_id)
        return job

    def sweep_expired(self, now: float | None = None) -> int:
        """Expire the finished jobs whose TTL has passed (also done every ``expiry_sweep_s``)."""
        return self._expiry.sweep(now)

    # -- executor events --------------------------------------------------------------------
    async def _consume(self) -> None:
        async for event in self.executor.events():
            try:
                self._handle(event)
            except Exception:  # one bad event must not stop the whole stream, nor wedge its job
                log.exception("could not apply executor event %s; its job fails", event)
                self._fail_safely(event.job_id)

    def _fail_safely(self, job_id: str) -> None:
        try:
            self._fail_unapplied(job_id)
        except Exception:  # e.g. the database is failing too: the stream must still go on
            log.exception("could not record the failure of job %s either", job_id)

    def _fail_unapplied(self, job_id: str) -> None:
        """A job whose event could not be applied fails (INTERNAL) rather than stay running for ever."""
        job = self._active.get(job_id)
        if job is None:
            return
        self._stop_work(job_id)  # whatever the worker still does for it is discarded
        self._fail(job, {"code": "INTERNAL",
                         "message": "An internal error stopped this job; the server log has details."})
        self._announce_positions()

    def _handle(self, event: ExecutorEvent) -> None:
        job = self._active.get(event.job_id)
        if job is None:  # cancelled meanwhile: once its worker let go, whatever it wrote goes
            # Only then: a late or replayed event for a job that ended must not delete its results.
            if event.kind not in (EventKind.STARTED, EventKind.PROGRESS) and self._folders.held(event.job_id):
                self._folders.release(event.job_id)
            return
        handler = getattr(self, f"_on_{event.kind.value}")
        handler(job, event.data)

    def _on_started(self, job: Job, data: dict[str, Any]) -> None:
        self._positions.pop(job.id, None)
        self._record(job, "progress", status=JobStatus.RUNNING, phase="processing", stage="Starting...",
                     percent=0.0, attempts=job.attempts + 1, started_at=time.time())
        self._announce_positions()

    def _on_progress(self, job: Job, data: dict[str, Any]) -> None:
        if job.status == JobStatus.RUNNING:
            self._record(job, "progress", stage=data["stage"], percent=float(data["percent"]))

    def _on_done(self, job: Job, data: dict[str, Any]) -> None:
        result = self._build_result(job, data["result"])
        self._finish(job, JobStatus.COMPLETE, stage="Done", percent=100.0, result=result)

    def _on_failed(self, job: Job, data: dict[str, Any]) -> None:
        error = {"code": data.get("code", "INTERNAL"), "message": data.get("message", "The job failed."),
                 **(data.get("details") or {})}
        self._finish(job, JobStatus.FAILED, stage="Failed", error=error)

    def _on_cancelled(self, job: Job, data: dict[str, Any]) -> None:
        self._finish(job, JobStatus.CANCELLED, stage="Cancelled")
        self._folders.remove(job.id)

    def _on_interrupted(self, job: Job, data: dict[str, Any]) -> None:
        # Not the job's fault: the attempt does not count. It resumes on the next start.
        self._record(job, "progress", status=JobStatus.QUEUED, phase="queued", percent=0.0,
                     stage="Interrupted by server shutdown; will resume", attempts=max(0, job.attempts - 1))

    def _on_lost(self, job: Job, data: dict[str, Any]) -> None:
        reason = data.get("reason", "the worker stopped")
        if job.attempts < self.settings.attempt_limit:
            self._requeue(job, f"Worker stopped unexpectedly ({reason}); retrying")
            self._enqueue(job, front=True)
            self._announce_positions()
            return
        message = (f"The worker running this job stopped unexpectedly {job.attempts} times "
                   f"(last: {reason}); the image may need more memory than is available.")
        self._fail(job, {"code": "WORKER_CRASHED", "message": message})

    # -- the one place a job changes ----------------------------------------------------------
    def _record(self, job: Job, event_type: str | None, *, status: JobStatus | None = None,
                event_data: Callable[[Job], dict[str, Any]] | None = None, **fields: Any) -> None:
        if status is not None and status != job.status:
            check_transition(job, status)
            job.status = status
        for name, value in fields.items():
            setattr(job, name, value)
        if event_type is not None and event_type == TERMINAL_EVENT.get(job.status):
            self.on_terminal(job)
        if event_type is None:
            self.store.save_job(job)
            return
        job.last_event_id += 1
        data = event_data(job) if event_data is not None else progress_data(job, self._positions.get(job.id))
        self.store.save_job(job, event=(job.last_event_id, event_type, data))
        self.hub.publish(job.id, JobEvent(job.last_event_id, event_type, data))

    def _finish(self, job: Job, status: JobStatus, **fields: Any) -> None:
        now = time.time()
        fields.setdefault("phase", TERMINAL_EVENT[status])
        self._record(job, TERMINAL_EVENT[status], status=status, event_data=terminal_data,
                     finished_at=now, expires_at=now + self.settings.result_ttl_s, **fields)
        self._active.pop(job.id, None)
        self._positions.pop(job.id, None)

    def _fail(self, job: Job, error: dict[str, Any]) -> None:
        self._finish(job, JobStatus.FAILED, stage="Failed", error=error)

    def _requeue(self, job: Job, stage: str) -> None:
        """A running job goes back to waiting (worker lost, server restarted)."""
        self._record(job, "progress", status=JobStatus.QUEUED, phase="queued", percent=0.0, stage=stage)

    def _enqueue(self, job: Job, *, front: bool = False) -> None:
        self._active[job.id] = job
        self.executor.submit(self._work_item(job), front=front)

    def _announce_positions(self) -> None:
        """Tell each waiting job its place in the queue when it changed."""
        for position, job_id in enumerate(self.executor.queued_job_ids(), start=1):
            job = self._active.get(job_id)
            if job is None or self._positions.get(job_id) == position:
                continue
            self._positions[job_id] = position
            self._record(job, "progress", stage=f"Waiting in queue (position {position})")

    # -- recovery -------------------------------------------------------------------------
    def _recover(self) -> None:
        jobs = [job for job in self.store.jobs_with_status([JobStatus.RUNNING, JobStatus.QUEUED])
                if not self._adopted(job)]
        queued = recover(jobs, self.settings.attempt_limit, fail=self._fail, requeue=self._requeue,
                         enqueue=self._enqueue)
        self._announce_positions()
        if queued:
            log.info("recovered %d queued job(s)", queued)

    def _adopted(self, job: Job) -> bool:
        """A job still running on a worker host (the broker executor) goes on there: not reset."""
        if job.status != JobStatus.RUNNING or job.kind.in_process:
            return False
        if not self.executor.adopt(self._work_item(job), job):
            return False
        self._active[job.id] = job
        return True

    def _stop_work(self, job_id: str) -> None:
        if self.executor.cancel(job_id):
            self._folders.hold(job_id)

    def _work_item(self, job: Job) -> WorkItem:
        folder = self.job_dir(job.id)
        return WorkItem(job_id=job.id, tool=job.tool, plan=job.plan, input_path=str(folder / job.input_file),
                        output_dir=str(folder), output_stem=job.output_stem,
                        input_format=job.input_format,
                        options=_output_options(job),
                        mask_path=str(folder / job.mask_file) if job.mask_file else None)


def _output_options(job: Job) -> dict[str, Any]:
    options = {"outputFormat": job.params.get("outputFormat")}
    # remove-bg's "quality" is seed 003's model level, not an encoder setting.
    if isinstance(job.params.get("quality"), int):
        options["quality"] = job.params["quality"]
    return {k: v for k, v in options.items() if v is not None}
