"""Thousands of SSE subscribers on one server process: is every event delivered to every one, and
what does the server's memory do? (Issue 18: 5,000 subscribers, server RSS <= 300 MB.)

A real `restora serve` (one worker, CPU) runs one restore-photo job whose worker holds at its
first progress event until this script has opened every subscriber, then runs for real. Each
subscriber reads the job's stream to its end; its event ids are compared with the job's full
history (a replay from Last-Event-ID 0). The server's RSS (its own process, not the worker) is
read from /proc before, at its highest while all streams are open, and at the end.

    python bench/sse_fanout.py [--subscribers 5000] [--size 256]
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import record  # noqa: E402
from tests.broker_cluster import HELD_WORKER, UrlClient  # noqa: E402
from tests.conftest import astronaut, encode, form, sse_events  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


async def subscribe(client: UrlClient, job_id: str, connected: list[int]) -> list[int]:
    """The ids of every event this subscriber received, up to the terminal one."""
    ids = []
    async for event in sse_events(client, job_id):
        if not ids:
            connected.append(1)
        ids.append(event.id)
    return ids


async def watch_rss(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mb(pid))
        await asyncio.sleep(0.2)


async def run(subscribers: int, size: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        release = Path(folder) / "release"
        prelude = (f"import sys\nfrom server.executor import pool\n"
                   f"pool.WORKER_COMMAND = (sys.executable, '-c', {HELD_WORKER!r}, {str(release)!r})")
        server = ServerProcess(Path(folder) / "data", prelude=prelude)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await server.start(session)
            try:
                return await measure(session, server, release, subscribers, size)
            finally:
                server.stop(9)


async def measure(session, server: ServerProcess, release: Path, subscribers: int, size: int) -> int:
    client, pid = UrlClient(session, server.base), server.proc.pid
    before = rss_mb(pid)
    async with session.post(server.base + "/api/v1/tools/restore-photo", data=form(encode(astronaut(size)))) as resp:
        job_id = (await resp.json())["jobId"]
    connected: list[int] = []
    peak, stop = [before], asyncio.Event()
    watcher = asyncio.create_task(watch_rss(pid, peak, stop))
    started = time.perf_counter()
    streams = [asyncio.create_task(subscribe(client, job_id, connected)) for _ in range(subscribers)]
    while len(connected) < subscribers:
        await asyncio.sleep(0.1)
        if any(s.done() for s in streams):  # a stream that ended early: its error is raised below
            break
    opened_s = time.perf_counter() - started
    all_open = rss_mb(pid)
    release.touch()
    results = await asyncio.gather(*streams)
    delivered_s = time.perf_counter() - started - opened_s
    stop.set()
    await watcher
    history = [e.id for e in [e async for e in sse_events(client, job_id, 0)]]
    return report(results, history, before, all_open, max(peak[0], rss_mb(pid, "VmHWM")), opened_s, delivered_s)


def report(results, history, before, all_open, peak, opened_s, delivered_s) -> int:
    complete = sum(1 for ids in results if ids[-1] == history[-1] and ids == history[-len(ids):])
    missing = len(results) - complete
    print(f"subscribers            {len(results)}")
    print(f"events in the job      {len(history)} (ids {history[0]}..{history[-1]})")
    print(f"every event delivered  {complete}/{len(results)} subscribers got every event after their first, "
          f"in order, to the terminal one")
    print(f"opening all streams    {opened_s:.1f} s; job run and fan-out {delivered_s:.1f} s")
    print(f"server RSS             before {before:.0f} MB, all streams open {all_open:.0f} MB, "
          f"peak {peak:.0f} MB (goal <= 300 MB)")
    print(f"per subscriber         {(all_open - before) * 1024 / max(1, len(results)):.1f} KB")
    record("sse_fanout.subscribers_complete", complete / max(1, len(results)), "ratio")
    record("sse_fanout.server_peak_rss", peak, "MB")
    return 1 if missing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * args.subscribers + 256  # both ends of each connection are on this machine
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, need)), hard))  # the server inherits it
    if min(hard, need) < need:
        print(f"open-file limit {hard} is below the {need} this needs; raise it (ulimit -n)")
        return 2
    return asyncio.run(run(args.subscribers, args.size))


if __name__ == "__main__":
    sys.exit(main())
