"""Reading a batch request and queueing its jobs: many ``file`` parts (and one ``settings``) in
one multipart body, or a JSON object with a list of ``imageUrls``.

Every item becomes an ordinary job through the submission service, with the same limits (each
item takes a place in the queue and counts against the rate limit as it is read, each file the
upload limit) and the same checks. All items are read and checked before any is queued: one
bad item refuses the whole batch, its error carrying the item's ``index`` (0-based, in request
order) and ``filename``.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from aiohttp import BodyPartReader, web

from pipelines.tools import Tool
from server.access import check_rate
from server.batch_store import Batch
from server.batches import BatchTracker
from server.errors import ApiError, InvalidParams, PayloadTooLarge, as_api_error
from server.fetch import FetchPolicy, fetch_image
from server.jobs import Job
from server.submissions import PreparedJob, SubmissionService
from server.uploads import (FILE_FIELDS, PARSE_FAILURES, StoredUpload, Submission, json_object, malformed,
                            merge_settings, read_field, read_limited, store_part)

URL_LISTS = ("imageUrls", "image_urls")
_MAX_FIELDS = 64
_FIELD_ALLOWANCE = 1024 * 1024  # the non-file parts of a multipart body


@dataclass
class BatchSubmission:
    items: list[Submission] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)  # every item's settings
    webhook_url: str | None = None  # POSTed to once, when the batch ends

    def discard(self) -> None:
        for item in self.items:
            item.discard()


async def submit_batch(request: web.Request, tool: Tool, service: SubmissionService,
                       tracker: BatchTracker) -> Batch:
    """Read, check every item, then queue them all and open the batch; nothing is queued on error."""
    batch = BatchSubmission()
    try:
        await _read(request, service, batch)
        prepared = await _prepare(tool, service, batch)
        jobs = _commit(service, prepared)
        await service.manager.handed_over(jobs)
        try:
            return tracker.create(tool.name, jobs, batch.webhook_url)
        except BaseException:  # never answered 202: its jobs must not run unseen
            _cancel(service, jobs)
            raise
    finally:
        batch.discard()


@contextmanager
def at_item(index: int, name: str) -> Iterator[None]:
    """An item's error, said to be that item's; errors that are not the client's pass unchanged."""
    try:
        yield
    except Exception as exc:
        error = as_api_error(exc)
        if error is None or "index" in error.details:
            raise
        raise ApiError(f"Item {index} ({name}): {error.message}", code=error.code, status=error.status,
                       headers=error.headers, **{**error.details, "index": index, "filename": name}) from None


async def _read(request: web.Request, service: SubmissionService, batch: BatchSubmission) -> None:
    service.refuse_when_draining()
    settings = service.settings
    if (request.content_length or 0) > settings.max_batch_items * settings.max_upload_bytes + _FIELD_ALLOWANCE:
        raise _too_many(settings.max_batch_items)
    try:
        if request.content_type == "multipart/form-data":
            await _read_multipart(request, service, batch)
        elif request.content_type == "application/json":
            await _read_json(request, service, batch)
        else:
            raise InvalidParams("Send the images as multipart/form-data 'file' parts, or JSON with 'imageUrls'.",
                                code="MISSING_FILE")
    except PARSE_FAILURES as exc:
        raise malformed(exc) from None
    if not batch.items:
        raise InvalidParams("The batch has no image: add 'file' parts, or a non-empty 'imageUrls' list.",
                            code="MISSING_FILE")
    batch.webhook_url = await service.pop_webhook_url(batch.fields)  # the batch's, not each item's
    for item in batch.items:
        item.fields = dict(batch.fields)


async def _read_multipart(request: web.Request, service: SubmissionService, batch: BatchSubmission) -> None:
    reader = await request.multipart()
    fields: dict[str, str] = {}
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise InvalidParams("Nested multipart bodies are not supported.", code="BAD_MULTIPART")
        if part.name in FILE_FIELDS and part.filename is not None:
            index = len(batch.items)
            with at_item(index, part.filename):
                place = _take_place(request, service, index)
                try:
                    upload = await store_part(part, service.settings.tmp_dir, service.settings.max_upload_bytes)
                except BaseException:
                    place.release()
                    raise
                batch.items.append(Submission(upload=upload, place=place))
        elif part.name:
            if len(fields) >= _MAX_FIELDS:
                raise InvalidParams("Too many form fields.", code="TOO_MANY_FIELDS")
            fields[part.name] = await read_field(part)
    batch.fields = merge_settings(fields)


async def _read_json(request: web.Request, service: SubmissionService, batch: BatchSubmission) -> None:
    body = json_object(await read_limited(request), "request body")
    lists = [body.pop(name) for name in URL_LISTS if name in body]
    if len(lists) != 1 or not isinstance(lists[0], list):
        raise InvalidParams("Give 'imageUrls': a list of image URLs.", code="MISSING_FILE")
    batch.fields = body
    policy = FetchPolicy(max_bytes=service.settings.max_upload_bytes, allow_private=service.settings.allow_private_urls)
    for index, url in enumerate(lists[0]):
        with at_item(index, url if isinstance(url, str) else "?"):
            if not isinstance(url, str) or not url.strip():
                raise InvalidParams("The image URL must be a non-empty string.", code="INVALID_URL")
            place = _take_place(request, service, index)
            try:
                upload: StoredUpload = await fetch_image(url.strip(), service.settings.tmp_dir, policy)
            except BaseException:
                place.release()
                raise
            batch.items.append(Submission(upload=upload, place=place))


def _take_place(request: web.Request, service: SubmissionService, index: int):
    if index >= service.settings.max_batch_items:
        raise _too_many(service.settings.max_batch_items)
    check_rate(request, service.submit_limit)
    return service.take_queue_place()


async def _prepare(tool: Tool, service: SubmissionService, batch: BatchSubmission) -> list[PreparedJob]:
    prepared = []
    for index, item in enumerate(batch.items):
        with at_item(index, item.upload.filename if item.upload else "?"):
            prepared.append(await service.prepare(tool, item))
    return prepared


def _commit(service: SubmissionService, prepared: list[PreparedJob]) -> list[Job]:
    """Queue every checked job, or none: if one cannot be stored, those already queued are cancelled."""
    jobs: list[Job] = []
    try:
        for item in prepared:
            jobs.append(service.commit(item))
    except BaseException:
        _cancel(service, jobs)
        raise
    return jobs


def _cancel(service: SubmissionService, jobs: list[Job]) -> None:
    for job in jobs:
        service.manager.cancel(job.id)


def _too_many(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"A batch takes at most {limit} images.", code="TOO_MANY_FILES", maxItems=limit)
