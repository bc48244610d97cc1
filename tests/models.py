"""Test helpers: a local model file server and manifests that point at it (the model files
themselves come from tests/model_factories.py)."""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from server.bundles.download import DownloadPolicy

FAST = DownloadPolicy(attempts=3, backoff_s=0.05)  # retries without the production backoff


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class ModelServer:
    """Serves files at /<name>; records every request; can cut a response halfway once."""

    files: dict[str, Path] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_once: set[str] = field(default_factory=set)
    slow: set[str] = field(default_factory=set)
    base: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{name}", self._serve)
        return app

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append((name, request.headers.get("Range")))
        path = self.files.get(name)
        if path is None:
            raise web.HTTPNotFound()
        if name in self.cut_once:
            self.cut_once.discard(name)
            return await self._cut_halfway(request, path)
        if name in self.slow:
            return await self._trickle(request, path)
        return web.FileResponse(path)

    async def _trickle(self, request: web.Request, path: Path) -> web.StreamResponse:
        """The whole file, 64 KB every 50 ms: slow enough to kill an install mid-download."""
        data = path.read_bytes()
        resp = web.StreamResponse(headers={"ETag": '"v1"'})
        resp.content_length = len(data)
        await resp.prepare(request)
        for offset in range(0, len(data), 65536):
            await resp.write(data[offset:offset + 65536])
            await asyncio.sleep(0.05)
        return resp

    async def _cut_halfway(self, request: web.Request, path: Path) -> web.StreamResponse:
        data = path.read_bytes()
        resp = web.StreamResponse(headers={"ETag": '"v1"'})
        resp.content_length = len(data)
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        assert request.transport is not None
        request.transport.close()
        return resp


def manifest_toml(name: str, models: list[dict[str, Any]], tools: tuple[str, ...] = ()) -> str:
    lines = [f'name = "{name}"', f'description = "test bundle {name}"', 'version = "9.9.9"',
             f"tools = {list(tools)!r}".replace("'", '"'), "steps = []", ""]
    for model in models:
        lines.append("[[models]]")
        for key in ("id", "file", "license", "loader", "sha256", "md5", "size", "approx_size", "group"):
            if key in model:
                value = model[key]
                lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
        for source in model["sources"]:
            lines.append("[[models.sources]]")
            lines.extend(f'{k} = "{v}"' for k, v in source.items())
        lines.append("")
    return "\n".join(lines)


def write_manifests(folder: Path, server: ModelServer, checkpoints: dict[str, Path], **overrides) -> Path:
    """upscale (x4 with sha256 and size, general with approx_size only) served by ``server``, and
    extra, which shares x4 with upscale. ``overrides["x4"]`` updates the x4 entry."""
    folder.mkdir(parents=True, exist_ok=True)
    x4 = {"id": "realesrgan-x4plus", "file": "RealESRGAN_x4plus.pth", "license": "BSD-3-Clause",
          "loader": "rrdbnet-x4", "sha256": sha256(checkpoints["x4"]), "size": checkpoints["x4"].stat().st_size,
          "sources": [{"kind": "url", "url": server.url("x4.pth")}]}
    general = {"id": "realesr-general-x4v3", "file": "realesr-general-x4v3.pth", "license": "BSD-3-Clause",
               "loader": "srvgg-x4", "approx_size": checkpoints["general"].stat().st_size,
               "sources": [{"kind": "url", "url": server.url("general.pth")}]}
    x4.update(overrides.get("x4", {}))
    (folder / "upscale.toml").write_text(manifest_toml("upscale", [x4, general], ("upscale",)))
    (folder / "extra.toml").write_text(manifest_toml("extra", [dict(x4)]))  # shares x4 with upscale
    return folder
