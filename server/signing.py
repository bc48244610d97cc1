"""Signed, expiring download URLs for clients that fetch results without headers (compat routes)."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path


class UrlSigner:
    def __init__(self, secret: bytes):
        self._secret = secret

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> "UrlSigner":
        """The secret lives in the data dir (mode 0600), so signed URLs survive restarts."""
        path = data_dir / "url-secret"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
        return cls(path.read_bytes())

    def sign(self, path: str, ttl_s: float) -> str:
        expires = int(time.time() + ttl_s)
        return f"{path}?expires={expires}&sig={self._digest(path, expires)}"

    def check(self, path: str, expires: str | None, signature: str | None) -> str:
        """'absent' (neither given), 'valid', 'expired' or 'invalid' (a half or wrong signature)."""
        if expires is None and signature is None:
            return "absent"
        if not expires or not expires.isdigit() or not signature \
                or not hmac.compare_digest(self._digest(path, int(expires)), signature):
            return "invalid"
        return "valid" if int(expires) >= time.time() else "expired"

    def _digest(self, path: str, expires: int) -> str:
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()[:32]
