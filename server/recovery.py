"""Restart recovery: what becomes of the jobs a stopped server left queued or running.

Worker jobs run again. One still marked running (the server was killed mid-job; a drained server
put its jobs back itself) goes back to the queue first, unless that attempt was its
``max_attempts``-th: then it fails, as a job that keeps killing its worker does. In-process work
(installs) died with the old server and fails; running it again resumes.
The status changes themselves are the manager's, handed in as ``fail``, ``requeue`` and ``enqueue``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from server.jobs import Job, JobStatus

RESUMING = "Resuming after a server restart"


def recover(jobs: Iterable[Job], max_attempts: int, *, fail: Callable[[Job, dict[str, Any]], None],
            requeue: Callable[[Job, str], None], enqueue: Callable[[Job], None]) -> int:
    """Fail, requeue or resubmit each job (in creation order, so the queue keeps its order);
    returns how many were put back in the queue."""
    queued = 0
    for job in jobs:
        error = _cannot_resume(job, max_attempts)
        if error is not None:
            fail(job, error)
            continue
        if job.status == JobStatus.RUNNING:
            requeue(job, RESUMING)
        enqueue(job)
        queued += 1
    return queued


def _cannot_resume(job: Job, max_attempts: int) -> dict[str, Any] | None:
    if job.kind.in_process:
        return {"code": "INTERRUPTED", "message": "The server stopped during this job; run it again "
                "(an interrupted download resumes where it stopped)."}
    if job.status == JobStatus.RUNNING and job.attempts >= max_attempts:
        return {"code": "WORKER_CRASHED",
                "message": f"The server stopped while this job was running, {job.attempts} times."}
    return None
