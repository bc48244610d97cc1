"""A pool of worker processes on this machine, one per device slot.

Each worker is a fresh interpreter (``python -m server.executor.worker``: spawn semantics, no
inherited state) that loads models once and keeps them warm. The pool talks to it in JSON lines
over pipes read by asyncio streams, so progress reaches the event loop without blocking it. A
worker that dies is replaced; the job it was running is reported LOST so the manager can retry it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections import deque
from typing import Any, AsyncIterator

from server.executor.base import EventKind, ExecutorEvent, WorkItem
from server.settings import Settings

log = logging.getLogger("restora.pool")

_TERMINAL_MESSAGES = {
    "done": EventKind.DONE,
    "failed": EventKind.FAILED,
    "cancelled": EventKind.CANCELLED,
    "interrupted": EventKind.INTERRUPTED,
}
_MAX_RESPAWN_DELAY_S = 30.0
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_LINE_LIMIT = 16 * 1024 * 1024
# How a worker process is started; its JSON config is appended as the last argument.
WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "server.executor.worker")


class ProtocolError(ValueError):
    """A worker sent a line the pool cannot read: its protocol stream can no longer be trusted."""


class WorkerSlot:
    """One device slot. Its process may be replaced many times over the pool's life."""

    def __init__(self, index: int, device: str, threads: int):
        self.index = index
        self.device = device
        self.threads = threads
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = False
        self.job: WorkItem | None = None
        self.info: dict[str, Any] = {}
        self.restarts = 0
        self.early_deaths = 0  # consecutive deaths before reporting ready
        self.cancel_timer: asyncio.TimerHandle | None = None
        self.reader: asyncio.Task | None = None
        self.fault: str | None = None  # why the pool stopped this process, when it broke the protocol

    @property
    def idle(self) -> bool:
        return self.ready and self.job is None

    def describe(self) -> dict[str, Any]:
        state = "busy" if self.job else "idle" if self.ready else "starting"
        return {"index": self.index, "state": state, "device": self.info.get("device", self.device),
                "pid": self.proc.pid if self.proc else None, "jobId": self.job.job_id if self.job else None,
                "restarts": self.restarts, "threads": self.info.get("threads", self.threads)}


class ProcessPool:
    def __init__(self, settings: Settings, worker_config: dict[str, Any] | None = None):
        self._settings = settings
        self._worker_config = dict(worker_config or {})
        self._queue: deque[WorkItem] = deque()
        # None marks the end of the stream, after stop().
        self._events: asyncio.Queue[ExecutorEvent | None] = asyncio.Queue()
        threads = _threads_per_worker(settings.workers)
        self._slots = [WorkerSlot(i, settings.device, threads) for i in range(settings.workers)]
        self._stopping = False

    # -- Executor interface -----------------------------------------------------------------
    async def start(self) -> None:
        for slot in self._slots:
            await self._spawn(slot)

    def submit(self, item: WorkItem, *, front: bool = False) -> None:
        (self._queue.appendleft if front else self._queue.append)(item)
        self._dispatch()

    def cancel(self, job_id: str) -> bool:
        for item in list(self._queue):
            if item.job_id == job_id:
                self._queue.remove(item)
                return False
        for slot in self._slots:
            if slot.job and slot.job.job_id == job_id:
                self._send(slot, {"op": "cancel", "jobId": job_id})
                # A step that never reaches a boundary must not hold the slot forever.
                slot.cancel_timer = asyncio.get_running_loop().call_later(
                    self._settings.cancel_grace_s, self._kill, slot, "cancel grace period passed")
                return True
        return False

    async def events(self) -> AsyncIterator[ExecutorEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    def queue_position(self, job_id: str) -> int | None:
        for position, item in enumerate(self._queue, start=1):
            if item.job_id == job_id:
                return position
        return None

    def queued_job_ids(self) -> list[str]:
        return [item.job_id for item in self._queue]

    def describe(self) -> dict[str, Any]:
        return {"workers": [s.describe() for s in self._slots], "queueDepth": len(self._queue)}

    async def handed_over(self, job_ids: list[str]) -> None:
        return None  # the queue is in this process; SQLite already holds the jobs for a restart

    def check_accepting(self) -> None:
        return None  # the queue is in this process

    def adopt(self, item: WorkItem, job: Any) -> bool:
        return False  # this pool's workers died with the old server

    async def stop(self, grace_s: float) -> None:
        self._stopping = True
        for slot in self._slots:
            self._send(slot, {"op": "stop"})
        alive = [s.proc.wait() for s in self._slots if s.proc and s.proc.returncode is None]
        if alive:
            _, pending = await asyncio.wait([asyncio.ensure_future(w) for w in alive], timeout=grace_s)
            if pending:
                for slot in self._slots:
                    self._kill(slot, "shutdown grace period passed")
                await asyncio.wait(pending, timeout=5)
        for slot in self._slots:
            if slot.reader:
                await asyncio.gather(slot.reader, return_exceptions=True)
        self._events.put_nowait(None)

    # -- internals --------------------------------------------------------------------------
    def _dispatch(self) -> None:
        for slot in self._slots:
            if not self._queue or self._stopping:
                return
            if slot.idle:
                item = self._queue.popleft()
                slot.job = item
                self._send(slot, item.to_message())
                self._emit(EventKind.STARTED, item.job_id, worker=slot.index)

    async def _spawn(self, slot: WorkerSlot) -> None:
        config = {**self._worker_config, "index": slot.index, "device": slot.device,
                  "threads": slot.threads, "maxPixels": self._settings.max_pixels}
        env = {**os.environ, **thread_env(slot.threads), **dict(self._settings.worker_env)}
        slot.ready, slot.info, slot.fault = False, {}, None
        slot.proc = await asyncio.create_subprocess_exec(
            *WORKER_COMMAND, json.dumps(config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, limit=_LINE_LIMIT)
        slot.reader = asyncio.create_task(self._read(slot, slot.proc))

    async def _read(self, slot: WorkerSlot, proc: asyncio.subprocess.Process) -> None:
        """Follow one worker process until it exits. A message that cannot be applied (not JSON,
        the wrong shape, over the line limit) ends that process, so its job is reported LOST and
        retried like any other crash; the reader never dies while the worker lives on."""
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                self._on_message(slot, _parse_message(line))
        except Exception as exc:  # ValueError (over the limit, not JSON), KeyError/TypeError (shape)
            slot.fault = "it sent a message the server could not read"
            log.error("worker %d sent a message the server could not read (%s: %.200s); stopping it",
                      slot.index, type(exc).__name__, exc)
            self._kill(slot, "protocol broken")
        returncode = await proc.wait()
        await self._on_exit(slot, returncode)

    def _on_message(self, slot: WorkerSlot, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ready":
            slot.ready, slot.info, slot.early_deaths = True, message, 0
            log.info("worker %d ready (pid %s, %s)", slot.index, message.get("pid"), message.get("device"))
            self._dispatch()
        elif kind == "progress" and slot.job and message.get("jobId") == slot.job.job_id:
            self._emit(EventKind.PROGRESS, slot.job.job_id, stage=message["stage"], percent=message["percent"])
        elif kind in _TERMINAL_MESSAGES and slot.job and message.get("jobId") == slot.job.job_id:
            job_id = slot.job.job_id
            self._release(slot)
            self._emit(_TERMINAL_MESSAGES[kind], job_id, **{k: v for k, v in message.items() if k != "type"})
            self._dispatch()

    async def _on_exit(self, slot: WorkerSlot, returncode: int) -> None:
        lost = slot.job
        self._release(slot)
        slot.ready = False
        if lost is not None:
            reason = slot.fault or _describe_exit(returncode)
            log.error("worker %d died while running job %s: %s", slot.index, lost.job_id, reason)
            kind = EventKind.INTERRUPTED if self._stopping else EventKind.LOST
            self._emit(kind, lost.job_id, reason=reason)
        if self._stopping:
            return
        slot.restarts += 1
        slot.early_deaths += 0 if slot.info else 1
        delay = min(_MAX_RESPAWN_DELAY_S, 0.5 * (2 ** slot.early_deaths - 1))
        if delay:
            log.error("worker %d exited (%s) before it was ready; retrying in %.1fs",
                      slot.index, _describe_exit(returncode), delay)
            await asyncio.sleep(delay)
        if not self._stopping:
            await self._spawn(slot)

    def _release(self, slot: WorkerSlot) -> None:
        slot.job = None
        if slot.cancel_timer is not None:
            slot.cancel_timer.cancel()
            slot.cancel_timer = None

    def _send(self, slot: WorkerSlot, message: dict[str, Any]) -> None:
        proc = slot.proc
        if proc is None or proc.returncode is not None or proc.stdin is None or proc.stdin.is_closing():
            return
        proc.stdin.write((json.dumps(message) + "\n").encode())

    def _kill(self, slot: WorkerSlot, why: str) -> None:
        if slot.proc and slot.proc.returncode is None:
            log.warning("killing worker %d (pid %d): %s", slot.index, slot.proc.pid, why)
            slot.proc.kill()

    def _emit(self, kind: EventKind, job_id: str, **data: Any) -> None:
        self._events.put_nowait(ExecutorEvent(kind, job_id, data))


def _parse_message(line: bytes) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ProtocolError(f"expected a JSON object, got {type(message).__name__}")
    return message


def thread_env(threads: int) -> dict[str, str]:
    """The worker's thread limits, in its environment from the start: OpenBLAS, OpenMP (torch,
    OpenCV, ONNX Runtime's sessions) and MKL read them when they load, which is at import."""
    return {name: str(threads) for name in _THREAD_VARIABLES}


def _threads_per_worker(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"
