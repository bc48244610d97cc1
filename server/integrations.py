"""Webhooks and batches, wired into the app: their stores, the delivery loop, the batch tracker
and the batch routes.

Set up after storage (they use the data dir and the event hub) and before the job system, so
that jobs ending while the manager recovers at start are already seen.
"""
from __future__ import annotations

from typing import AsyncIterator

from aiohttp import web

from server.batch_store import BatchStore
from server.batches import BATCHES, BatchTracker
from server.routes import batches
from server.state import HUB, SETTINGS, STORE
from server.webhook_store import DeliveryStore
from server.webhooks import WEBHOOKS, Webhooks, load_secret


def add_integrations(app: web.Application) -> None:
    app.cleanup_ctx.append(_webhooks_and_batches)
    app.on_shutdown.append(_end_batch_streams)
    app.add_routes(batches.routes)


async def _webhooks_and_batches(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    webhooks = app[WEBHOOKS] = Webhooks(settings, DeliveryStore(settings.db_path), load_secret(settings.data_dir))
    tracker = app[BATCHES] = BatchTracker(BatchStore(settings.db_path), webhooks, app[HUB])
    tracker.recover(app[STORE])
    app[HUB].observe(tracker.observe)
    await webhooks.start()
    yield
    await webhooks.stop()
    tracker.store.close()
    webhooks.store.close()


async def _end_batch_streams(app: web.Application) -> None:
    if BATCHES in app:
        app[BATCHES].close()
