"""A real `restora serve` process on a free port, for tests that need one (kill, signals, browsers)."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``prelude``: Python run in the server process before the CLI (a test's stand-in worker)."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, workers: int = 1, prelude: str = ""):
        self.data_dir = data_dir
        self.workers = workers
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{self.port}"
        self.prelude = prelude

    def _spawn(self) -> None:
        program = ["-m", "server.cli"] if not self.prelude else [
            "-c", f"{self.prelude}\nimport sys\nfrom server.cli import main\nsys.exit(main(sys.argv[1:]))"]
        self.proc = subprocess.Popen(
            [sys.executable, *program, "serve", "--port", str(self.port), "--data-dir",
             str(self.data_dir), "--workers", str(self.workers), "--device", "cpu"],
            cwd=ROOT, env=self.env)

    async def start(self, session: aiohttp.ClientSession) -> None:
        self._spawn()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                async with session.get(self.base + "/api/v1/health") as resp:
                    if self._ready(await resp.json()):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError("server did not start")

    @staticmethod
    def _ready(health: dict) -> bool:
        return all(w["state"] in ("idle", "busy") for w in health["workers"])

    def stop(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def start_blocking(self) -> None:
        """For synchronous tests (selenium): start and wait with plain urllib."""
        import json
        import urllib.request

        self._spawn()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/api/v1/health", timeout=2) as resp:
                    if self._ready(json.load(resp)):
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("server did not start")
