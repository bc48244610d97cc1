"""POST→202 latency and SSE fan-out on loopback: Restora vs a minimal aiohttp baseline, one run.

Restora runs as a real `restora serve` process with --workers 0 (jobs are accepted, persisted and
queued, not processed), so the figures are the API path itself: multipart parsing, header sniff,
validation, SQLite commit, fsync of the upload. The baseline is a bare aiohttp app in another
process that parses the same multipart and answers 202 (no persistence), and for SSE, a bare
aiohttp-sse broadcaster.

    .venv/bin/python bench/api_bench.py [--posts 200] [--subscribers 100,1000]
"""
from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.server_process import ServerProcess, free_port  # noqa: E402

from _results import record  # bench/_results.py (bench/ is on sys.path)  # noqa: E402

BASELINE = r'''
import asyncio, sys
from aiohttp import web
from aiohttp_sse import sse_response
subscribers = set()
async def post(request):
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        while await part.read_chunk(): pass
    return web.json_response({"jobId": "x", "async": True}, status=202)
async def stream(request):
    queue = asyncio.Queue(); subscribers.add(queue)
    try:
        async with sse_response(request) as resp:
            await resp.send("{}", id="1", event="progress")
            while True:
                data = await queue.get()
                await resp.send(data, id="2", event="progress")
    finally:
        subscribers.discard(queue)
async def publish(request):
    for q in subscribers: q.put_nowait('{"phase":"queued"}')
    return web.Response(text=str(len(subscribers)))
app = web.Application()
app.add_routes([web.post("/api/v1/tools/restore-photo", post), web.get("/sse", stream), web.post("/publish", publish)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''


def photo() -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def post_latencies(session: aiohttp.ClientSession, url: str, image: bytes, count: int) -> list[float]:
    times, ids = [], []
    for _ in range(count):
        form = aiohttp.FormData()
        form.add_field("file", image, filename="photo.jpg")
        form.add_field("settings", '{"denoiseStrength": 30}')
        start = time.perf_counter()
        async with session.post(url, data=form) as resp:
            body = await resp.json()
            assert resp.status == 202, body
        times.append(time.perf_counter() - start)
        ids.append(body["jobId"])
    if "/api/v1/tools/" in url and ids[0] != "x":  # Restora: empty its queue again (limit 200)
        base = url.split("/api/")[0]
        for job_id in ids:
            async with session.delete(f"{base}/api/v1/jobs/{job_id}"):
                pass
    return times


async def wait_up(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        try:
            async with session.get(url):
                return
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def fan_out(session, stream_url: str, trigger, subscribers: int) -> float:
    """Open N streams, wait for each one's first event, then time one published event reaching all."""
    ready, done = asyncio.Event(), asyncio.Event()
    counts = {"first": 0, "second": 0}

    async def listen():
        async with session.get(stream_url) as resp:
            seen = 0
            async for line in resp.content:
                if line.startswith(b"data:"):
                    seen += 1
                    key = "first" if seen == 1 else "second"
                    counts[key] += 1
                    if key == "first" and counts["first"] == subscribers:
                        ready.set()
                    if key == "second" and counts["second"] == subscribers:
                        done.set()
                    if seen == 2:
                        return

    tasks = [asyncio.create_task(listen()) for _ in range(subscribers)]
    await asyncio.wait_for(ready.wait(), 120)
    start = time.perf_counter()
    await trigger()
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return elapsed


def summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return (f"p50 {statistics.median(ms):6.1f} ms  p90 {ms[int(len(ms) * 0.9)]:6.1f} ms  "
            f"p99 {ms[min(len(ms) - 1, int(len(ms) * 0.99))]:6.1f} ms")


async def main(posts: int, fanouts: list[int]) -> None:
    image = photo()
    base_port = free_port()
    baseline = subprocess.Popen([sys.executable, "-c", BASELINE, str(base_port)], stderr=subprocess.DEVNULL)
    data_dir = Path(tempfile.mkdtemp(prefix="restora-bench-"))
    server = ServerProcess(data_dir, workers=0)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            await server.start(session)
            base = f"http://127.0.0.1:{base_port}"
            await wait_up(session, base + "/publish")
            await report_posts(session, server.base, base, image, posts)
            await report_fanout(session, server.base, base, image, fanouts)
        finally:
            baseline.terminate()
            server.stop(15)


async def report_posts(session, ours: str, base: str, image: bytes, posts: int) -> None:
    await post_latencies(session, ours + "/api/v1/tools/restore-photo", image, 5)  # warm-up
    restora = await post_latencies(session, ours + "/api/v1/tools/restore-photo", image, posts)
    bare = await post_latencies(session, base + "/api/v1/tools/restore-photo", image, posts)
    print(f"POST -> 202 with a {len(image) / 1000:.0f} KB JPEG, {posts} sequential requests")
    print(f"  restora   {summary(restora)}")
    print(f"  baseline  {summary(bare)}")
    print(f"  ratio restora/baseline (median): {statistics.median(restora) / statistics.median(bare):.2f}")
    record("api.post_202.median", statistics.median(restora) * 1000, "ms")
    record("api.post_202.speedup", statistics.median(bare) / statistics.median(restora), "x", "bare aiohttp")


async def report_fanout(session, ours: str, base: str, image: bytes, fanouts: list[int]) -> None:
    print("SSE fan-out: one event to N subscribers of one job, time until all N received it")
    for n in fanouts:
        blocker = await _submit(session, ours, image)  # queued ahead of the watched job
        watched = await _submit(session, ours, image)

        async def cancel_blocker():
            async with session.delete(f"{ours}/api/v1/jobs/{blocker}"):
                pass  # the watched job moves up one place: a progress event with its new position

        async def publish():
            async with session.post(base + "/publish"):
                pass

        restora = await fan_out(session, f"{ours}/api/v1/jobs/{watched}/progress", cancel_blocker, n)
        bare = await fan_out(session, base + "/sse", publish, n)
        print(f"  N={n:5d}  restora {restora * 1000:7.1f} ms  baseline {bare * 1000:7.1f} ms  "
              f"ratio {restora / bare:.2f}")
        record(f"api.sse_fan_out_{n}.speedup", bare / restora, "x", "bare aiohttp SSE")


async def _submit(session, base: str, image: bytes) -> str:
    form = aiohttp.FormData()
    form.add_field("file", image, filename="photo.jpg")
    async with session.post(base + "/api/v1/tools/restore-photo", data=form) as resp:
        return (await resp.json())["jobId"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--subscribers", default="100,1000")
    args = parser.parse_args()
    asyncio.run(main(args.posts, [int(n) for n in args.subscribers.split(",")]))
