"""The job record and the rules for how its status may change."""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any


class JobKind(str, enum.Enum):
    """What a job does. The values are what the database and the API have always stored."""
    TOOL = "tool"  # a tool's plan, run by a worker process
    BUNDLE_INSTALL = "bundle-install"  # a bundle download, run by the server itself

    @property
    def in_process(self) -> bool:
        return self is not JobKind.TOOL


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # results removed (TTL passed, or deleted by request)

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


# Which status may follow which. RUNNING -> QUEUED happens when a worker dies or the server stops
# mid-job and the job is put back for another attempt.
ALLOWED = {
    JobStatus.QUEUED: {JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED},
    JobStatus.RUNNING: {JobStatus.QUEUED, JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.COMPLETE: {JobStatus.EXPIRED},
    JobStatus.FAILED: {JobStatus.EXPIRED},
    JobStatus.CANCELLED: {JobStatus.EXPIRED},
    JobStatus.EXPIRED: set(),
}

# The SSE event type that announces each terminal status.
TERMINAL_EVENT = {
    JobStatus.COMPLETE: "complete",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


class InvalidTransition(RuntimeError):
    pass


@dataclass
class Job:
    id: str
    kind: JobKind
    tool: str  # the tool a TOOL job runs; "" for other kinds
    params: dict[str, Any]
    plan: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    status: JobStatus = JobStatus.QUEUED
    input_name: str = ""
    input_file: str = ""
    mask_file: str = ""  # the caller's repair mask in the job folder (restore-photo); "" without one
    input_size: int = 0
    input_format: str = ""
    output_stem: str = "result"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    attempts: int = 0
    phase: str = "queued"
    stage: str = "Waiting in queue"
    percent: float = 0.0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    last_event_id: int = 0
    # What a compatibility adapter must remember about its request (e.g. seed 002's return_type).
    meta: dict[str, Any] = field(default_factory=dict)
    bundle: str = ""  # the bundle a BUNDLE_INSTALL job installs; "" for other kinds

    def __post_init__(self) -> None:
        self.kind = JobKind(self.kind)  # also from the plain strings a database row holds


def check_transition(job: Job, new: JobStatus) -> None:
    if new not in ALLOWED[job.status]:
        raise InvalidTransition(f"job {job.id}: {job.status.value} -> {new.value} is not allowed")
