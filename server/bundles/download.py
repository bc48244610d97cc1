"""Resumable HTTP downloads into the store's ``partial/`` folder.

A download streams into ``<name>.part``; a small ``<name>.part.json`` remembers the URL and the
validator (ETag / Last-Modified), so an interrupted download continues with an HTTP Range request
(``If-Range`` makes the server send the whole file again if it changed). Transient failures are
retried with exponential backoff. The caller verifies the finished file before it becomes visible.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import aiohttp

log = logging.getLogger("restora.bundles")

ProgressFn = Callable[[int, int | None], None]  # bytes done, total (None when unknown)
_CHUNK = 1024 * 1024
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(RuntimeError):
    pass


class NetworkUnavailable(DownloadError):
    """The host could not be reached at all (no network, DNS failure, refused)."""


@dataclass(frozen=True)
class DownloadPolicy:
    attempts: int = 5
    backoff_s: float = 1.0
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 60.0


async def download(session: aiohttp.ClientSession, url: str, part: Path, progress: ProgressFn,
                   policy: DownloadPolicy = DownloadPolicy()) -> Path:
    """Fetch ``url`` into ``part`` (resuming what is there); returns ``part`` once complete."""
    part.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, policy.attempts + 1):
        try:
            await _fetch(session, url, part, progress, policy)
            return part
        except aiohttp.ClientConnectorDNSError as exc:  # no name resolution: offline, fail at once
            raise NetworkUnavailable(f"cannot resolve {exc.host} (no network?)") from exc
        except aiohttp.ClientConnectorError as exc:
            if attempt == policy.attempts:
                raise NetworkUnavailable(f"cannot reach {exc.host}: {exc.os_error or exc}") from exc
            reason = str(exc)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, asyncio.TimeoutError,
                _Retryable) as exc:
            if attempt == policy.attempts:
                raise DownloadError(f"{url}: {exc or type(exc).__name__} (after {attempt} attempts)") from exc
            reason = str(exc) or type(exc).__name__
        delay = policy.backoff_s * 2 ** (attempt - 1)
        log.warning("download of %s interrupted (%s); retry %d in %.0fs", url, reason, attempt, delay)
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class _Retryable(Exception):
    pass


async def _fetch(session: aiohttp.ClientSession, url: str, part: Path, progress: ProgressFn,
                 policy: DownloadPolicy) -> None:
    meta_path = part.with_name(part.name + ".json")
    meta = _read_meta(meta_path, url)
    have = part.stat().st_size if part.exists() and meta else 0
    headers = {}
    if have:
        headers["Range"] = f"bytes={have}-"
        if meta.get("validator"):
            headers["If-Range"] = meta["validator"]
    timeout = aiohttp.ClientTimeout(sock_connect=policy.connect_timeout_s, sock_read=policy.read_timeout_s)
    async with session.get(url, headers=headers, timeout=timeout) as resp:
        if resp.status == 416 and have:  # nothing more to send: what we have is everything
            progress(have, have)
            return
        if resp.status in _RETRYABLE_STATUS:
            raise _Retryable(f"HTTP {resp.status}")
        if resp.status not in (200, 206):
            raise DownloadError(f"{url}: HTTP {resp.status} {resp.reason}")
        resuming = resp.status == 206 and have > 0
        total = _total_size(resp, have if resuming else 0)
        validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
        meta_path.write_text(json.dumps({"url": url, "validator": validator}))
        await _stream_body(resp, part, resuming, have if resuming else 0, total, progress)


async def _stream_body(resp: aiohttp.ClientResponse, part: Path, append: bool, done: int,
                       total: int | None, progress: ProgressFn) -> None:
    with open(part, "ab" if append else "wb") as out:
        async for chunk in resp.content.iter_chunked(_CHUNK):
            out.write(chunk)
            done += len(chunk)
            progress(done, total)
    if total is not None and done != total:
        raise aiohttp.ClientPayloadError(f"connection closed after {done} of {total} bytes")


def _total_size(resp: aiohttp.ClientResponse, offset: int) -> int | None:
    length = resp.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _read_meta(meta_path: Path, url: str) -> dict:
    try:
        meta = json.loads(meta_path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return meta if meta.get("url") == url else {}


def discard_partial(part: Path) -> None:
    part.unlink(missing_ok=True)
    part.with_name(part.name + ".json").unlink(missing_ok=True)
