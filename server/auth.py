"""API keys: created once and shown once, stored only as a hash; checked by one middleware.

Keys are 256-bit random tokens, so a plain SHA-256 of the key is a safe lookup hash (no password
stretching is needed for high-entropy secrets). Accepted as ``Authorization: Bearer KEY`` or
``X-API-KEY: KEY``; as ``?key=KEY`` only where a browser cannot send headers (EventSource on the
progress stream, <img> and links to downloads): a key in a URL ends up in histories and logs.
"""
from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""
PREFIX = "rst_"
# The GET routes a browser reaches without headers: EventSource and <img>/<a href> downloads.
QUERY_KEY_ROUTES = frozenset({"/api/v1/jobs/{id}/progress", "/api/v1/download/{id}/{filename}",
                              "/api/v1/batches/{id}/progress", "/api/v1/batches/{id}/download"})


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    created_at: float
    revoked_at: float | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, db_path: Path):
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, name: str) -> tuple[str, ApiKey]:
        key = PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(id=secrets.token_hex(6), name=name, prefix=key[:10], created_at=time.time(), revoked_at=None)
        try:
            self._db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                             (record.id, name, _hash(key), record.prefix, record.created_at))
        except sqlite3.IntegrityError:
            raise ValueError(f"a key named '{name}' already exists") from None
        return key, record

    def list(self) -> list[ApiKey]:
        rows = self._db.execute("SELECT id, name, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at")
        return [ApiKey(*row) for row in rows.fetchall()]

    def revoke(self, name_or_id: str) -> bool:
        cur = self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE (name = ? OR id = ?) AND revoked_at IS NULL",
                               (time.time(), name_or_id, name_or_id))
        return cur.rowcount > 0

    def verify(self, key: str) -> ApiKey | None:
        row = self._db.execute("SELECT id, name, prefix, created_at, revoked_at FROM api_keys "
                               "WHERE hash = ? AND revoked_at IS NULL", (_hash(key),)).fetchone()
        return ApiKey(*row) if row else None


def presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    if request.headers.get("X-API-KEY"):
        return request.headers["X-API-KEY"].strip()
    if takes_query_key(request):
        return request.query.get("key")
    return None


def takes_query_key(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return request.method == "GET" and resource is not None and resource.canonical in QUERY_KEY_ROUTES
