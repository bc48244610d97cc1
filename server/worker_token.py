"""The shared secret that worker hosts present on the internal routes (``DATA_DIR/worker-token``).

Made once, on the first start with a broker, readable by its owner only (0600): whoever holds it can
fetch any job's input and upload results, so it is copied to worker hosts like an SSH key.
"""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

TOKEN_FILE = "worker-token"


def ensure_worker_token(data_dir: Path) -> str:
    path = data_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_worker_token(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return read_worker_token(path)


def read_worker_token(path: Path) -> str:
    token = path.read_text().strip()
    if len(token) < 16:
        raise ValueError(f"{path} does not hold a worker token")
    return token


def token_matches(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
