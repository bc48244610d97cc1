"""Big photos in bounded memory: peak RSS of the whole server tree (the API process and its worker
processes, summed, sampled every 0.1 s) while one big JPEG goes through a tool with its default
settings. (Issue 18: 24 MP through restore-photo and enhance at scale 1 within 4 GB; 100 MP refused
or processed in bounded memory, never killed by the kernel.)

The photo is scikit-image's astronaut, resized to the size asked for, with grain, saved as JPEG
quality 90. A real `restora serve` with one CPU worker and the data dir's installed bundles.

    python bench/big_photo_memory.py [--megapixels 24 100] [--tool restore-photo] [--settings JSON]
                                     [--random-photo-restoration]

``--random-photo-restoration`` installs the photo-restoration bundle first, with the tests' random
weights in the official formats (GFPGAN v1.4, RetinaFace R50 and ParseNet at their real shapes;
LaMa a tiny TorchScript in big-lama.pt's interface), so restore-photo runs every default step with
the bundle. Random RetinaFace finds no face, so GFPGAN and ParseNet do not run on the photo, and
the tiny LaMa understates LaMa's own activations on each crop: read the peak with that in mind.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import record  # noqa: E402
from tests.conftest import form  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402


def big_jpeg(megapixels: float) -> bytes:
    from skimage import data

    width = int(round((megapixels * 1e6 * 1.5) ** 0.5))  # 3:2, as a camera
    height = int(round(megapixels * 1e6 / width))
    photo = Image.fromarray(data.astronaut()).resize((width, height), Image.BICUBIC)
    rng = np.random.default_rng(0)
    pixels = np.asarray(photo, dtype=np.int16) + rng.normal(0, 4, (height, width, 1)).astype(np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def tree_rss_mb(root: int) -> float:
    """VmRSS of ``root`` and every descendant (the spawned workers and their children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            status = (Path("/proc") / str(pid) / "status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0) / 1024
    return total


async def one_photo(session, server: ServerProcess, tool: str, photo: bytes, settings: dict) -> dict:
    fields = {"settings": json.dumps(settings)} if settings else {}
    peak, started = tree_rss_mb(server.proc.pid), time.perf_counter()
    async with session.post(f"{server.base}/api/v1/tools/{tool}", data=form(photo, **fields)) as resp:
        body = await resp.json()
    if resp.status != 202:
        return {"status": resp.status, "code": body.get("error", {}).get("code"), "peak": peak, "seconds": 0.0}
    while True:
        peak = max(peak, tree_rss_mb(server.proc.pid))
        async with session.get(f"{server.base}/api/v1/jobs/{body['jobId']}") as resp:
            job = await resp.json()
        if job["status"] in ("complete", "failed", "cancelled"):
            break
        await asyncio.sleep(0.1)
    error = (job.get("error") or {}).get("code")
    return {"status": job["status"], "code": error, "peak": peak, "seconds": time.perf_counter() - started,
            "steps": (job.get("result") or {}).get("steps")}


def random_photo_restoration(folder: Path, data_dir: Path) -> dict[str, str]:
    """Install the bundle with random weights into ``data_dir``; the server's environment for it."""
    from tests.installed import build_face_template, install_into

    data_dir.mkdir(parents=True, exist_ok=True)
    manifests = install_into(data_dir, build_face_template(folder / "template"))
    return {"RESTORA_MANIFESTS_DIR": str(manifests)}


async def run(args) -> int:
    settings = json.loads(args.settings) if args.settings else {}
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(args.data_dir) if args.data_dir else Path(folder) / "data"
        env = {}
        if args.random_photo_restoration:  # the installer runs its own event loop: in a thread
            env = await asyncio.to_thread(random_photo_restoration, Path(folder), data_dir)
        server = ServerProcess(data_dir, env=env)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            await server.start(session)
            try:
                idle = tree_rss_mb(server.proc.pid)
                print(f"server tree idle: {idle:.0f} MB; tool {args.tool}, settings {settings or 'default'}")
                for megapixels in args.megapixels:
                    photo = big_jpeg(megapixels)
                    outcome = await one_photo(session, server, args.tool, photo, settings)
                    alive = server.proc.poll() is None
                    print(f"{megapixels:>5.0f} MP ({len(photo) / 1e6:.1f} MB JPEG): {outcome['status']}"
                          f"{' ' + outcome['code'] if outcome['code'] else ''}, {outcome['seconds']:.0f} s, "
                          f"peak tree RSS {outcome['peak']:.0f} MB, server {'alive' if alive else 'DEAD'}; "
                          f"steps {outcome.get('steps')}")
                    record(f"big_photo.{args.tool}.{megapixels:g}mp.peak_rss", outcome["peak"], "MB")
                    failures += not alive or outcome["status"] not in ("complete", 413, "failed")
            finally:
                server.stop(9)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[24, 100])
    parser.add_argument("--tool", default="restore-photo")
    parser.add_argument("--settings", default="", help="the tool's settings as JSON (default: none)")
    parser.add_argument("--data-dir", default="", help="a data dir with bundles installed (default: a fresh one)")
    parser.add_argument("--random-photo-restoration", action="store_true",
                        help="install photo-restoration with random weights first (see above)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
