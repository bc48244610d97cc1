"""Shared plumbing for the drop-in adapters of hosted APIs (seeds 000, 002, 003, 004).

Each adapter maps its documented request onto a native tool and its response shape onto the
native job, so everything (validation, durability, limits) is the native code path.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web

from pipelines.imaging.sniff import ImageHeader
from server.errors import InvalidParams
from server.jobs import Job
from server.state import HUB, MANAGER, SIGNER, TOOLS
from server.submissions import SUBMISSIONS
from server.uploads import Submission


async def read_documented(request: web.Request, file_fields: tuple[str, ...], known: Mapping[str, Any],
                          max_bytes: int | None = None,
                          check: Callable[[Submission, dict[str, Any]], Awaitable[None]] | None = None
                          ) -> tuple[Submission, dict[str, Any]]:
    """The submission and its documented fields (defaults filled in). On any refusal, including
    the adapter's own ``check``, the uploaded or fetched file is removed before the error goes out."""
    submission = await request.app[SUBMISSIONS].read(request, file_fields, max_bytes)
    try:
        fields = take(submission.fields, known)
        if check is not None:
            await check(submission, fields)
    except BaseException:
        submission.discard()
        raise
    return submission, fields


async def start_job(request: web.Request, tool_name: str, submission: Submission,
                    params: dict[str, Any], meta: dict[str, Any] | None = None,
                    check_header: Callable[[ImageHeader], None] | None = None) -> Job:
    return await request.app[SUBMISSIONS].submit(request.app[TOOLS].get(tool_name), submission, params, meta,
                                                 check_header)


def take(fields: dict[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
    """The adapter's documented fields with defaults; anything else is refused like natively."""
    unknown = [k for k in fields if k not in known]
    if unknown:
        raise InvalidParams(f"Unknown field(s): {', '.join(sorted(unknown))}.", code="INVALID_PARAMS",
                            fields=[{"field": k, "message": "is not a known parameter"} for k in unknown])
    return {k: fields.get(k, default) for k, default in known.items()}


async def wait_for_end(app: web.Application, job_id: str, timeout_s: float) -> Job:
    """Wait until the job is terminal (or the timeout passes); returns the job as it then is."""
    deadline = time.monotonic() + timeout_s
    cursor = 0
    while (remaining := deadline - time.monotonic()) > 0:
        job = app[MANAGER].get(job_id)
        if job is None or job.status.terminal or app[HUB].closed:
            break
        events = await app[HUB].wait_after(job_id, cursor, timeout=min(remaining, 5.0))
        cursor = events[-1].seq if events else cursor
    job = app[MANAGER].get(job_id)
    assert job is not None
    return job


def result_url(request: web.Request, download_path: str, ttl_s: float) -> str:
    """An absolute, signed link that works without an API key until it expires."""
    signed = request.app[SIGNER].sign(download_path, ttl_s)
    return f"{request.url.origin()}{signed}"


def remaining_ttl(job: Job) -> float:
    return max(0.0, (job.expires_at or time.time()) - time.time())


async def read_file_bytes(request: web.Request, job: Job, download_path: str) -> bytes:
    name = download_path.rsplit("/", 1)[-1]
    return await asyncio.to_thread((request.app[MANAGER].job_dir(job.id) / name).read_bytes)
