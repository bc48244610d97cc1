"""Webhooks and batches, wired into the app: their stores, the delivery loop and the routes.

Set up after storage (they use the data dir and the event hub) and before the job system, so
that jobs ending while the manager recovers at start are already seen.
"""
from __future__ import annotations

from typing import AsyncIterator

from aiohttp import web

from server.state import SETTINGS
from server.webhook_store import DeliveryStore
from server.webhooks import WEBHOOKS, Webhooks, load_secret


def add_integrations(app: web.Application) -> None:
    app.cleanup_ctx.append(_webhooks)


async def _webhooks(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    webhooks = app[WEBHOOKS] = Webhooks(settings, DeliveryStore(settings.db_path), load_secret(settings.data_dir))
    await webhooks.start()
    yield
    await webhooks.stop()
    webhooks.store.close()
