"""When a job's files go: its folder, the rule that a worker's folder is left alone, the TTL sweep.

A finished job's record and last events stay after it expired (410s and reconnects); only its
folder and its progress history go. The EXPIRED status itself is written by the manager's one
status-writing function, handed in as ``record``.
"""
from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from server.db import Store
from server.events import EventHub
from server.jobs import Job, JobStatus

Record = Callable[..., None]  # JobManager._record


class JobFolders:
    """Each job's folder under ``root``. A folder is never removed from under a worker still using
    it (it would fail reading or writing them: cancel during decode); it goes when the worker lets go."""

    def __init__(self, root: Path):
        self.root = root
        self._held_by_worker: set[str] = set()

    def path(self, job_id: str) -> Path:
        return self.root / job_id

    def hold(self, job_id: str) -> None:
        """The job ended but its worker still uses the folder."""
        self._held_by_worker.add(job_id)

    def held(self, job_id: str) -> bool:
        return job_id in self._held_by_worker

    def release(self, job_id: str) -> None:
        """The worker let go of the folder: it goes now."""
        self._held_by_worker.discard(job_id)
        self.remove(job_id)

    def remove(self, job_id: str) -> None:
        if job_id not in self._held_by_worker:
            shutil.rmtree(self.path(job_id), ignore_errors=True)


class Expiry:
    def __init__(self, store: Store, hub: EventHub, folders: JobFolders, record: Record):
        self.store, self.hub, self.folders = store, hub, folders
        self._record = record

    def expire(self, job: Job, **fields: Any) -> None:
        """A finished job's files go; its record and last events stay."""
        self.folders.remove(job.id)
        self._record(job, None, status=JobStatus.EXPIRED, **fields)
        self.store.prune_events(job.id, keep_from=job.last_event_id)
        self.hub.forget(job.id)

    def sweep(self, now: float | None = None) -> int:
        """Expire every finished job whose TTL has passed; returns how many."""
        expired = self.store.expired_job_ids(time.time() if now is None else now)
        for job_id in expired:
            job = self.store.get_job(job_id)
            if job is not None:
                self.expire(job)
        return len(expired)

    async def sweep_forever(self, interval_s: float) -> None:
        while True:
            self.sweep()
            await asyncio.sleep(interval_s)
