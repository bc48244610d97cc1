"""SQLite persistence for jobs and their events.

WAL mode with synchronous=NORMAL: a committed transaction survives the process being killed
(SIGKILL), which is the durability the job contract promises. Statements are small and indexed,
so they run on the event loop thread without noticeable blocking (tens of microseconds).
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable

from server.jobs import Job, JobKind, JobStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    tool TEXT NOT NULL,
    params TEXT NOT NULL,
    plan TEXT NOT NULL,
    skipped TEXT NOT NULL,
    status TEXT NOT NULL,
    input_name TEXT NOT NULL,
    input_file TEXT NOT NULL,
    mask_file TEXT NOT NULL DEFAULT '',
    input_size INTEGER NOT NULL,
    input_format TEXT NOT NULL,
    output_stem TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    expires_at REAL,
    attempts INTEGER NOT NULL,
    phase TEXT NOT NULL,
    stage TEXT NOT NULL,
    percent REAL NOT NULL,
    result TEXT,
    error TEXT,
    last_event_id INTEGER NOT NULL,
    meta TEXT NOT NULL,
    bundle TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created_at);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""

_JSON_FIELDS = {"params", "plan", "skipped", "result", "error", "meta"}
# Columns added after the first release: a database made before gets them with these definitions,
# then the statement (if any) that fills them in from what older versions stored instead.
_ADDED_COLUMNS = {
    "mask_file": ("TEXT NOT NULL DEFAULT ''", None),
    # Installs kept their bundle's name in ``tool``.
    "bundle": ("TEXT NOT NULL DEFAULT ''",
               f"UPDATE jobs SET bundle = tool, tool = '' WHERE kind = '{JobKind.BUNDLE_INSTALL.value}'"),
}
_COLUMNS = [f.name for f in fields(Job)]


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """The data dir's SQLite file as every store opens it: autocommit (each store opens its own
    transactions), WAL with NORMAL sync (durable at each commit's WAL write), a 5 s busy wait for
    the other connections to the same file; then ``schema`` (idempotent CREATE ... IF NOT EXISTS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(schema)
    return db


class Store:
    def __init__(self, path: Path):
        self._db = open_database(path, SCHEMA)
        self._add_missing_columns()

    def close(self) -> None:
        self._db.close()

    def _add_missing_columns(self) -> None:
        # One transaction per column, so a crash cannot leave a column added but not filled in;
        # IMMEDIATE, so a second process opening the same database waits instead of adding it twice.
        for name, (definition, fill) in _ADDED_COLUMNS.items():
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                if name in {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}:
                    continue
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")
                if fill is not None:
                    self._db.execute(fill)

    # -- jobs -------------------------------------------------------------------------------
    def insert_job(self, job: Job, *, event: tuple[int, str, dict]) -> None:
        """Persist a new job and its first event in one transaction."""
        row = _job_to_row(job)
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({marks})",
                             [row[c] for c in _COLUMNS])
            self._insert_event(job.id, *event)

    def save_job(self, job: Job, *, event: tuple[int, str, dict] | None = None) -> None:
        """Persist the whole job row, and optionally one new event, in one transaction."""
        row = _job_to_row(job)
        assignments = ", ".join(f"{c} = ?" for c in _COLUMNS if c != "id")
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?",
                             [row[c] for c in _COLUMNS if c != "id"] + [job.id])
            if event is not None:
                self._insert_event(job.id, *event)

    def get_job(self, job_id: str) -> Job | None:
        cur = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,))
        row = cur.fetchone()
        return _row_to_job(row) if row else None

    def jobs_with_status(self, statuses: Iterable[JobStatus]) -> list[Job]:
        values = [s.value for s in statuses]
        marks = ", ".join("?" for _ in values)
        cur = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE status IN ({marks}) ORDER BY created_at",
            values)
        return [_row_to_job(r) for r in cur.fetchall()]

    def expired_job_ids(self, now: float) -> list[str]:
        cur = self._db.execute(
            "SELECT id FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ? AND status IN (?, ?, ?)",
            (now, JobStatus.COMPLETE.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value))
        return [r[0] for r in cur.fetchall()]

    # -- events -----------------------------------------------------------------------------
    def _insert_event(self, job_id: str, seq: int, kind: str, data: dict) -> None:
        self._db.execute("INSERT INTO events (job_id, seq, type, data) VALUES (?, ?, ?, ?)",
                         (job_id, seq, kind, json.dumps(data)))

    def events_after(self, job_id: str, seq: int) -> list[tuple[int, str, dict]]:
        cur = self._db.execute(
            "SELECT seq, type, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq", (job_id, seq))
        return [(s, t, json.loads(d)) for s, t, d in cur.fetchall()]

    def last_event(self, job_id: str) -> tuple[int, str, dict] | None:
        cur = self._db.execute(
            "SELECT seq, type, data FROM events WHERE job_id = ? ORDER BY seq DESC LIMIT 1", (job_id,))
        row = cur.fetchone()
        return (row[0], row[1], json.loads(row[2])) if row else None

    def prune_events(self, job_id: str, keep_from: int) -> None:
        """Drop a finished job's progress history, keeping its last events for reconnects."""
        self._db.execute("DELETE FROM events WHERE job_id = ? AND seq < ?", (job_id, keep_from))


def _job_to_row(job: Job) -> dict[str, Any]:
    row = {c: getattr(job, c) for c in _COLUMNS}
    row["kind"] = job.kind.value
    row["status"] = job.status.value
    for name in _JSON_FIELDS:
        row[name] = None if row[name] is None else json.dumps(row[name])
    return row


def _row_to_job(row: tuple) -> Job:
    values = dict(zip(_COLUMNS, row))
    values["status"] = JobStatus(values["status"])
    for name in _JSON_FIELDS:
        values[name] = None if values[name] is None else json.loads(values[name])
    return Job(**values)
