"""Reading tool submissions: a multipart upload streamed to disk, plus settings.

Settings may come as one JSON string field (``settings``, as in seed 001), as individual form
fields, or as a JSON request body. The file is written to a temporary file in the data directory
while its size is counted, so memory stays bounded whatever the upload size; so is a second
image, the repair mask, where the route takes one (multipart part ``mask``).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable
from urllib.parse import unquote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from server.capacity import Place
from server.errors import ApiError, InvalidParams, MalformedRequest, PayloadTooLarge

FILE_FIELDS = ("file",)
MASK_FIELD = "mask"
_MAX_FIELD_BYTES = 64 * 1024
_MAX_FIELDS = 64
_CHUNK = 256 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# What aiohttp and the codecs raise for a body that cannot be parsed: ValueError (no boundary, a
# body that never starts it, a part cut off, part headers that never end), LookupError (an unknown
# charset), RecursionError, HttpProcessingError (NUL or CR/LF in part headers) and
# RequestPayloadError (a body that is not the chunked or gzip/deflate/br encoding it claims).
# Disk errors (OSError) are the server's and stay 500s.
PARSE_FAILURES = (ValueError, LookupError, RecursionError, HttpProcessingError, web.RequestPayloadError)
_HTTP_STATUS_PREFIX = re.compile(r"^\d{3}, message:")


@dataclass
class StoredUpload:
    path: Path
    filename: str
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Submission:
    fields: dict[str, Any] = field(default_factory=dict)
    upload: StoredUpload | None = None
    mask: StoredUpload | None = None  # white = repair here (restore-photo)
    webhook_url: str | None = None  # checked; POSTed to when the job ends (server/webhooks.py)
    place: Place | None = None  # its place in the job queue, held while it is read and checked

    def discard(self) -> None:
        """The submission ended (its job queued, or refused): its files and its place go."""
        for stored in (self.upload, self.mask):
            if stored is not None:
                stored.discard()
        if self.place is not None:
            self.place.release()


async def read_submission(request: web.Request, tmp_dir: Path, max_bytes: int,
                          file_fields: tuple[str, ...] = FILE_FIELDS, mask_field: str | None = None,
                          mask_refused: ApiError | None = None) -> Submission:
    """``max_bytes`` caps each stored image (the photo, and the mask where ``mask_field`` is given).
    ``mask_refused`` is raised as soon as a mask part starts (a tool that takes none), before a
    byte of it is stored. A body that cannot be parsed is refused here, in one place, as
    ``400 INVALID_REQUEST``."""
    images = 2 if mask_field else 1
    if request.content_length is not None and request.content_length > images * max_bytes + _MAX_FIELD_BYTES * 4:
        raise _too_large(max_bytes)
    try:
        return await _read_body(request, tmp_dir, max_bytes, file_fields, (mask_field, mask_refused))
    except PARSE_FAILURES as exc:
        raise malformed(exc) from None


def malformed(exc: Exception) -> MalformedRequest:
    """The answer to a body that failed to parse with one of ``PARSE_FAILURES``."""
    # Where a body that could not be parsed ends is anyone's guess (one that is not the gzip it
    # claims makes aiohttp drop the connection after this answer): the client must not send
    # another request on this connection.
    return MalformedRequest(f"The request could not be read: {_reason(exc)}", headers={"Connection": "close"})


async def _read_body(request: web.Request, tmp_dir: Path, max_bytes: int,
                     file_fields: tuple[str, ...], mask: tuple[str | None, ApiError | None]) -> Submission:
    content_type = request.content_type
    if content_type == "multipart/form-data":
        return await _read_multipart(request, tmp_dir, max_bytes, file_fields, mask)
    if content_type == "application/json":
        return Submission(fields=json_object(await read_limited(request), "request body"))
    if content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        return Submission(fields=merge_settings({k: v for k, v in form.items() if isinstance(v, str)}))
    raise InvalidParams("Send the image as multipart/form-data with a 'file' field.", code="MISSING_FILE")


async def _read_multipart(request: web.Request, tmp_dir: Path, max_bytes: int,
                          file_fields: tuple[str, ...], mask: tuple[str | None, ApiError | None]) -> Submission:
    mask_field, mask_refused = mask
    reader = await request.multipart()
    submission = Submission()
    fields: dict[str, str] = {}
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise InvalidParams("Nested multipart bodies are not supported.", code="BAD_MULTIPART")
            if part.name in file_fields and part.filename is not None:
                if submission.upload is not None:
                    raise InvalidParams("Send exactly one image per request.", code="TOO_MANY_FILES")
                submission.upload = await store_part(part, tmp_dir, max_bytes)
            elif mask_field is not None and part.name == mask_field:
                if mask_refused is not None:
                    raise mask_refused
                if submission.mask is not None:
                    raise InvalidParams("Send at most one mask per request.", code="TOO_MANY_FILES")
                submission.mask = await store_part(part, tmp_dir, max_bytes)
            elif part.name:
                if len(fields) >= _MAX_FIELDS:
                    raise InvalidParams("Too many form fields.", code="TOO_MANY_FIELDS")
                fields[part.name] = await read_field(part)
        submission.fields = merge_settings(fields)
    except BaseException:
        submission.discard()
        raise
    return submission


async def store_part(part: BodyPartReader, tmp_dir: Path, max_bytes: int) -> StoredUpload:
    path, size = await write_capped(_chunks_of(part), tmp_dir, max_bytes, _too_large)
    return StoredUpload(path=path, filename=part.filename or "image", size=size)


async def _chunks_of(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(_CHUNK):
        yield chunk


async def write_capped(chunks: AsyncIterator[bytes], tmp_dir: Path, max_bytes: int,
                       too_large: Callable[[int], Exception]) -> tuple[Path, int]:
    """Stream an image into a new file under ``tmp_dir``, refusing it past ``max_bytes``; the file
    is fsynced (the job is durable once we answer 202) and removed on any error."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_dir / f"upload-{uuid.uuid4().hex}"
    size = 0
    try:
        with open(path, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise too_large(max_bytes)
                out.write(chunk)
            out.flush()
            await asyncio.to_thread(os.fsync, out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size


async def read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(8192):
        data += chunk
        if len(data) > _MAX_FIELD_BYTES:
            raise InvalidParams(f"Form field '{part.name}' is too long.", code="FIELD_TOO_LONG")
    return data.decode(part.get_charset(default="utf-8"), errors="replace")


async def read_limited(request: web.Request) -> bytes:
    body = await request.content.read(_MAX_FIELD_BYTES + 1)
    if len(body) > _MAX_FIELD_BYTES:
        raise InvalidParams("The JSON body is too large.", code="BODY_TOO_LARGE")
    return body


def merge_settings(fields: dict[str, str]) -> dict[str, Any]:
    """Individual fields plus the keys of a ``settings`` JSON string; a key given twice is an error."""
    merged: dict[str, Any] = {k: v for k, v in fields.items() if k != "settings"}
    if "settings" in fields:
        for key, value in json_object(fields["settings"].encode(), "settings").items():
            if key in merged:
                raise InvalidParams(f"'{key}' is given both as a field and inside settings.",
                                    code="INVALID_PARAMS", fields=[{"field": key, "message": "given twice"}])
            merged[key] = value
    return merged


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except (ValueError, RecursionError) as exc:
        # ValueError: bad syntax or encoding, or an integer past Python's limit of 4,300 digits;
        # RecursionError: arrays or objects nested thousands of levels deep.
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidParams(f"The {what} is not valid JSON: {reason}", code="INVALID_JSON") from None
    if not isinstance(value, dict):
        raise InvalidParams(f"The {what} must be a JSON object.", code="INVALID_JSON")
    return value


def _reason(exc: Exception) -> str:
    reason = _HTTP_STATUS_PREFIX.sub("", str(exc)).strip()  # aiohttp's "400, message:" prefix
    return (reason or type(exc).__name__)[:200]


def safe_stem(filename: str) -> str:
    """A file-system-safe stem of the client's file name (no directories, no odd characters)."""
    # Some clients percent-encode the multipart filename (aiohttp does); decode it first.
    base = unquote(filename).replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
    stem = _UNSAFE.sub("-", stem).strip("-.")[:80]
    return stem or "image"


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The upload is larger than the limit of {max_bytes // (1024 * 1024)} MB.",
                           code="UPLOAD_TOO_LARGE", limitBytes=max_bytes)
