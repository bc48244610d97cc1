"""Per-job event streams for SSE subscribers.

Events are persisted by the job manager (SQLite) and published here. A subscriber keeps a cursor
(the last event id it sent) and asks for everything after it, so it can neither miss nor repeat an
event, and a slow subscriber costs no memory beyond its cursor. Recent jobs' events are cached in
memory so thousands of subscribers of one job do not each query the database.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from server.db import Store


@dataclass(frozen=True)
class JobEvent:
    seq: int
    type: str  # progress | complete | failed | cancelled
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type != "progress"


class EventHub:
    def __init__(self, store: Store, cached_jobs: int = 256):
        self._store = store
        self._cache: OrderedDict[str, list[JobEvent]] = OrderedDict()
        self._cached_jobs = cached_jobs
        self._signals: dict[str, asyncio.Event] = {}
        self._closed = False
        self._observers: list[Callable[[str, JobEvent], None]] = []

    def observe(self, observer: Callable[[str, JobEvent], None]) -> None:
        """Call ``observer(job_id, event)`` with every event published (batches follow their jobs)."""
        self._observers.append(observer)

    def publish(self, job_id: str, event: JobEvent) -> None:
        """Called after the event was persisted. Wakes every subscriber of the job."""
        for observer in self._observers:
            observer(job_id, event)
        cached = self._cache.get(job_id)
        if cached is not None:
            cached.append(event)
        signal = self._signals.pop(job_id, None)
        if signal is not None:
            signal.set()

    def after(self, job_id: str, seq: int) -> list[JobEvent]:
        return [e for e in self._cached(job_id) if e.seq > seq]

    def last(self, job_id: str) -> JobEvent | None:
        events = self._cached(job_id)
        if events:
            return events[-1]
        row = self._store.last_event(job_id)
        return JobEvent(*row) if row else None

    async def wait_after(self, job_id: str, seq: int, timeout: float) -> list[JobEvent]:
        """Events after ``seq``; waits up to ``timeout`` seconds for one if there is none yet."""
        signal = self._signals.setdefault(job_id, asyncio.Event())
        events = self.after(job_id, seq)
        if events or self._closed:
            return events
        try:
            await asyncio.wait_for(signal.wait(), timeout)
        except asyncio.TimeoutError:
            return []
        return self.after(job_id, seq)

    def forget(self, job_id: str) -> None:
        self._cache.pop(job_id, None)

    def close(self) -> None:
        """Wake every waiting subscriber so streams can end at shutdown."""
        self._closed = True
        for signal in self._signals.values():
            signal.set()
        self._signals.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def _cached(self, job_id: str) -> list[JobEvent]:
        events = self._cache.get(job_id)
        if events is None:
            events = [JobEvent(*row) for row in self._store.events_after(job_id, 0)]
            self._cache[job_id] = events
            while len(self._cache) > self._cached_jobs:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(job_id)
        return events
