"""Webhooks: a signed POST when a job (or a batch) ends, delivered durably.

A delivery is stored in SQLite before the job's terminal event is stored or published, with its
body fixed then, so every attempt sends the same bytes, signature and ``X-Restora-Delivery`` id
(receivers de-duplicate on it). A loop sends what is due: the first attempt at once, each later
one ``webhook_backoff_s[n]`` after the previous failure (errors, timeouts and any non-2xx answer,
redirects included, which are never followed). Due times are computed from the last attempt and
the current settings, so deliveries pending at a stop resume after the next start.

The URL follows the image-URL rules of :mod:`server.fetch`: http(s), public addresses only unless
``allow_private_urls``, resolved once per attempt and the connection pinned to what was checked.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from server.errors import ApiError, InvalidParams
from server.fetch import PinnedResolver, resolve_checked, split_url
from server.jobs import Job, JobStatus
from server.settings import Settings
from server.webhook_store import Delivery, DeliveryStore

log = logging.getLogger("restora.webhooks")

WEBHOOK_FIELDS = ("webhookUrl", "webhook_url")
META_KEY = "webhookUrl"  # where a job remembers its webhook (Job.meta)
SECRET_FILE = "webhook-secret"
_MAX_URL = 2048
_AT_ONCE = 8  # attempts in flight together
_LONGEST_SLEEP_S = 60.0


class InvalidWebhookUrl(InvalidParams):
    code = "INVALID_WEBHOOK_URL"


def load_secret(data_dir: Path) -> str:
    """The per-server signing secret, made on first use and kept in the data dir (mode 0600)."""
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with suppress(FileExistsError):  # two processes starting at once: the first one's stays
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def signature(secret: str, body: bytes) -> str:
    """``X-Restora-Signature``: hex HMAC-SHA256 of the exact body, keyed by the secret's text."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def checked_webhook_url(value: Any, allow_private: bool) -> str:
    """The webhook URL of a submission, refused (400) unless an image URL there would be fetched."""
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_URL:
        raise InvalidWebhookUrl(f"The webhook URL must be a non-empty string of at most {_MAX_URL} characters.",
                                field="webhookUrl")
    url = value.strip()
    try:
        _, host, port = split_url(url, what="webhook URL")
        await resolve_checked(host, port, allow_private, what="webhook URL")
    except ApiError as exc:  # refused, or a host that does not resolve: the client's mistake either way
        raise InvalidWebhookUrl(exc.message, field="webhookUrl") from None
    return url


def job_payload(job: Job) -> dict[str, Any]:
    payload: dict[str, Any] = {"event": f"job.{job.status.value}", "jobId": job.id, "status": job.status.value,
                               "tool": job.tool}
    if job.status == JobStatus.COMPLETE:
        payload["result"] = job.result
    else:
        payload["error"] = job.error or {"code": "CANCELLED", "message": "The job was cancelled."}
    return payload


class Webhooks:
    def __init__(self, settings: Settings, store: DeliveryStore, secret: str):
        self.settings = settings
        self.store = store
        self._secret = secret
        self._wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task] = {}
        self._loop: asyncio.Task | None = None

    # -- recording --------------------------------------------------------------------------
    def job_finished(self, job: Job) -> None:
        """The manager's terminal hook: runs before the job's terminal event is stored."""
        url = job.meta.get(META_KEY)
        if url:
            self.record(f"job:{job.id}", url, job_payload(job))

    def record(self, subject: str, url: str, payload: dict[str, Any]) -> None:
        """Store a delivery (at most one per subject: a job that ends twice after a crash keeps
        its first one) and wake the loop."""
        self.store.insert(Delivery(id=str(uuid.uuid4()), subject=subject, url=url, event=payload["event"],
                                   body=json.dumps(payload), created_at=time.time()))
        self._wake.set()

    def view(self, subject: str, url: str | None) -> dict[str, Any] | None:
        """``webhook`` in a snapshot: None without one; attempts 0 until the subject ends."""
        if not url:
            return None
        delivery = self.store.get(subject)
        if delivery is None:
            return {"url": url, "attempts": 0, "lastStatus": None, "lastError": None, "delivered": False,
                    "nextAttemptAt": None}
        return delivery.view(None if delivery.done else delivery.due_at(self.settings.webhook_backoff_s))

    def job_view(self, job: Job) -> dict[str, Any] | None:
        return self.view(f"job:{job.id}", job.meta.get(META_KEY))

    # -- the delivery loop ------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="webhooks")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self._in_flight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # an attempt cut off here is sent again later

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = self._launch_due(time.time())
            except Exception:  # e.g. the database is failing: try again later, never stop the loop
                log.exception("could not read the pending webhook deliveries")
                wait = _LONGEST_SLEEP_S
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _launch_due(self, now: float) -> float:
        """Start the attempts that are due (a few at a time); seconds until the next one is."""
        wait = _LONGEST_SLEEP_S
        for delivery in self.store.pending():
            if delivery.id in self._in_flight:
                continue
            due = delivery.due_at(self.settings.webhook_backoff_s)
            if due > now:
                wait = min(wait, due - now)
            elif len(self._in_flight) < _AT_ONCE:
                self._in_flight[delivery.id] = asyncio.create_task(self._attempt(delivery))
        return max(wait, 0.0)

    async def _attempt(self, delivery: Delivery) -> None:
        status, error = None, None
        try:
            status = await self._post(delivery)
        except (ApiError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            error = _describe(exc)
        except Exception as exc:  # a bug here must not leave the delivery in flight for ever
            log.exception("webhook %s: unexpected error", delivery.id)
            error = _describe(exc)
        try:
            self._store_outcome(delivery, status, error)
        except Exception:  # not recorded: the attempt is made again
            log.exception("could not record webhook %s's attempt", delivery.id)
        finally:
            self._in_flight.pop(delivery.id, None)
            self._wake.set()

    def _store_outcome(self, delivery: Delivery, status: int | None, error: str | None) -> None:
        delivered = status is not None and 200 <= status < 300
        attempts = delivery.attempts + 1
        gave_up = not delivered and attempts > len(self.settings.webhook_backoff_s)
        self.store.record_attempt(delivery.id, time.time(), status, error, delivered=delivered, done=delivered or gave_up)
        if not delivered:
            log.warning("webhook %s (%s) attempt %d failed: %s%s", delivery.id, delivery.subject, attempts,
                        status if status is not None else error, "; giving up" if gave_up else "")

    async def _post(self, delivery: Delivery) -> int:
        _, host, port = split_url(delivery.url, what="webhook URL")
        addresses = await resolve_checked(host, port, self.settings.allow_private_urls, what="webhook URL")
        body = delivery.body.encode()
        headers = {"Content-Type": "application/json", "User-Agent": "Restora-Webhooks/1",
                   "X-Restora-Delivery": delivery.id, "X-Restora-Event": delivery.event,
                   "X-Restora-Signature": signature(self._secret, body)}
        timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s)
        connector = aiohttp.TCPConnector(resolver=PinnedResolver(host, addresses), use_dns_cache=False)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
            async with session.post(delivery.url, data=body, headers=headers, allow_redirects=False) as resp:
                return resp.status


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")[:300]


# The webhook service (deliveries, their loop, the views in snapshots).
WEBHOOKS = web.AppKey("webhooks", Webhooks)
