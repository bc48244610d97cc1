"""Batches in SQLite: the batch record and its own event log, in tables of the server's database
(own connection, as the key store has). The log gives a batch stream ids that increase per batch
and survive restarts, so ``Last-Event-ID`` replays exactly what a client missed.

``events_after`` and ``last_event`` are the reading side an :class:`~server.events.EventHub`
needs, so batch streams reuse the job streams' hub (its cache and wake-ups).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from server.db import open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    tool TEXT NOT NULL,
    job_ids TEXT NOT NULL,
    webhook_url TEXT,
    created_at REAL NOT NULL,
    finished_at REAL,
    last_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_unfinished ON batches(finished_at);
CREATE TABLE IF NOT EXISTS batch_events (
    batch_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (batch_id, seq)
) WITHOUT ROWID;
"""

Event = tuple[int, str, dict]


@dataclass
class Batch:
    id: str
    tool: str
    job_ids: list[str]
    webhook_url: str | None
    created_at: float
    finished_at: float | None = None  # when its last job ended
    last_seq: int = 0


_COLUMNS = "id, tool, job_ids, webhook_url, created_at, finished_at, last_seq"


class BatchStore:
    def __init__(self, path: Path):
        self._db = open_database(path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    def insert(self, batch: Batch, events: list[Event]) -> None:
        """A new batch and its first events, in one transaction."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(f"INSERT INTO batches ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (batch.id, batch.tool, json.dumps(batch.job_ids), batch.webhook_url,
                              batch.created_at, batch.finished_at, batch.last_seq))
            self._insert_events(batch.id, events)

    def append(self, batch: Batch, events: list[Event]) -> None:
        """More events, and the batch's new last id (and end), in one transaction."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("UPDATE batches SET last_seq = ?, finished_at = ? WHERE id = ?",
                             (batch.last_seq, batch.finished_at, batch.id))
            self._insert_events(batch.id, events)

    def get(self, batch_id: str) -> Batch | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return _batch(row) if row else None

    def unfinished(self) -> list[Batch]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM batches WHERE finished_at IS NULL ORDER BY created_at")
        return [_batch(row) for row in rows.fetchall()]

    def _insert_events(self, batch_id: str, events: list[Event]) -> None:
        self._db.executemany("INSERT INTO batch_events (batch_id, seq, type, data) VALUES (?, ?, ?, ?)",
                             [(batch_id, seq, kind, json.dumps(data)) for seq, kind, data in events])

    # -- what an EventHub reads -------------------------------------------------------------
    def events_after(self, batch_id: str, seq: int) -> list[Event]:
        cur = self._db.execute("SELECT seq, type, data FROM batch_events WHERE batch_id = ? AND seq > ? "
                               "ORDER BY seq", (batch_id, seq))
        return [(s, t, json.loads(d)) for s, t, d in cur.fetchall()]

    def last_event(self, batch_id: str) -> Event | None:
        row = self._db.execute("SELECT seq, type, data FROM batch_events WHERE batch_id = ? ORDER BY seq DESC "
                               "LIMIT 1", (batch_id,)).fetchone()
        return (row[0], row[1], json.loads(row[2])) if row else None


def _batch(row: tuple) -> Batch:
    batch_id, tool, job_ids, webhook_url, created_at, finished_at, last_seq = row
    return Batch(batch_id, tool, json.loads(job_ids), webhook_url, created_at, finished_at, last_seq)
