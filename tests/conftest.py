"""Shared fixtures: the real app on a temporary data dir, real photos, an SSE reader, test bundles."""
from __future__ import annotations

import asyncio
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import numpy as np
import pytest
from aiohttp import FormData
from PIL import Image

from pipelines.base import StepContext
from server.app import create_app
from server.settings import Settings
from tests.model_factories import rrdbnet_checkpoint, srvgg_checkpoint
from tests.models import ModelServer

# The session-scoped model templates (model_template, face_template, color_template), registered
# here once so that every module shares one instance of each.
pytest_plugins = ["tests.installed"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", workers=1, device="cpu", heartbeat_s=1.0,
                    shutdown_grace_s=10.0, cancel_grace_s=5.0)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Real-ESRGAN x4plus and realesr-general-x4v3 checkpoints, official layouts, random weights."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {"x4": rrdbnet_checkpoint(folder / "RealESRGAN_x4plus.pth"),
            "general": srvgg_checkpoint(folder / "realesr-general-x4v3.pth")}


@pytest.fixture
async def model_server(aiohttp_server, checkpoints) -> ModelServer:
    """Serves the checkpoints as /x4.pth and /general.pth on 127.0.0.1."""
    server = ModelServer(files={"x4.pth": checkpoints["x4"], "general.pth": checkpoints["general"]})
    running = await aiohttp_server(server.app())
    server.base = str(running.make_url("")).rstrip("/")
    return server


def astronaut(size: int | None = None) -> np.ndarray:
    from skimage import data

    img = data.astronaut()
    if size:
        img = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))
    return img


def photo(name: str) -> np.ndarray:
    """A scikit-image photo as float32 RGB in 0..1 (greyscale ones repeated to three channels)."""
    from skimage import data

    pixels = getattr(data, name)().astype(np.float32) / 255.0
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3])


def step_context(events: list | None = None, is_cancelled: Callable[[], bool] = lambda: False) -> StepContext:
    """A StepContext without models that appends (fraction, stage) to ``events``."""
    sink = events if events is not None else []
    return StepContext(report=lambda fraction, stage: sink.append((fraction, stage)), is_cancelled=is_cancelled)


def encode(rgb: np.ndarray, fmt: str = "JPEG", **options: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **options)
    return buf.getvalue()


def noisy_photo(width: int, height: int, sigma: float = 20.0, seed: int = 0) -> bytes:
    """A real photo, resized and with strong noise: makes denoise run, which takes a while."""
    base = np.asarray(Image.fromarray(astronaut()).resize((width, height), Image.Resampling.BILINEAR), np.float32)
    noise = np.random.default_rng(seed).normal(0, sigma, base.shape)
    return encode(np.clip(base + noise, 0, 255).astype(np.uint8), "PNG")


def form(image: bytes, filename: str = "photo.jpg", **fields: Any) -> FormData:
    data = FormData()
    data.add_field("file", image, filename=filename, content_type="application/octet-stream")
    for key, value in fields.items():
        data.add_field(key, value if isinstance(value, str) else json.dumps(value))
    return data


@dataclass
class SseEvent:
    id: int | None
    event: str
    data: dict[str, Any]


async def sse_events(client, job_id: str, last_event_id: int | None = None) -> AsyncIterator[SseEvent]:
    async for event in sse_stream(client, f"/api/v1/jobs/{job_id}/progress", last_event_id):
        yield event


async def sse_stream(client, path: str, last_event_id: int | None = None) -> AsyncIterator[SseEvent]:
    """The events of one Server-Sent Events stream (a job's or a batch's) until it ends."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    async with client.get(path, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith(":"):
                continue
            if line:
                key, _, value = line.partition(":")
                fields[key] = value.removeprefix(" ")
                continue
            if "data" in fields:
                yield SseEvent(int(fields["id"]) if "id" in fields else None,
                               fields.get("event", "message"), json.loads(fields["data"]))
            fields = {}


async def collect(client, job_id: str, last_event_id: int | None = None) -> list[SseEvent]:
    return [e async for e in sse_events(client, job_id, last_event_id)]


async def submit(client, image: bytes, tool: str = "restore-photo", filename: str = "photo.jpg",
                 expect: int = 202, **fields: Any) -> dict[str, Any]:
    resp = await client.post(f"/api/v1/tools/{tool}", data=form(image, filename, **fields))
    body = await resp.json()
    assert resp.status == expect, body
    return body


async def completed(client, body: dict[str, Any], seen_stage: str | None = None) -> dict[str, Any]:
    """The result of job ``body["jobId"]``, after asserting that its last event is "complete" (and,
    when given, that one of its events had the stage ``seen_stage``)."""
    events = await collect(client, body["jobId"])
    assert events[-1].event == "complete", events[-1].data
    if seen_stage is not None:
        assert any(e.data["stage"] == seen_stage for e in events)
    return events[-1].data["result"]


async def wait_until(fetch: Callable[[], Awaitable[Any]], predicate: Callable[[Any], Any], timeout: float = 60.0,
                     interval: float = 0.1, what: str = "the condition") -> Any:
    """Await ``fetch()`` every ``interval`` s until ``predicate`` holds for its value; return that value.
    Past ``timeout`` s, fail naming ``what`` was waited for and the last value fetched."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await fetch()
        if predicate(value):
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"waited {timeout}s for {what}; last value: {value}")
