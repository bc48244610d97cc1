"""Webhook deliveries in SQLite, in their own table of the server's database (own connection, as
the key store has; WAL mode lets both write)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from server.db import open_database
from server.views import iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at REAL,
    last_status INTEGER,
    last_error TEXT,
    delivered INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending ON webhook_deliveries(done, created_at);
"""


@dataclass
class Delivery:
    id: str
    subject: str  # "job:<id>" or "batch:<id>": what ended
    url: str
    event: str
    body: str  # the exact JSON sent on every attempt
    created_at: float
    attempts: int = 0
    last_attempt_at: float | None = None
    last_status: int | None = None  # the receiver's HTTP status
    last_error: str | None = None  # or why there was none (refused, timed out, connection failed)
    delivered: bool = False
    done: bool = False  # delivered, or given up after the last retry

    def due_at(self, backoff: tuple[float, ...]) -> float:
        if self.attempts == 0:
            return self.created_at
        if not backoff:
            return float("inf")
        return (self.last_attempt_at or self.created_at) + backoff[min(self.attempts, len(backoff)) - 1]

    def view(self, next_at: float | None) -> dict[str, Any]:
        return {"url": self.url, "deliveryId": self.id, "attempts": self.attempts, "lastStatus": self.last_status,
                "lastError": self.last_error, "delivered": self.delivered,
                "lastAttemptAt": iso(self.last_attempt_at), "nextAttemptAt": iso(next_at)}


_COLUMNS = [f.name for f in fields(Delivery)]


class DeliveryStore:
    def __init__(self, path: Path):
        self._db = open_database(path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    def insert(self, delivery: Delivery) -> None:
        """Stored once per subject; a second one for the same subject is ignored."""
        marks = ", ".join("?" for _ in _COLUMNS)
        self._db.execute(f"INSERT OR IGNORE INTO webhook_deliveries ({', '.join(_COLUMNS)}) VALUES ({marks})",
                         [getattr(delivery, c) for c in _COLUMNS])

    def get(self, subject: str) -> Delivery | None:
        row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM webhook_deliveries WHERE subject = ?",
                               (subject,)).fetchone()
        return _delivery(row) if row else None

    def pending(self) -> list[Delivery]:
        rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM webhook_deliveries WHERE done = 0 "
                                "ORDER BY created_at").fetchall()
        return [_delivery(row) for row in rows]

    def record_attempt(self, delivery_id: str, at: float, status: int | None, error: str | None, *,
                       delivered: bool, done: bool) -> None:
        self._db.execute("UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = ?, "
                         "last_status = ?, last_error = ?, delivered = ?, done = ? WHERE id = ?",
                         (at, status, error, int(delivered), int(done), delivery_id))


def _delivery(row: tuple) -> Delivery:
    values = dict(zip(_COLUMNS, row))
    values["delivered"], values["done"] = bool(values["delivered"]), bool(values["done"])
    return Delivery(**values)
