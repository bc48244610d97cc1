"""Real processes for the broker tests: a Redis of their own, one API, worker hosts with their own
data dirs (no shared folder). Every process is started by the test and signalled by its pid."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest

from tests.server_process import ROOT, ServerProcess, free_port

# The real worker, whose job first holds at "Holding..." until the file RELEASE exists (or it is
# cancelled), then runs for real: a test kills or freezes a host exactly while it holds a job.
HELD_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from server.executor import worker

    RELEASE = Path(sys.argv.pop(1))
    real_run = worker.Worker._run

    def held_run(self, job):
        self.channel.send("progress", jobId=job["job_id"], stage="Holding...", percent=3)
        while not RELEASE.exists() and job["job_id"] not in self.cancel_requests and not self.stopping.is_set():
            time.sleep(0.05)
        real_run(self, job)

    worker.Worker._run = held_run
    worker.main()
""")


def require_redis() -> str:
    """redis-server's path; the test skips without one, unless RESTORA_REQUIRE_REDIS=1 (CI)."""
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("RESTORA_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is not installed and RESTORA_REQUIRE_REDIS=1")
        pytest.skip("redis-server is not installed (apt-get install redis-server); the broker tests need one")
    return path


class RedisServer:
    """Its own port and folder; AOF with appendfsync always, so a SIGKILL loses nothing accepted."""

    def __init__(self, folder: Path, bind: str = "127.0.0.1"):
        self.binary = require_redis()
        self.bind = bind
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", *self.bind.split(), "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--maxmemory-policy", "noeviction",
             # Without a password Redis answers only loopback; the partition test's host is elsewhere.
             "--protected-mode", "yes" if self.bind == "127.0.0.1" else "no"],
            stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def cli(self, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True).stdout

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


class HostProcess:
    """A ``restora worker`` in its own session, so a signal to its group reaches its worker processes."""

    def __init__(self, name: str, data_dir: Path, api: ServerProcess, broker: str, release: Path,
                 lock_s: float = 4.0, api_base: str | None = None, wrapper: tuple[str, ...] = ()):
        self.name, self.data_dir, self.api, self.broker = name, data_dir, api, broker
        self.release, self.lock_s = release, lock_s
        self.api_base, self.wrapper = api_base or api.base, wrapper  # e.g. ("ip", "netns", "exec", NS)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        prelude = (f"import sys\nfrom server.executor import pool\n"
                   f"pool.WORKER_COMMAND = (sys.executable, '-c', {HELD_WORKER!r}, {str(self.release)!r})\n"
                   f"from server.cli import main\nsys.exit(main(sys.argv[1:]))")
        self.proc = subprocess.Popen(
            [*self.wrapper, sys.executable, "-c", prelude, "worker", "--broker", self.broker, "--api", self.api_base,
             "--token-file", str(self.api.data_dir / "worker-token"), "--data-dir", str(self.data_dir),
             "--name", self.name, "--device", "cpu", "--lock-seconds", str(self.lock_s)],
            cwd=ROOT, start_new_session=True)

    def signal_group(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal_group(signal.SIGCONT)
            self.kill()


class Cluster:
    def __init__(self, tmp_path: Path, session: aiohttp.ClientSession, bind: str = "127.0.0.1"):
        """``bind``: the addresses Redis and the API listen on (one: loopback only, and API keys off)."""
        self.tmp_path, self.session = tmp_path, session
        self.redis = RedisServer(tmp_path / "redis", bind)
        self.release = tmp_path / "release"
        listen = "" if bind == "127.0.0.1" else "sys.argv += ['--host', '0.0.0.0', '--auth', 'off']"
        self.api = ServerProcess(tmp_path / "api", env={"RESTORA_BROKER": self.redis.url}, workers=0,
                                 prelude=f"import sys\n{listen}")
        self.hosts: dict[str, HostProcess] = {}

    async def start(self, hosts: int = 2) -> None:
        self.redis.start()
        await self.api.start(self.session)
        for index in range(hosts):
            self.add_host(f"host-{index + 1}")
        await self.wait_for_hosts(list(self.hosts))

    def add_host(self, name: str, **options) -> HostProcess:
        host = HostProcess(name, self.tmp_path / name, self.api, options.pop("broker", self.redis.url),
                           self.release, **options)
        host.start()
        self.hosts[name] = host
        return host

    async def wait_for_hosts(self, names: list[str]) -> None:
        await wait_for(lambda: self.health(), lambda h: {w["name"] for w in h["workers"]
                                                         if w["state"] == "idle"} >= set(names),
                       timeout=120, what=f"worker hosts {names} to be idle")

    async def health(self) -> dict:
        return await self.get_json("/api/v1/health")

    async def job(self, job_id: str) -> dict:
        return await self.get_json(f"/api/v1/jobs/{job_id}")

    async def get_json(self, path: str) -> dict:
        async with self.session.get(self.api.base + path) as resp:
            return await resp.json()

    async def submit(self, image: bytes, expect: int = 202) -> dict:
        from tests.conftest import form

        async with self.session.post(self.api.base + "/api/v1/tools/restore-photo", data=form(image)) as resp:
            body = await resp.json()
            assert resp.status == expect, body
            return {**body, "headers": dict(resp.headers)}

    async def held_on(self, job_id: str, attempt: int) -> str:
        """The host that holds attempt ``attempt`` of the job."""
        snapshot = await wait_for(lambda: self.job(job_id), lambda s: s["attempts"] == attempt and
                                  s["stage"] == "Holding...", timeout=120, what=f"attempt {attempt} to hold")
        return snapshot["worker"]

    async def events(self, job_id: str, last_event_id: int | None = None) -> list:
        from tests.conftest import sse_events

        client = UrlClient(self.session, self.api.base)
        return [e async for e in sse_events(client, job_id, last_event_id)]

    def stop(self) -> None:
        for host in self.hosts.values():
            host.stop()
        if self.api.proc is not None and self.api.proc.poll() is None:
            self.api.stop(signal.SIGKILL)
        self.redis.stop()


class UrlClient:
    """Enough of aiohttp's test client for tests.conftest.sse_events: get(path) on the API."""

    def __init__(self, session: aiohttp.ClientSession, base: str):
        self.session, self.base = session, base

    def get(self, path: str, **kwargs):
        return self.session.get(self.base + path, **kwargs)


async def wait_for(fetch, predicate, timeout: float = 60.0, what: str = "the condition"):
    from tests.conftest import wait_until

    return await wait_until(_tolerant(fetch), lambda v: v is not None and predicate(v), timeout=timeout,
                            interval=0.2, what=what)


def _tolerant(fetch):
    """None while the API is restarting, instead of an exception."""
    async def fetch_or_none():
        try:
            return await fetch()
        except aiohttp.ClientError:
            return None
    return fetch_or_none


async def sleep_until_gone(proc: subprocess.Popen) -> None:
    while proc.poll() is None:
        await asyncio.sleep(0.1)
