"""``restora serve``'s event loop: the app until SIGTERM or SIGINT, then shutdown in the promised order.

aiohttp's ``run_app`` closes the listener first and only then shuts the app down, so clients
get "connection refused" during the drain. Here the listener stays open while :func:`drain`
runs (new work answered 503 with Retry-After, health "draining"); it closes at the end, when
idle keep-alive connections are closed at once and requests still in flight get a few seconds.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Iterator

from aiohttp import web

from server.app import drain
from server.settings import Settings

log = logging.getLogger("restora")
_LAST_REQUESTS_S = 5.0  # after the drain: for requests still in flight (a download) to finish


async def serve(app: web.Application, settings: Settings) -> None:
    stop = asyncio.Event()
    with _stop_on_signals(stop):  # from the start: a signal during start-up drains once it is up
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=_LAST_REQUESTS_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
            log.info("serving on http://%s:%d", settings.host, settings.port)
            await stop.wait()
            log.info("shutting down: new work is refused while running steps drain")
            await drain(app)
        finally:
            await runner.cleanup()


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
