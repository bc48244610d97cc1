"""``/api/v1/tools``: list tools, and submit a job to one (202 with a job id)."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

from aiohttp import web
from PIL import Image

from pipelines.imaging.errors import ImageTooLarge, Undecodable
from pipelines.imaging.isolated import probe_header
from pipelines.imaging.sniff import ImageHeader
from pipelines.params import ParamError, validate
from pipelines.registry import UnknownName
from pipelines.tools import InputInfo, Tool
from server.access import check_rate
from server.errors import ApiError, InvalidParams, PayloadTooLarge, ServiceUnavailable, TooManyRequests, UnsupportedMediaType
from server.capacity import Place
from server.jobs import Job
from server.masks import MASK_FILE, normalised_mask
from server.planning import resolve_plan
from server.fetch import FetchPolicy, fetch_image
from server.state import BUNDLES, LIFECYCLE, LIMITS, MANAGER, PROBES, QUEUE_PLACES, SETTINGS, STEPS, TOOLS
from server.uploads import FILE_FIELDS, MASK_FIELD, StoredUpload, Submission, read_submission, safe_stem

routes = web.RouteTableDef()
URL_FIELDS = ("image_url", "imageUrl")


@routes.get("/api/v1/tools")
async def list_tools(request: web.Request) -> web.Response:
    tools = request.app[TOOLS]
    return web.json_response({"tools": [tools.get(name).describe() for name in tools]})


@routes.post("/api/v1/tools/{tool}")
async def submit(request: web.Request) -> web.Response:
    refuse_when_draining(request.app)
    tool = _lookup_tool(request)
    submission = await read_source(request, mask_field=MASK_FIELD)
    try:
        job = await create_job(request.app, tool, submission)
    finally:
        submission.discard()  # moved into the job folder on success; removed on any error
    location = f"/api/v1/jobs/{job.id}"
    body = {"jobId": job.id, "async": True, "status": job.status.value,
            "statusUrl": location, "progressUrl": f"{location}/progress"}
    return web.json_response(body, status=202, headers={"Location": location})


async def create_job(app: web.Application, tool: Tool, submission: Submission,
                     params_override: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                     check_header: Callable[[ImageHeader], None] | None = None) -> Job:
    """Validate everything a job needs, then persist it and queue it. Nothing is queued on error.
    ``check_header`` adds a caller's own limits on the header read here (an adapter's formats)."""
    upload = _require_upload(submission)
    header = await inspect_upload(app, upload)
    if check_header is not None:
        check_header(header)
    _check_mask_accepted(tool, submission)
    info = InputInfo(width=header.width, height=header.height, format=header.format,
                     has_mask=submission.mask is not None)
    try:
        params = validate(tool.params, params_override if params_override is not None else submission.fields)
        _check_output_size(app, tool.output_size(params, info))
        plan, skipped = resolve_plan(tool, params, info, app[STEPS], app[BUNDLES])
    except ParamError as exc:
        raise InvalidParams("Some parameters are invalid: " + str(exc), fields=exc.problems) from None
    if submission.mask is not None:
        await _normalise_mask(app, submission, header)
    values = dict(params.values)
    if values.get("outputFormat") is None and tool.default_format:
        values["outputFormat"] = tool.default_format
    job_id = str(uuid.uuid4())
    job = Job(id=job_id, kind="tool", tool=tool.name, params=values, plan=plan, skipped=skipped, meta=meta or {},
              input_name=upload.filename, input_size=upload.size, input_format=header.format,
              input_file=f"input.{header.format}", mask_file=MASK_FILE if submission.mask else "",
              output_stem=f"{safe_stem(upload.filename)}_{tool.output_suffix}")
    refuse_when_draining(app)  # read to the end during a shutdown, then answered, never queued
    _move_into_job_folder(app[MANAGER].job_dir(job_id), job, upload, submission.mask)
    return app[MANAGER].create(job)  # removes the folder again when it cannot store the job


def _move_into_job_folder(folder: Path, job: Job, upload: StoredUpload, mask: StoredUpload | None) -> None:
    folder.mkdir(parents=True)
    try:
        os.replace(upload.path, folder / job.input_file)
        if mask is not None:
            os.replace(mask.path, folder / job.mask_file)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


async def _normalise_mask(app: web.Application, submission: Submission, header: ImageHeader) -> None:
    """Swap the uploaded mask for its checked, normalised copy (the caller removes it on error)."""
    assert submission.mask is not None
    uploaded = submission.mask
    submission.mask = await normalised_mask(app, uploaded, header)
    uploaded.discard()


def _check_mask_accepted(tool: Tool, submission: Submission) -> None:
    if submission.mask is not None and not tool.accepts_mask:
        raise InvalidParams(f"'{tool.name}' takes no mask; only restore-photo repairs a mask you send.",
                            code="MASK_NOT_ACCEPTED", field="mask")


def refuse_when_draining(app: web.Application) -> None:
    if app[LIFECYCLE].draining:
        raise ServiceUnavailable("The server is shutting down; try again shortly.", code="SHUTTING_DOWN",
                                 headers={"Retry-After": "10"})


async def read_source(request: web.Request, file_fields: tuple[str, ...] = FILE_FIELDS,
                      max_bytes: int | None = None, mask_field: str | None = None) -> Submission:
    """Rate and queue checks, then the fields and the one image (uploaded, or fetched from a URL),
    at most ``max_bytes`` (never over the server's upload limit), and a mask where ``mask_field``
    names its part. The files are removed on error."""
    check_rate(request, request.app[LIMITS]["submit"])
    place = take_queue_place(request)
    settings = request.app[SETTINGS]
    limit = min(max_bytes or settings.max_upload_bytes, settings.max_upload_bytes)
    try:
        submission = await read_submission(request, settings.tmp_dir, limit, file_fields, mask_field)
    except BaseException:
        place.release()
        raise
    submission.place = place
    try:
        await attach_url_source(request.app, submission, limit)
    except BaseException:
        submission.discard()
        raise
    return submission


def _lookup_tool(request: web.Request) -> Tool:
    try:
        return request.app[TOOLS].get(request.match_info["tool"])
    except UnknownName as exc:
        raise InvalidParams(str(exc), code="UNKNOWN_TOOL", known=exc.known) from None


async def attach_url_source(app: web.Application, submission: Submission, max_bytes: int | None = None) -> None:
    """Exactly one image source: an upload, or ``image_url`` / ``imageUrl`` (fetched safely)."""
    urls = [submission.fields.pop(name) for name in URL_FIELDS if name in submission.fields]
    if len(urls) + (submission.upload is not None) > 1:
        raise InvalidParams("Send exactly one image: a file upload or one image URL, not both.",
                            code="TOO_MANY_SOURCES")
    if not urls:
        return
    if not isinstance(urls[0], str) or not urls[0].strip():
        raise InvalidParams("The image URL must be a non-empty string.", code="INVALID_URL")
    settings = app[SETTINGS]
    policy = FetchPolicy(max_bytes=max_bytes or settings.max_upload_bytes, allow_private=settings.allow_private_urls)
    submission.upload = await fetch_image(urls[0].strip(), settings.tmp_dir, policy)


def take_queue_place(request: web.Request) -> Place:
    """Hold a place in the queue before the slow part, so that concurrent uploads cannot overshoot it."""
    places = request.app[QUEUE_PLACES]
    place = places.take()
    if place is None:
        raise TooManyRequests(f"The queue is full ({places.limit} jobs waiting); try again later.",
                              code="QUEUE_FULL", headers={"Retry-After": "30"})
    return place


def _require_upload(submission: Submission) -> StoredUpload:
    if submission.upload is None:
        raise InvalidParams("No image was sent: add it as a multipart 'file' field or give an 'image_url'.",
                            code="MISSING_FILE")
    if submission.upload.size == 0:
        raise UnsupportedMediaType("The uploaded file is empty.", code="EMPTY_FILE")
    return submission.upload


async def inspect_upload(app: web.Application, upload: StoredUpload) -> ImageHeader:
    """Format from the bytes and pixel count from the header, before any pixel is decoded.

    Headers that only C decoders can read (HEIC, AVIF, camera RAW) are read in an isolated, limited
    child process; at most PROBES_AT_ONCE of those run at a time.
    """
    settings = app[SETTINGS]
    try:
        async with app[PROBES]:
            header = await probe_header(upload.path, timeout_s=settings.probe_timeout_s,
                                        max_pixels=settings.max_pixels)
    except (Image.DecompressionBombError, ImageTooLarge):
        raise _too_many_pixels(settings.max_pixels, None) from None
    except Undecodable as exc:
        raise ApiError(f"The image could not be read: {exc.message}", code="UNDECODABLE", status=422) from None
    if header is None:
        raise UnsupportedMediaType("The file is not an image in a supported format.", code="UNSUPPORTED_FORMAT")
    if header.pixels > settings.max_pixels:
        raise _too_many_pixels(settings.max_pixels, header)
    return header


def _check_output_size(app: web.Application, size: tuple[int, int]) -> None:
    limit = app[SETTINGS].max_output_side
    if max(size) > limit:
        raise PayloadTooLarge(f"The result would be {size[0]}×{size[1]} pixels, over the limit of {limit} "
                              f"pixels on a side; choose a smaller scale.", code="OUTPUT_TOO_LARGE",
                              maxOutputSide=limit)


def _too_many_pixels(limit: int, header: ImageHeader | None) -> PayloadTooLarge:
    size = f" ({header.width}×{header.height})" if header else ""
    return PayloadTooLarge(f"The image{size} has more pixels than the limit of {limit / 1e6:g} megapixels.",
                           code="IMAGE_TOO_LARGE", maxPixels=limit)
