"""The server's shutdown state, shared by the app, the submission service and the SSE streams."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Lifecycle:
    """Shutdown state: once draining, new work is refused with 503 and SSE streams end."""

    draining: bool = False
    workers_stopped: bool = False  # the running steps have drained (their jobs are queued again)
