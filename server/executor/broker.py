"""The distributed executor: jobs go to a BullMQ queue in Redis and worker hosts anywhere take them.

SQLite on the API stays the source of truth. Redis carries the queue, the hosts' locks, progress,
cancellation and the worker registry; image bytes never go into it (hosts fetch inputs and upload
results over ``/internal/v1``, see server/routes/internal.py). A host starts an attempt over HTTP
(:meth:`attempt_started`) and every later event about an older attempt is dropped, so a host that
was shut out (frozen past its lock, cut off) can never overwrite a newer attempt.

Pitfalls that bite here:
- BullMQ's lock has nothing to do with how long a job runs: it only says "this host is alive". A
  host renews it far more often than it lasts (server/worker_host.py: a quarter of the lock), so an
  hour-long job holds a 30 s lock; a lock as long as the job would only delay crash detection.
- Trimming the events stream (BullMQ's maxLenEvents) can drop entries nobody has read yet, so
  nothing here needs every event: progress is best effort, starts and results go over HTTP into
  SQLite, and a lost attempt is also caught when the next attempt starts, or by :meth:`_reconcile`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, AsyncIterator

import redis.asyncio as aioredis
from bullmq import Queue
from redis.exceptions import RedisError

from server.errors import ServiceUnavailable
from server.executor.base import EventKind, ExecutorEvent, WorkItem
from server.jobs import Job
from server.settings import Settings

log = logging.getLogger("restora.broker")

QUEUE = "restora"
WORKERS_KEY = "restora:workers"  # a hash: host name -> its last heartbeat (JSON)
CANCEL_PREFIX = "restora:cancel:"  # restora:cancel:<job id> exists once the job was cancelled
CANCEL_TTL_S = 7 * 24 * 3600
# The API counts attempts (Settings.attempt_limit); BullMQ must never give up on a job first.
BROKER_RETRIES = 1_000_000
JOB_OPTIONS = {"attempts": BROKER_RETRIES, "removeOnComplete": True, "removeOnFail": True}
_RETRY_AFTER_S = 5


class BrokerUnavailable(ServiceUnavailable):
    code = "BROKER_UNAVAILABLE"


def connect(url: str) -> aioredis.Redis:
    """A client that fails fast: a request must learn within seconds that Redis is down (503),
    not wait through BullMQ's default minutes of reconnect backoff."""
    return aioredis.from_url(url, decode_responses=True, socket_connect_timeout=5, socket_timeout=15)


class BrokerExecutor:
    def __init__(self, settings: Settings):
        assert settings.broker
        self._settings = settings
        self._events: asyncio.Queue[ExecutorEvent | None] = asyncio.Queue()
        self._waiting: list[str] = []  # submitted and not started, in queue order as this API sees it
        self._running: dict[str, tuple[int, str]] = {}  # job id -> (attempt, worker host)
        self._items: dict[str, WorkItem] = {}  # what hosts are told to run, by job id
        self._locks: dict[str, str] = {}  # job id -> the lock token of its running attempt
        self._active_at_start: set[str] | None = None  # None: Redis was unreachable at start
        self._workers: list[dict[str, Any]] = []
        self._up = False
        self._tasks: set[asyncio.Task] = set()
        self._adding: dict[str, asyncio.Task] = {}  # job id -> its add to BullMQ, until Redis took it
        self._loops: list[asyncio.Task] = []
        # Worker hosts in this process (serve --workers N), described live rather than from Redis.
        self.local_hosts: list[Any] = []

    # -- Executor interface -----------------------------------------------------------------
    async def start(self) -> None:
        self._redis = connect(self._settings.broker)
        self._queue = Queue(QUEUE, {"connection": self._redis})
        try:
            self._active_at_start = {job.id for job in await self._queue.getJobs(["active"])}
            self._up = True
        except (RedisError, OSError) as exc:
            log.error("the broker at %s is unreachable (%s); jobs wait until it is back", _safe(self._settings), exc)
        self._loops = [asyncio.create_task(self._follow_events(), name="broker-events"),
                       asyncio.create_task(self._watch(), name="broker-watch")]

    def submit(self, item: WorkItem, *, front: bool = False) -> None:
        self._items[item.job_id] = item
        if item.job_id not in self._waiting:
            self._waiting.insert(0, item.job_id) if front else self._waiting.append(item.job_id)
        task = self._spawn(self._add(item, front))
        self._adding[item.job_id] = task
        task.add_done_callback(lambda done: self._add_ended(item.job_id, done))

    async def handed_over(self, job_ids: list[str]) -> None:
        """BullMQ has the jobs before the 202, so that a crash of the API just after it loses nothing
        even before recovery. Redis failing after the submission was accepted (it was up a moment
        ago): the job is answered 202 anyway after a bounded wait, as it is stored and the add retries
        until Redis takes it; answering 503 now would have the client submit it a second time."""
        pending = [self._adding[job_id] for job_id in job_ids if job_id in self._adding]
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=self._settings.broker_handover_s)
        if late:
            log.warning("the broker has not taken %d accepted job(s) yet; retrying in the background", len(late))

    def cancel(self, job_id: str) -> bool:
        """Queued: removed from the queue. Running: the host sees the cancel key and stops at the
        next step boundary. Either way no host uses this API's folder, so False: it can go now."""
        if job_id in self._waiting:
            self._waiting.remove(job_id)
        self._running.pop(job_id, None)
        self._items.pop(job_id, None)
        self._spawn(self._cancel(job_id))
        return False

    async def events(self) -> AsyncIterator[ExecutorEvent]:
        while (event := await self._events.get()) is not None:
            if self._still_current(event):
                yield event

    def queue_position(self, job_id: str) -> int | None:
        return self._waiting.index(job_id) + 1 if job_id in self._waiting else None

    def queued_job_ids(self) -> list[str]:
        return list(self._waiting)

    def describe(self) -> dict[str, Any]:
        local = [host.describe() for host in self.local_hosts]
        remote = [w for w in self._workers if w["name"] not in {h["name"] for h in local}]
        return {"workers": local + remote, "queueDepth": len(self._waiting),
                "broker": {"state": "up" if self._up else "down", "queue": QUEUE}}

    async def stop(self, grace_s: float) -> None:
        """Jobs on worker hosts keep running: a restarted API adopts them (:meth:`adopt`)."""
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)
        await self._queue.close()
        self._events.put_nowait(None)

    # -- what the manager and the internal routes ask -----------------------------------------
    def check_accepting(self) -> None:
        if not self._up:
            raise BrokerUnavailable("The job broker (Redis) is unreachable; try again shortly.",
                                    headers={"Retry-After": str(_RETRY_AFTER_S)}, retryAfter=_RETRY_AFTER_S)

    def adopt(self, item: WorkItem, job: Job) -> bool:
        """At start: a job the store has as running and BullMQ as active is still on its host; it
        keeps running, and its result is accepted. When Redis could not be asked, every running job
        is adopted; :meth:`_reconcile` reports those that no host holds once Redis is back."""
        if self._active_at_start is not None and job.id not in self._active_at_start:
            return False
        self._running[job.id] = (job.attempts, str(job.meta.get("worker", "")))
        self._items[job.id] = item
        return True

    def attempt_started(self, job_id: str, attempt: int, worker: str, lock: str = "") -> None:
        if job_id in self._waiting:
            self._waiting.remove(job_id)
        self._running[job_id] = (attempt, worker)
        self._locks[job_id] = lock

    def attempt_lock(self, job_id: str) -> str | None:
        """The BullMQ lock token the running attempt was started with (unique per hand-out)."""
        return self._locks.get(job_id) if job_id in self._running else None

    def attempt_ended(self, job_id: str, *, final: bool = False) -> None:
        self._running.pop(job_id, None)
        self._locks.pop(job_id, None)
        if final:
            self._items.pop(job_id, None)

    def work_item(self, job_id: str) -> WorkItem | None:
        return self._items.get(job_id)

    def current_attempt(self, job_id: str) -> int | None:
        entry = self._running.get(job_id)
        return entry[0] if entry else None

    # -- internals --------------------------------------------------------------------------
    def _still_current(self, event: ExecutorEvent) -> bool:
        """Checked as the manager takes the event, with no await between: an event about an
        attempt that has since ended or been replaced is dropped."""
        attempt = event.data.get("attempt")
        if attempt is None or self.current_attempt(event.job_id) != attempt:
            return False
        if event.kind == EventKind.LOST:
            self._running.pop(event.job_id, None)
        return True

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _add_ended(self, job_id: str, task: asyncio.Task) -> None:
        if self._adding.get(job_id) is task:  # not a newer add of the same job (queued again when lost)
            del self._adding[job_id]

    async def _add(self, item: WorkItem, front: bool) -> None:
        """Retried until Redis takes it: the job was accepted (it is in SQLite) and must run. BullMQ
        ignores an id it already holds, so adding again never queues a job twice."""
        options = {**JOB_OPTIONS, "jobId": item.job_id, "lifo": front}
        await self._until_done(lambda: self._queue.add(item.tool, {"jobId": item.job_id}, options))

    async def _cancel(self, job_id: str) -> None:
        async def signal() -> None:
            await self._redis.set(CANCEL_PREFIX + job_id, "1", ex=CANCEL_TTL_S)
            await self._queue.remove(job_id)  # 0 while a host holds it: that host sees the key
        await self._until_done(signal)

    async def _until_done(self, operation) -> None:
        delay = 0.2
        while True:
            try:
                await operation()
                return
            except (RedisError, OSError) as exc:
                log.warning("the broker did not take a request (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def _follow_events(self) -> None:
        """Progress and stalled jobs from BullMQ's event stream, from wherever it is now."""
        last_id = "$"
        while True:
            try:
                reply = await self._redis.xread({self._queue.keys["events"]: last_id}, block=5000)
            except (RedisError, OSError):
                await asyncio.sleep(0.5)  # _watch tells whether Redis is down
                continue
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    self._on_stream_entry(fields)

    def _on_stream_entry(self, fields: dict[str, str]) -> None:
        job_id, kind = fields.get("jobId"), fields.get("event")
        if not job_id or job_id not in self._running:
            return
        if kind == "progress":
            try:
                data = json.loads(fields.get("data", "null"))
                progress = {"attempt": int(data["attempt"]), "stage": str(data["stage"]),
                            "percent": float(data["percent"])}
            except (ValueError, TypeError, KeyError):
                log.warning("ignoring a malformed progress event for job %s", job_id)
                return
            self._emit(EventKind.PROGRESS, job_id, **progress)
        elif kind == "stalled":
            self._lost(job_id, "its worker host stopped renewing its lock (killed, frozen or cut off)")

    def _lost(self, job_id: str, reason: str) -> None:
        attempt, worker = self._running[job_id]
        where = f" on {worker}" if worker else ""
        self._emit(EventKind.LOST, job_id, attempt=attempt, reason=f"{reason}{where}")

    async def _watch(self) -> None:
        """Every poll: is Redis up, which hosts are alive, which stalled jobs go back to wait.
        Down means two polls in a row failed: one slow answer on a busy machine is not an outage."""
        failures = 0
        while True:
            try:
                await self._redis.ping()
                failures = 0
                self._set_up(True)
                self._workers = await self._read_workers()
                # Hosts check stalled jobs too; the API does it so that a lone host's death is seen.
                await self._queue.backend.moveStalledJobsToWait(BROKER_RETRIES, self._stalled_ms())
                await self._reconcile()
            except (RedisError, OSError) as exc:
                failures += 1
                if failures >= 2:
                    self._set_up(False, exc)
            await asyncio.sleep(self._settings.broker_poll_s)

    async def _reconcile(self) -> None:
        """A job this API thinks running that BullMQ no longer holds at all was lost unseen (its
        stalled event trimmed away, or Redis lost it): report it so that it is queued again."""
        for job_id in list(self._running):
            if await self._queue.getJobState(job_id) == "unknown" and job_id in self._running:
                self._lost(job_id, "the broker no longer holds it")

    async def _read_workers(self) -> list[dict[str, Any]]:
        now = time.time()
        workers = []
        for name, raw in sorted((await self._redis.hgetall(WORKERS_KEY)).items()):
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if now - float(entry.get("lastHeartbeat", 0)) > float(entry.get("ttl", 30)):
                await self._redis.hdel(WORKERS_KEY, name)  # gone without saying so (killed, cut off)
                continue
            workers.append(entry)
        return workers

    def _stalled_ms(self) -> int:
        return int(self._settings.broker_poll_s * 1000)

    def _set_up(self, up: bool, error: Exception | None = None) -> None:
        if up != self._up:
            if up:
                log.info("the broker is reachable again")
            else:
                log.error("the broker is unreachable: %s", error)
        self._up = up

    def _emit(self, kind: EventKind, job_id: str, **data: Any) -> None:
        self._events.put_nowait(ExecutorEvent(kind, job_id, data))


def _safe(settings: Settings) -> str:
    """The broker URL without its password, for logs."""
    url = settings.broker or ""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url
