"""Reading a job's ``text/event-stream``: lines in, :class:`Event` s out."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("complete", "failed", "cancelled")


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of a job: ``type`` is progress, complete, failed or cancelled."""

    id: int | None
    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL


@dataclass
class SseParser:
    """Turns the lines of a ``text/event-stream`` into events (comments such as pings are dropped)."""

    fields: dict[str, list[str]] = field(default_factory=dict)

    def feed(self, line: str) -> Event | None:
        if line.startswith(":"):
            return None
        if line:
            key, _, value = line.partition(":")
            self.fields.setdefault(key, []).append(value.removeprefix(" "))
            return None
        fields, self.fields = self.fields, {}
        if "data" not in fields:
            return None
        raw_id = (fields.get("id") or [""])[-1]
        return Event(int(raw_id) if raw_id.isdigit() else None, (fields.get("event") or ["message"])[-1],
                     json.loads("\n".join(fields["data"])))
