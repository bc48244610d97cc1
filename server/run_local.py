"""``restora run`` without ``--server``: the real app, started inside the command.

There is no second code path for local runs. The command builds the same application
``restora serve`` runs (``create_app``: the same tools, validation, decoding in the isolated
child, worker processes and steps), listens on a private socket that only this command uses,
and drives it over HTTP with :mod:`restora.client`, exactly as it drives a remote server.

Its jobs live in a scratch data dir that is removed at the end, so a run never touches the job
database of a ``restora serve`` using the same data dir (a second job manager on one database
would take over that server's jobs); only the models (``<data dir>/models``) are the user's.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterator, TextIO

from aiohttp import web

from restora.client import AsyncClient
from server.settings import Settings


@dataclass(frozen=True)
class RunSettings(Settings):
    """Settings whose models come from ``models_root`` (the user's) rather than the data dir."""

    models_root: Path | None = None

    @property
    def models_dir(self) -> Path:
        return self.models_root if self.models_root is not None else self.data_dir / "models"


@contextlib.asynccontextmanager
async def local_server(settings: Settings) -> AsyncIterator[AsyncClient]:
    """The app on a private socket for as long as the block runs; then its workers stop."""
    from server.app import create_app  # imports the pipelines: only once the command line is checked

    runner = web.AppRunner(create_app(settings), access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    try:
        client = await _listen(runner, settings.data_dir)
        async with client:
            yield client
    finally:
        await runner.cleanup()


async def _listen(runner: web.AppRunner, scratch: Path) -> AsyncClient:
    """A unix socket in the scratch dir (mode 0700: other users cannot reach it) where there are
    unix sockets, else an ephemeral port on 127.0.0.1."""
    if hasattr(socket, "AF_UNIX") and sys.platform != "win32":  # asyncio serves none on Windows
        path = str(scratch.parent / "restora.sock")
        await web.UnixSite(runner, path).start()
        return AsyncClient("http://restora.local", unix_socket=path)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return AsyncClient(f"http://{host}:{port}")


def run_settings(scratch: Path, models_dir: Path, workers: int, device: str, install_embedded: bool,
                 manifests_dir: Path | None) -> RunSettings:
    return RunSettings(data_dir=scratch / "data", models_root=models_dir, host="127.0.0.1", port=0,
                       workers=workers, device=device, auth="off", manifests_dir=manifests_dir,
                       install_embedded=install_embedded).validate()


def scratch_dir() -> tempfile.TemporaryDirectory:
    """Private (0700) and short-pathed, so that the unix socket's path stays within its limit."""
    return tempfile.TemporaryDirectory(prefix="restora-run-")


@contextlib.contextmanager
def server_log_to(path: Path | None) -> Iterator[TextIO]:
    """Send stderr (this process's log, and that of the workers and decoders it starts, which
    inherit it) to ``path`` for the block, and yield a stream on the real stderr for the progress
    bars: log lines would tear the bars apart. ``None``: nothing moves."""
    if path is None:
        yield sys.stderr
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield terminal
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        terminal.close()
