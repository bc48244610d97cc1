"""Batches: many ordinary jobs under one id, with one event stream and one webhook.

The tracker follows every event the job manager publishes (an :class:`EventHub` observer). For a
job of an unfinished batch it appends the event, tagged with its ``jobId``, to the batch's log,
and after a change of the job's status a ``batch`` event with the running totals. When the last
job ended, the batch's webhook delivery is stored, then the final ``batch`` event (``"status":
"done"``), which ends the batch stream.

At start, before the manager runs, the log is reconciled with the jobs as stored: a job that
ended while its event could not reach the log (the server was killed in between) is logged then.
"""
from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from aiohttp import web

from server.batch_store import Batch, BatchStore, Event
from server.db import Store
from server.events import EventHub, JobEvent
from server.jobs import Job
from server.webhooks import Webhooks

BATCH_EVENT = "batch"
_ENDED = ("complete", "failed", "cancelled")
STATUSES = ("queued", "running") + _ENDED


def status_of(event: JobEvent) -> str:
    """A job's status as its event tells it (a progress event while queued says phase "queued")."""
    if event.type in _ENDED:
        return event.type
    return "queued" if event.data.get("phase") == "queued" else "running"


def batch_ended(event: JobEvent) -> bool:
    return event.type == BATCH_EVENT and event.data.get("status") == "done"


class BatchTracker:
    def __init__(self, store: BatchStore, webhooks: Webhooks, job_events: EventHub):
        self.store = store
        self.hub = EventHub(store)  # type: ignore[arg-type]  # BatchStore has the reading side it uses
        self._webhooks = webhooks
        self._job_events = job_events
        self._open: dict[str, Batch] = {}  # unfinished batches
        self._statuses: dict[str, dict[str, str]] = {}  # batch id -> job id -> status
        self._batch_of: dict[str, str] = {}  # job id -> its unfinished batch

    def get(self, batch_id: str) -> Batch | None:
        return self._open.get(batch_id) or self.store.get(batch_id)

    def create(self, tool: str, jobs: list[Job], webhook_url: str | None) -> Batch:
        """A batch of jobs just queued: its log starts with each job's latest event and the totals."""
        batch = Batch(id=str(uuid.uuid4()), tool=tool, job_ids=[job.id for job in jobs], webhook_url=webhook_url,
                      created_at=time.time())
        self._statuses[batch.id] = {job.id: job.status.value for job in jobs}
        latest = [(job.id, self._job_events.last(job.id)) for job in jobs]
        events = [_tagged(job_id, event) for job_id, event in latest if event is not None]
        events.append((BATCH_EVENT, self._totals(batch)))
        self.store.insert(batch, self._numbered(batch, events))
        self._track(batch)
        return batch

    def observe(self, job_id: str, event: JobEvent) -> None:
        """Every published job event; those of batch jobs go to their batch's log."""
        batch_id = self._batch_of.get(job_id)
        if batch_id is not None:
            self._append(self._open[batch_id], {job_id: event})

    def recover(self, jobs: Store) -> None:
        """Reopen the unfinished batches; log what their jobs did that the log missed."""
        for batch in self.store.unfinished():
            self._statuses[batch.id] = logged = _logged_statuses(batch, self.store.events_after(batch.id, 0))
            self._track(batch)
            stored = {job_id: JobEvent(*row) for job_id in batch.job_ids if (row := jobs.last_event(job_id))}
            missed = {job_id: event for job_id, event in stored.items() if status_of(event) != logged.get(job_id)}
            if missed:
                self._append(batch, missed)

    def close(self) -> None:
        self.hub.close()

    # -- the log ----------------------------------------------------------------------------
    def _append(self, batch: Batch, job_events: dict[str, JobEvent]) -> None:
        statuses = self._statuses[batch.id]
        events: list[tuple[str, dict[str, Any]]] = []
        changed = False
        for job_id, event in job_events.items():
            events.append(_tagged(job_id, event))
            changed |= statuses.get(job_id) != status_of(event)
            statuses[job_id] = status_of(event)
        if changed:
            totals = self._totals(batch)
            if totals["status"] == "done":
                self._finish(batch, totals)
            events.append((BATCH_EVENT, totals))
        numbered = self._numbered(batch, events)
        self.store.append(batch, numbered)
        for seq, kind, data in numbered:
            self.hub.publish(batch.id, JobEvent(seq, kind, data))

    def _finish(self, batch: Batch, totals: dict[str, Any]) -> None:
        """The last job ended: the webhook is stored before the final event is."""
        batch.finished_at = time.time()
        if batch.webhook_url:
            jobs = [{"jobId": job_id, "status": status} for job_id, status in self._statuses[batch.id].items()]
            self._webhooks.record(f"batch:{batch.id}", batch.webhook_url, {
                "event": "batch.done", "batchId": batch.id, "status": "done", "total": totals["total"],
                "counts": totals["counts"], "jobs": jobs, "downloadUrl": f"/api/v1/batches/{batch.id}/download"})
        self._open.pop(batch.id, None)
        for job_id in batch.job_ids:
            self._batch_of.pop(job_id, None)
        self._statuses.pop(batch.id, None)

    def _totals(self, batch: Batch) -> dict[str, Any]:
        counts = Counter(self._statuses[batch.id].values())
        done = all(status in _ENDED for status in self._statuses[batch.id].values())
        return {"batchId": batch.id, "status": "done" if done else "running", "total": len(batch.job_ids),
                "counts": {status: counts.get(status, 0) for status in STATUSES}}

    def _track(self, batch: Batch) -> None:
        self._open[batch.id] = batch
        for job_id in batch.job_ids:
            self._batch_of[job_id] = batch.id

    @staticmethod
    def _numbered(batch: Batch, events: list[tuple[str, dict[str, Any]]]) -> list[Event]:
        first = batch.last_seq + 1
        batch.last_seq += len(events)
        return [(first + i, kind, data) for i, (kind, data) in enumerate(events)]


def _tagged(job_id: str, event: JobEvent) -> tuple[str, dict[str, Any]]:
    return event.type, {"jobId": job_id, **event.data}


def _logged_statuses(batch: Batch, events: list[Event]) -> dict[str, str]:
    statuses = {job_id: "queued" for job_id in batch.job_ids}
    for seq, kind, data in events:
        if kind != BATCH_EVENT:
            statuses[data["jobId"]] = status_of(JobEvent(seq, kind, data))
    return statuses


# The batch tracker (its log, its streams' hub).
BATCHES = web.AppKey("batches", BatchTracker)
