"""Shared fixtures: the real app on a temporary data dir, real photos, an SSE reader."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
import pytest
from aiohttp import FormData
from PIL import Image

from server.app import create_app
from server.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", workers=1, device="cpu", heartbeat_s=1.0,
                    shutdown_grace_s=10.0, cancel_grace_s=5.0)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


def astronaut(size: int | None = None) -> np.ndarray:
    from skimage import data

    img = data.astronaut()
    if size:
        img = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))
    return img


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
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    async with client.get(f"/api/v1/jobs/{job_id}/progress", headers=headers) as resp:
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
