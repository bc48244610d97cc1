"""The worker's thread limits are in its environment from its start, before numpy and OpenCV load."""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from server.app import create_app
from server.executor import pool
from server.executor.pool import _threads_per_worker
from tests.conftest import wait_until

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def start_environment(pid: int) -> dict[str, str]:
    """The environment a process was started with (later changes to os.environ do not show here)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
async def test_workers_start_with_their_thread_limits(aiohttp_client, settings, monkeypatch):
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    client = await aiohttp_client(create_app(settings.with_overrides(workers=2)))

    async def health():
        return await (await client.get("/api/v1/health")).json()
    workers = (await wait_until(health, lambda h: all(w["state"] == "idle" for w in h["workers"])))["workers"]
    for worker in workers:
        environment = start_environment(worker["pid"])
        assert {name: environment.get(name) for name in THREAD_VARIABLES} == \
            {name: str(worker["threads"]) for name in THREAD_VARIABLES}


# The real worker, reporting as its "threads" the most threads any loaded native pool (OpenBLAS,
# OpenMP) uses, as threadpoolctl reads them once the worker is ready.
_COUNTING_WORKER = textwrap.dedent("""
    from threadpoolctl import threadpool_info
    from server.executor import worker

    send = worker.Channel.send

    def report_pools(self, message_type, **fields):
        if message_type == "ready":
            fields["threads"] = max(pool["num_threads"] for pool in threadpool_info())
        send(self, message_type, **fields)

    worker.Channel.send = report_pools
    worker.main()
""")


@pytest.mark.skipif(_threads_per_worker(2) == len(os.sched_getaffinity(0)), reason="needs 2 cores or more")
async def test_numpy_in_the_worker_keeps_to_the_worker_share(aiohttp_client, settings, monkeypatch):
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pool, "WORKER_COMMAND", (sys.executable, "-c", _COUNTING_WORKER))
    client = await aiohttp_client(create_app(settings.with_overrides(workers=2)))

    async def health():
        return await (await client.get("/api/v1/health")).json()
    workers = (await wait_until(health, lambda h: all(w["state"] == "idle" for w in h["workers"])))["workers"]
    assert [w["threads"] for w in workers] == [_threads_per_worker(2)] * 2
