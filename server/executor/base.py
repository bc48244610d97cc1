"""The small interface between the job manager and whatever executes jobs.

The local process pool (pool.py) and the distributed one (broker.py) implement it. Pipelines never import anything from here.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol


@dataclass(frozen=True)
class WorkItem:
    """Everything a worker needs to run one job; plain data so it can cross a process boundary."""

    job_id: str
    tool: str
    plan: list[dict[str, Any]]
    input_path: str
    output_dir: str
    output_stem: str
    input_format: str
    options: dict[str, Any] = field(default_factory=dict)
    mask_path: str | None = None  # the caller's repair mask (restore-photo), in the job folder

    def to_message(self) -> dict[str, Any]:
        return {"op": "run", "job": self.__dict__}


class EventKind(str, enum.Enum):
    STARTED = "started"
    PROGRESS = "progress"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # stopped at a boundary because the server is shutting down
    LOST = "lost"  # the worker died while running the job


@dataclass(frozen=True)
class ExecutorEvent:
    kind: EventKind
    job_id: str
    data: dict[str, Any] = field(default_factory=dict)


class Executor(Protocol):
    async def start(self) -> None: ...

    async def stop(self, grace_s: float) -> None:
        """Stop taking work; let running jobs reach a step boundary, report them INTERRUPTED."""

    def submit(self, item: WorkItem, *, front: bool = False) -> None: ...

    def cancel(self, job_id: str) -> bool:
        """Drop a waiting job or ask its worker to stop. True when a worker still runs it: that
        worker will report its end (cancelled, or lost) and uses the job's files until then."""

    def events(self) -> AsyncIterator[ExecutorEvent]:
        """Every event, in order; the iteration ends once stop() has finished."""

    def queue_position(self, job_id: str) -> int | None:
        """1-based position among jobs waiting for a worker; None when not waiting."""

    def queued_job_ids(self) -> list[str]: ...

    def describe(self) -> dict[str, Any]: ...

    async def handed_over(self, job_ids: list[str]) -> None:
        """Return once the executor holds these submitted jobs where a restart of this process
        cannot lose them (the broker: BullMQ has them), or after a bounded wait; awaited before the 202."""

    def check_accepting(self) -> None:
        """Raise an ApiError (e.g. 503) when a new job could not be handed over now."""

    def adopt(self, item: WorkItem, job: Any) -> bool:
        """At start: True when the job, stored as running, still runs somewhere and goes on."""
