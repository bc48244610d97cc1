"""Scaling out: throughput with 1 vs 2 worker hosts on the same jobs (a ratio, one run), and the
latency from submit to start through the broker vs the local pool (median of several jobs).

Real processes, as in tests/test_broker.py: a Redis of its own, `restora serve --broker`, worker
hosts with their own data dirs. Needs redis-server. On a machine with fewer cores than hosts the
ratio says more about the machine than about the broker: it is printed with the core count.

    python bench/scale_bench.py [--jobs 8] [--size 384] [--latency-jobs 5]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.broker_cluster import Cluster, wait_for  # noqa: E402
from tests.conftest import astronaut, encode, form  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402


async def throughput(hosts: int, jobs: int, size: int) -> float:
    """Seconds for ``jobs`` jobs submitted at once to all complete, with ``hosts`` worker hosts."""
    with tempfile.TemporaryDirectory() as folder:
        async with aiohttp.ClientSession() as session:
            cluster = Cluster(Path(folder), session)
            cluster.release.touch()  # the held worker of the tests runs jobs straight through here
            try:
                await cluster.start(hosts=hosts)
                started = time.perf_counter()
                ids = [(await cluster.submit(encode(astronaut(size + i))))["jobId"] for i in range(jobs)]
                for job_id in ids:
                    events = await cluster.events(job_id)
                    assert events[-1].event == "complete", events[-1].data
                return time.perf_counter() - started
            finally:
                cluster.stop()


async def start_latency(session: aiohttp.ClientSession, base: str, count: int) -> float:
    """Median seconds from the 202 to the job being reported running, one job at a time."""
    latencies = []
    for index in range(count):
        async with session.post(base + "/api/v1/tools/restore-photo", data=form(encode(astronaut(64 + index)))) as resp:
            job_id = (await resp.json())["jobId"]
        accepted = time.perf_counter()

        async def snapshot(job_id=job_id):
            async with session.get(f"{base}/api/v1/jobs/{job_id}") as resp:
                return await resp.json()
        while (await snapshot())["status"] == "queued":  # polled every 10 ms: that is the resolution
            await asyncio.sleep(0.01)
        latencies.append(time.perf_counter() - accepted)
        await wait_for(snapshot, lambda s: s["status"] == "complete", timeout=300, what="the job to end")
    return statistics.median(latencies)


async def latencies(count: int) -> dict[str, float]:
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        async with aiohttp.ClientSession() as session:
            local = ServerProcess(Path(folder) / "local", workers=1)
            await local.start(session)
            try:
                results["local pool"] = await start_latency(session, local.base, count)
            finally:
                local.stop(9)
            cluster = Cluster(Path(folder) / "broker", session)
            cluster.release.parent.mkdir(parents=True, exist_ok=True)
            cluster.release.touch()
            try:
                await cluster.start(hosts=1)
                results["broker"] = await start_latency(session, cluster.api.base, count)
            finally:
                cluster.stop()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--size", type=int, default=384, help="side of the test photos, pixels")
    parser.add_argument("--latency-jobs", type=int, default=5)
    args = parser.parse_args()
    one = await throughput(1, args.jobs, args.size)
    two = await throughput(2, args.jobs, args.size)
    cores = len(os.sched_getaffinity(0))
    print(f"{args.jobs} jobs of {args.size}px: 1 host {one:.1f}s, 2 hosts {two:.1f}s; "
          f"throughput ratio {one / two:.2f}x on {cores} core(s)")
    for name, seconds in (await latencies(args.latency_jobs)).items():
        print(f"submit -> start, {name}: median {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
