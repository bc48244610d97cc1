"""A worker host (``restora worker``): takes jobs from the BullMQ queue, runs them in the same spawned
worker processes as the local pool (server/executor/pool.py), and talks to the API over HTTP.

Per job: start an attempt on the API (``POST /internal/v1/jobs/ID/attempts``), fetch the input into
this host's own data dir, run it in an idle slot, upload each result file, post the result. Progress
goes through Redis (BullMQ's job progress); a cancel arrives as a Redis key, checked twice a second,
and stops the job at its next step boundary (the pool's grace-kill rule applies here too).

The host takes a job only when a slot is idle (BullMQ concurrency = slots, no prefetch). Its lock on
each job is renewed every quarter of the lock's length: the lock says "this host is alive", it has
nothing to do with how long a job runs. A host that loses a lock (frozen past it, cut off) stops that
job: another host has it by then. Calls to the API are retried until they get an answer, so a
restarting API costs nothing but time. Worker processes are spawned (a fresh interpreter each, never
forked: a fork after CUDA has initialised inherits a context that cannot be used).
"""
from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from bullmq import Worker
from redis.exceptions import RedisError

from server.executor.base import EventKind, ExecutorEvent, WorkItem
from server.executor.broker import BROKER_RETRIES, CANCEL_PREFIX, QUEUE, WORKERS_KEY, connect
from server.executor.pool import ProcessPool
from server.settings import Settings

log = logging.getLogger("restora.host")
_HEARTBEAT_S = 2.0
_CANCEL_POLL_S = 0.5


class PutBack(Exception):
    """Raised from the processor: BullMQ puts the job back in the queue for any host."""


class StaleAttempt(Exception):
    """The API answered 409: this attempt is not (or no longer) the job's running attempt."""


@dataclass(frozen=True)
class HostConfig:
    broker: str
    api: str
    token: str
    data_dir: Path
    name: str
    device: str = "auto"
    slots: int = 1
    lock_s: float = 30.0
    shutdown_grace_s: float = 20.0
    # How long a stopping host keeps calling an API that does not answer (None: shutdown_grace_s).
    stopping_api_retry_s: float | None = None
    # Silence on a connection to the API longer than this is an API that will not answer: the call
    # is retried. (Not a total: an input or a result may take long to move, in bytes that flow.)
    api_read_timeout_s: float = 60.0

    @property
    def stopping_retry_s(self) -> float:
        return self.shutdown_grace_s if self.stopping_api_retry_s is None else self.stopping_api_retry_s


class WorkerHost:
    def __init__(self, config: HostConfig):
        self.config = config
        self.settings = Settings(data_dir=config.data_dir, workers=config.slots, device=config.device,
                                 shutdown_grace_s=config.shutdown_grace_s).validate()
        self._running: dict[str, asyncio.Future] = {}  # job id -> the pool's terminal event
        self._bull_jobs: dict[str, Any] = {}  # job id -> (BullMQ job, attempt), for progress
        self._shut_out: set[str] = set()  # jobs whose lock this host lost: stopped, never reported
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        from server.app import worker_config

        self.pool = ProcessPool(self.settings, worker_config(self.settings))

    @property
    def jobs_dir(self) -> Path:
        return self.config.data_dir / "host-jobs"

    async def serve(self) -> None:
        shutil.rmtree(self.jobs_dir, ignore_errors=True)  # what a killed host left behind
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.redis = connect(self.config.broker)
        async with self.api_session() as self.http:
            await self.pool.start()
            pump = asyncio.create_task(self._follow_pool())
            heartbeat = asyncio.create_task(self._heartbeat())
            await self._until_ready()
            worker = Worker(QUEUE, self._process, self._worker_options())
            worker.on("lockRenewalFailed", self._on_locks_lost)
            log.info("worker host %s taking jobs with %d slot(s)", self.config.name, self.config.slots)
            await self._stopping.wait()
            await self.pool.stop(self.config.shutdown_grace_s)  # running jobs stop at a boundary
            heartbeat.cancel()
            await asyncio.gather(pump, heartbeat, return_exceptions=True)
            await self._leave(worker)
        await self.redis.aclose()

    def api_session(self) -> aiohttp.ClientSession:
        """Every call to the API goes through this session. Without a read timeout, a request the
        API accepted and never answered (it stopped meanwhile) would wait for aiohttp's default
        5-minute total, holding the job and the host's shutdown that long."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=self.config.api_read_timeout_s)
        return aiohttp.ClientSession(self.config.api.rstrip("/"), timeout=timeout,
                                     headers={"Authorization": f"Bearer {self.config.token}"})

    async def _leave(self, worker: Worker) -> None:
        """Give the jobs back and leave the registry; with Redis down, only wait so long (BullMQ's
        own client retries for minutes): the locks lapse and other hosts take the jobs anyway."""
        try:
            await self._close_worker(worker)
            await self.redis.hdel(WORKERS_KEY, self.config.name)
        except (asyncio.TimeoutError, RedisError, OSError) as exc:
            log.warning("left without telling the broker (%s)", type(exc).__name__)

    async def _close_worker(self, worker: Worker) -> None:
        """BullMQ's close waits for every processor and ignores cancellation (it shields itself),
        so a plain timeout cannot bound it: after the grace period, close by force. The jobs of
        processors still running then are handed out again when their locks lapse."""
        closing = asyncio.ensure_future(worker.close())
        done, _ = await asyncio.wait({closing}, timeout=self.config.shutdown_grace_s)
        if not done:
            log.warning("jobs still processing after %.0f s; closing by force", self.config.shutdown_grace_s)
            await worker.close(force=True)  # cancels the processors, so it does not wait on them
        await closing

    def stop(self) -> None:
        self._stopping.set()

    def _worker_options(self) -> dict[str, Any]:
        lock_ms = int(self.config.lock_s * 1000)
        return {"connection": self.config.broker, "concurrency": self.config.slots, "name": self.config.name,
                "lockDuration": lock_ms, "lockRenewTime": lock_ms // 4, "stalledInterval": lock_ms // 2,
                # The API counts attempts and fails a job at Settings.attempt_limit, not BullMQ.
                "maxStalledCount": BROKER_RETRIES, "drainDelay": 2}

    async def _until_ready(self) -> None:
        while not all(w["state"] == "idle" for w in self.pool.describe()["workers"]):
            await asyncio.sleep(0.1)

    # -- one job ------------------------------------------------------------------------------
    async def _process(self, bull_job, token: str) -> None:
        job_id = str(bull_job.data.get("jobId") or bull_job.id)
        if self._stopping.is_set():
            raise PutBack("this worker host is stopping")
        try:
            started = await self._call("POST", f"/internal/v1/jobs/{job_id}/attempts",
                                       json={"worker": self.config.name, "lock": token})
        except StaleAttempt:
            return  # cancelled or ended meanwhile: nothing to run
        attempt, spec = int(started["attempt"]), started["job"]
        base = f"/internal/v1/jobs/{job_id}/attempts/{attempt}"
        folder = self.jobs_dir / f"{job_id}-{attempt}"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            item = await self._fetch_inputs(job_id, base, spec, folder)
            self._bull_jobs[job_id] = (bull_job, attempt)
            event = await self._run(item)
            await self._report(base, event, folder)
        except StaleAttempt:
            log.warning("job %s attempt %d was taken over by another attempt; dropped", job_id, attempt)
        finally:
            self._bull_jobs.pop(job_id, None)
            self._shut_out.discard(job_id)
            shutil.rmtree(folder, ignore_errors=True)

    async def _fetch_inputs(self, job_id: str, base: str, spec: dict[str, Any], folder: Path) -> WorkItem:
        input_path = folder / Path(spec["inputName"]).name
        await self._download(base + "/input", input_path)
        mask_path = None
        if spec.get("maskName"):
            mask_path = folder / Path(spec["maskName"]).name
            await self._download(base + "/input?part=mask", mask_path)
        return WorkItem(job_id=job_id, tool=spec["tool"], plan=spec["plan"], input_path=str(input_path),
                        output_dir=str(folder), output_stem=spec["outputStem"], input_format=spec["inputFormat"],
                        options=spec.get("options") or {}, mask_path=str(mask_path) if mask_path else None)

    async def _run(self, item: WorkItem) -> ExecutorEvent:
        if self._stopping.is_set():  # the pool stops (or stopped) with the host: it would never run it
            raise PutBack("this worker host is stopping")
        done = asyncio.get_running_loop().create_future()
        self._running[item.job_id] = done
        self.pool.submit(item)
        watcher = asyncio.create_task(self._watch_cancel(item.job_id))
        try:
            return await done
        finally:
            watcher.cancel()
            self._running.pop(item.job_id, None)

    async def _report(self, base: str, event: ExecutorEvent, folder: Path) -> None:
        if event.job_id in self._shut_out:
            self._shut_out.discard(event.job_id)
            log.warning("job %s: not reporting its %s, this host lost its lock", event.job_id, event.kind.value)
            return
        if event.kind == EventKind.LOST:  # the worker process died: any host may try again
            raise PutBack(event.data.get("reason", "the worker process stopped"))
        if event.kind == EventKind.DONE:
            for name in sorted(set(event.data["result"]["files"].values())):
                await self._upload(f"{base}/files/{name}", folder / name)
        body = {k: v for k, v in event.data.items() if k != "jobId"}
        await self._call("POST", base + "/finish", json={"type": event.kind.value, **body})
        if event.kind == EventKind.INTERRUPTED:
            raise PutBack("this worker host is stopping")

    async def _watch_cancel(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(_CANCEL_POLL_S)
            try:
                cancelled = await self.redis.exists(CANCEL_PREFIX + job_id)
            except (RedisError, OSError) as exc:  # the broker is restarting: the next poll tries again
                log.warning("cannot read cancellations from the broker: %s", exc)
                continue
            if cancelled:
                log.info("job %s was cancelled; stopping it at its next step boundary", job_id)
                self.pool.cancel(job_id)
                return

    def _on_locks_lost(self, job_ids: list[str]) -> None:
        """The lock is the truth: without it BullMQ hands the job to a host (maybe this one) again.
        The stopped run reports nothing; above all not "cancelled", which only a user may say."""
        for job_id in job_ids:
            if job_id in self._running:
                log.error("lost the lock on job %s (frozen, cut off, or Redis lost it): stopping it", job_id)
                self._shut_out.add(job_id)
                self.pool.cancel(job_id)

    async def _follow_pool(self) -> None:
        async for event in self.pool.events():
            if event.kind == EventKind.PROGRESS:
                self._forward_progress(event)
            elif event.kind != EventKind.STARTED and event.job_id in self._running:
                self._running[event.job_id].set_result(event)
        # The pool has stopped: a job still queued in it will never run, so it goes back to BullMQ.
        for done in self._running.values():
            if not done.done():
                done.set_exception(PutBack("this worker host is stopping"))

    def _forward_progress(self, event: ExecutorEvent) -> None:
        entry = self._bull_jobs.get(event.job_id)
        if entry is None:
            return
        bull_job, attempt = entry
        progress = {"attempt": attempt, "stage": event.data["stage"], "percent": event.data["percent"]}
        task = asyncio.create_task(bull_job.updateProgress(progress))
        self._tasks.add(task)
        task.add_done_callback(self._progress_sent)

    def _progress_sent(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # best effort: the result is what counts
            log.warning("could not send progress: %s", task.exception())

    # -- HTTP to the API ------------------------------------------------------------------------
    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        async def attempt() -> dict[str, Any]:
            async with self.http.request(method, path, **kwargs) as resp:
                return await _answer(resp, path)
        return await self._retrying(attempt)

    async def _download(self, path: str, target: Path) -> None:
        async def attempt() -> None:
            async with self.http.get(path) as resp:
                if resp.status != 200:
                    await _answer(resp, path)
                with open(target, "wb") as handle:
                    async for chunk in resp.content.iter_chunked(256 * 1024):
                        handle.write(chunk)
        await self._retrying(attempt)

    async def _upload(self, path: str, source: Path) -> None:
        async def attempt() -> None:
            with open(source, "rb") as handle:
                async with self.http.put(path, data=handle) as resp:
                    await _answer(resp, path)
        await self._retrying(attempt)

    async def _retrying(self, operation):
        """Until the API answers: it may be restarting (connection refused, 502/503). A stopping
        host gives up after its grace period: BullMQ hands the job out again once its lock lapses."""
        delay, give_up = 0.25, None
        while True:
            try:
                return await operation()
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError, _Retry) as exc:
                if self._stopping.is_set():
                    give_up = give_up or time.monotonic() + self.config.stopping_retry_s
                    if time.monotonic() > give_up:
                        raise
                log.warning("API not answering (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self.redis.hset(WORKERS_KEY, self.config.name, json.dumps(self.describe()))
            except (RedisError, OSError) as exc:  # the broker is restarting; the next beat tries again
                log.warning("cannot reach the broker for the heartbeat: %s", exc)
            await asyncio.sleep(_HEARTBEAT_S)

    def describe(self) -> dict[str, Any]:
        slots = self.pool.describe()["workers"]
        states = {s["state"] for s in slots}
        state = ("stopping" if self._stopping.is_set() else "starting" if "starting" in states
                 else "busy" if "busy" in states else "idle")
        jobs = [s["jobId"] for s in slots if s["jobId"]]
        return {"name": self.config.name, "host": socket.gethostname(), "device": slots[0]["device"] if slots else "",
                "state": state, "jobId": jobs[0] if jobs else None, "jobIds": jobs, "slots": len(slots),
                "restarts": sum(s["restarts"] for s in slots),
                "lastHeartbeat": time.time(), "ttl": 3 * _HEARTBEAT_S + self.config.lock_s / 4}


class _Retry(Exception):
    pass


def local_host(settings: Settings, token: str) -> WorkerHost:
    """``restora serve --broker URL --workers N``: a host inside the API process, taking jobs from the
    broker like any other and talking to this API over loopback HTTP."""
    address = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    api = f"http://[{address}]:{settings.port}" if ":" in address else f"http://{address}:{settings.port}"
    return WorkerHost(HostConfig(broker=settings.broker or "", api=api, token=token, data_dir=settings.data_dir,
                                 name=f"{socket.gethostname()}-api", device=settings.device, slots=settings.workers,
                                 shutdown_grace_s=settings.shutdown_grace_s,
                                 # Its API is this process: stopping, an API that does not answer is gone with it.
                                 stopping_api_retry_s=0.0))


async def _answer(resp: aiohttp.ClientResponse, path: str) -> Any:
    if resp.status in (502, 503, 504) or resp.status >= 500:
        raise _Retry(f"{resp.status} from {path}")
    if resp.status == 409:
        raise StaleAttempt(path)
    if resp.status >= 400:
        raise RuntimeError(f"the API refused {path}: {resp.status} {await resp.text()}")
    return await resp.json() if resp.content_type == "application/json" else None
