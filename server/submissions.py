"""The submission service: read a request's image and fields, check everything a job needs, and
create the job. Native tool routes and the compatibility adapters all go through it, so every
limit, check and durability rule is the same whichever API a client speaks.

It raises domain errors (``ParamError``, ``Undecodable``, ``ImageTooLarge``, ...) and ``ApiError``s;
the error middleware's one table turns them into HTTP answers.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aiohttp import web
from PIL import Image

from pipelines.base import Step
from pipelines.imaging.errors import ImageTooLarge
from pipelines.imaging.isolated import probe_header
from pipelines.imaging.sniff import ImageHeader
from pipelines.params import validate
from pipelines.registry import Registry
from pipelines.tools import InputInfo, Tool
from server.access import check_rate
from server.bundles.catalog import BundleCatalog
from server.capacity import Place, QueuePlaces
from server.errors import InvalidParams, PayloadTooLarge, ServiceUnavailable, TooManyRequests, UnsupportedMediaType
from server.fetch import FetchPolicy, fetch_image
from server.jobs import Job, JobKind
from server.lifecycle import Lifecycle
from server.manager import JobManager
from server.masks import MASK_FILE, normalised_mask
from server.planning import resolve_plan
from server.ratelimit import SlidingWindow
from server.settings import Settings
from server.uploads import FILE_FIELDS, MASK_FIELD, StoredUpload, Submission, read_submission, safe_stem
from server.webhooks import META_KEY as WEBHOOK_META, WEBHOOK_FIELDS, checked_webhook_url

URL_FIELDS = ("image_url", "imageUrl")
HeaderCheck = Callable[[ImageHeader], None]


@dataclass
class PreparedJob:
    """A job that passed every check and is not queued yet (batches check all items first)."""
    job: Job
    upload: StoredUpload
    mask: StoredUpload | None


@dataclass
class SubmissionService:
    settings: Settings
    tools: Registry[Tool]
    steps: Registry[Step]
    bundles: BundleCatalog
    manager: JobManager
    places: QueuePlaces
    probes: asyncio.Semaphore
    lifecycle: Lifecycle
    submit_limit: SlidingWindow | None

    def refuse_when_draining(self) -> None:
        if self.lifecycle.draining:
            raise ServiceUnavailable("The server is shutting down; try again shortly.", code="SHUTTING_DOWN",
                                     headers={"Retry-After": "10"})

    async def read(self, request: web.Request, file_fields: tuple[str, ...] = FILE_FIELDS,
                   max_bytes: int | None = None, mask_for: Tool | None = None) -> Submission:
        """Drain, rate and queue checks, then the fields and the one image (uploaded, or fetched from
        a URL), at most ``max_bytes`` (never over the upload limit), and the ``mask`` part where the
        tool ``mask_for`` takes one (a tool that takes none refuses it before reading it). The files
        are removed on error."""
        self.refuse_when_draining()
        check_rate(request, self.submit_limit)
        place = self.take_queue_place()
        limit = min(max_bytes or self.settings.max_upload_bytes, self.settings.max_upload_bytes)
        try:
            submission = await read_submission(request, self.settings.tmp_dir, limit, file_fields,
                                               *_mask_part(mask_for))
        except BaseException:
            place.release()
            raise
        submission.place = place
        try:
            submission.webhook_url = await self.pop_webhook_url(submission.fields)
            await self._attach_url_source(submission, limit)
        except BaseException:
            submission.discard()
            raise
        return submission

    async def submit(self, tool: Tool, submission: Submission, params_override: dict[str, Any] | None = None,
                     meta: dict[str, Any] | None = None, check_header: HeaderCheck | None = None) -> Job:
        """Create the job, and end the submission whatever happens: its files are moved into the
        job folder on success and removed on any error; its queue place is given back."""
        try:
            return await self.create_job(tool, submission, params_override, meta, check_header)
        finally:
            submission.discard()

    async def create_job(self, tool: Tool, submission: Submission, params_override: dict[str, Any] | None = None,
                         meta: dict[str, Any] | None = None, check_header: HeaderCheck | None = None) -> Job:
        """Validate everything a job needs, then persist it and queue it. Nothing is queued on error.
        ``check_header`` adds a caller's own limits on the header read here (an adapter's formats)."""
        job = self.commit(await self.prepare(tool, submission, params_override, meta, check_header))
        await self.manager.handed_over([job])
        return job

    async def prepare(self, tool: Tool, submission: Submission, params_override: dict[str, Any] | None = None,
                      meta: dict[str, Any] | None = None, check_header: HeaderCheck | None = None) -> PreparedJob:
        """Every check a job needs, and the job record; nothing is stored or queued yet."""
        upload = _require_upload(submission)
        header = await self.inspect(upload)
        if check_header is not None:
            check_header(header)
        _check_mask_accepted(tool, submission)
        info = InputInfo(width=header.width, height=header.height, format=header.format,
                         has_mask=submission.mask is not None)
        params = validate(tool.params, params_override if params_override is not None else submission.fields)
        self._check_output_size(tool.output_size(params, info))
        plan, skipped = resolve_plan(tool, params, info, self.steps, self.bundles)
        if submission.mask is not None:
            await self._normalise_mask(submission, header)
        if submission.webhook_url:
            meta = {**(meta or {}), WEBHOOK_META: submission.webhook_url}
        job = _new_job(tool, params.values, plan, skipped, meta, upload, header, has_mask=submission.mask is not None)
        return PreparedJob(job, upload, submission.mask)

    def commit(self, prepared: PreparedJob) -> Job:
        """Store and queue a prepared job: its files move into its folder."""
        self.refuse_when_draining()  # read to the end during a shutdown, then answered, never queued
        job = prepared.job
        _move_into_job_folder(self.manager.job_dir(job.id), job, prepared.upload, prepared.mask)
        return self.manager.create(job)  # removes the folder again when it cannot store the job

    async def pop_webhook_url(self, fields: dict[str, Any]) -> str | None:
        """``webhookUrl`` (form field, JSON key or settings key), taken out of the tool's params
        (they refuse unknown fields) and checked now: a bad one is refused before anything is queued."""
        values = [fields.pop(name) for name in WEBHOOK_FIELDS if name in fields]
        if not values:
            return None
        if len(values) > 1:
            raise InvalidParams("Give the webhook URL once, as webhookUrl.", code="INVALID_WEBHOOK_URL",
                                field="webhookUrl")
        return await checked_webhook_url(values[0], self.settings.allow_private_urls)

    async def inspect(self, upload: StoredUpload) -> ImageHeader:
        """Format from the bytes and pixel count from the header, before any pixel is decoded.

        Headers that only C decoders can read (HEIC, AVIF, camera RAW) are read in an isolated,
        limited child process; at most ``probes_at_once`` of those run at a time.
        """
        limit = self.settings.max_pixels
        try:
            async with self.probes:
                header = await probe_header(upload.path, timeout_s=self.settings.probe_timeout_s, max_pixels=limit)
        except (Image.DecompressionBombError, ImageTooLarge):
            raise too_many_pixels(limit, None) from None
        if header is None:
            raise UnsupportedMediaType("The file is not an image in a supported format.", code="UNSUPPORTED_FORMAT")
        if header.pixels > limit:
            raise too_many_pixels(limit, header)
        return header

    def take_queue_place(self) -> Place:
        """Hold a place in the queue before the slow part, so that concurrent uploads cannot overshoot it."""
        place = self.places.take()
        if place is None:
            raise TooManyRequests(f"The queue is full ({self.places.limit} jobs waiting); try again later.",
                                  code="QUEUE_FULL", headers={"Retry-After": "30"})
        return place

    async def _attach_url_source(self, submission: Submission, max_bytes: int) -> None:
        """Exactly one image source: an upload, or ``image_url`` / ``imageUrl`` (fetched safely)."""
        urls = [submission.fields.pop(name) for name in URL_FIELDS if name in submission.fields]
        if len(urls) + (submission.upload is not None) > 1:
            raise InvalidParams("Send exactly one image: a file upload or one image URL, not both.",
                                code="TOO_MANY_SOURCES")
        if not urls:
            return
        if not isinstance(urls[0], str) or not urls[0].strip():
            raise InvalidParams("The image URL must be a non-empty string.", code="INVALID_URL")
        policy = FetchPolicy(max_bytes=max_bytes, allow_private=self.settings.allow_private_urls)
        submission.upload = await fetch_image(urls[0].strip(), self.settings.tmp_dir, policy)

    async def _normalise_mask(self, submission: Submission, header: ImageHeader) -> None:
        """Swap the uploaded mask for its checked, normalised copy (the caller removes it on error)."""
        assert submission.mask is not None
        uploaded = submission.mask
        submission.mask = await normalised_mask(uploaded, header, self.settings, self.probes)
        uploaded.discard()

    def _check_output_size(self, size: tuple[int, int]) -> None:
        limit = self.settings.max_output_side
        if max(size) > limit:
            raise PayloadTooLarge(f"The result would be {size[0]}×{size[1]} pixels, over the limit of {limit} "
                                  f"pixels on a side; choose a smaller scale.", code="OUTPUT_TOO_LARGE",
                                  maxOutputSide=limit)


# Reads submissions and creates their jobs (native routes and compatibility adapters alike).
SUBMISSIONS = web.AppKey("submissions", SubmissionService)


def _new_job(tool: Tool, values: Any, plan: list[dict[str, Any]], skipped: list[dict[str, Any]],
             meta: dict[str, Any] | None, upload: StoredUpload, header: ImageHeader, *, has_mask: bool) -> Job:
    values = dict(values)
    if values.get("outputFormat") is None and tool.default_format:
        values["outputFormat"] = tool.default_format
    return Job(id=str(uuid.uuid4()), kind=JobKind.TOOL, tool=tool.name, params=values, plan=plan, skipped=skipped,
               meta=meta or {}, input_name=upload.filename, input_size=upload.size, input_format=header.format,
               input_file=f"input.{header.format}", mask_file=MASK_FILE if has_mask else "",
               output_stem=f"{safe_stem(upload.filename)}_{tool.output_suffix}")


def _move_into_job_folder(folder: Path, job: Job, upload: StoredUpload, mask: StoredUpload | None) -> None:
    folder.mkdir(parents=True)
    try:
        os.replace(upload.path, folder / job.input_file)
        if mask is not None:
            os.replace(mask.path, folder / job.mask_file)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _check_mask_accepted(tool: Tool, submission: Submission) -> None:
    if submission.mask is not None and not tool.accepts_mask:
        raise _mask_not_accepted(tool)


def _mask_part(tool: Tool | None) -> tuple[str | None, InvalidParams | None]:
    """The multipart field of a repair mask, and the refusal to raise when that tool takes none."""
    if tool is None:
        return None, None
    return MASK_FIELD, None if tool.accepts_mask else _mask_not_accepted(tool)


def _mask_not_accepted(tool: Tool) -> InvalidParams:
    return InvalidParams(f"'{tool.name}' takes no mask; only restore-photo repairs a mask you send.",
                         code="MASK_NOT_ACCEPTED", field="mask")


def _require_upload(submission: Submission) -> StoredUpload:
    if submission.upload is None:
        raise InvalidParams("No image was sent: add it as a multipart 'file' field or give an 'image_url'.",
                            code="MISSING_FILE")
    if submission.upload.size == 0:
        raise UnsupportedMediaType("The uploaded file is empty.", code="EMPTY_FILE")
    return submission.upload


def too_many_pixels(limit: int, header: ImageHeader | None) -> ImageTooLarge:
    size = f" ({header.width}×{header.height})" if header else ""
    return ImageTooLarge(f"The image{size} has more pixels than the limit of {limit / 1e6:g} megapixels.",
                         details={"maxPixels": limit})
