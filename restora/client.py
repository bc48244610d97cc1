"""A small client for a running Restora server: submit, follow progress, wait, download, cancel.

:class:`AsyncClient` speaks the HTTP API with aiohttp; :class:`Client` is the same API for plain
synchronous code (it runs an :class:`AsyncClient` on an event loop in its own thread). Every
error, the server's and the connection's, is raised as :class:`RestoraError` with the server's
``code``, ``message`` and HTTP ``status`` (``None`` when no answer came).

    with Client("http://127.0.0.1:13490") as restora:
        job = restora.submit("restore-photo", "old.jpg", {"denoiseStrength": 30})
        result = restora.wait(job["jobId"])
        restora.download(result["downloadUrl"], "old_restored.jpg")
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Mapping, Union
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp

from restora.sse import Event, SseParser

DEFAULT_URL = "http://127.0.0.1:13490"
Image = Union[str, "os.PathLike[str]", bytes]  # a file path, the file's bytes, or an http(s) URL


class RestoraError(Exception):
    """An error answer (``status`` set), a failed job (``status`` None, ``job_id`` set) or no answer."""

    def __init__(self, code: str, message: str, status: int | None = None, *,
                 job_id: str | None = None, details: Mapping[str, Any] | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status
        self.job_id = job_id
        self.details = dict(details or {})


class AsyncClient:
    """``unix_socket``: reach the server on that socket (``base_url`` then only names the host).
    A dropped progress stream is reopened with ``Last-Event-ID`` up to ``reconnects`` times in a row."""

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, unix_socket: str | None = None,
                 reconnects: int = 8, reconnect_delay_s: float = 0.5, read_timeout_s: float = 60.0):
        self.base_url = base_url.rstrip("/") + "/"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._unix_socket = unix_socket
        self._reconnects, self._delay = reconnects, reconnect_delay_s
        # The stream sends a ping every 15 s; a read silent for longer means a dead connection.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.UnixConnector(path=self._unix_socket) if self._unix_socket else None
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers, timeout=self._timeout)
        return self._session

    def url(self, path_or_url: str) -> str:
        return urljoin(self.base_url, path_or_url)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self._http().request(method, self.url(path), **kwargs) as resp:
                await raise_for_error(resp)
                return await resp.json()
        except aiohttp.ClientError as exc:
            raise connection_error(exc) from exc

    async def tools(self) -> list[dict[str, Any]]:
        """Every tool with its parameter schema (``GET /api/v1/tools``)."""
        return (await self._json("GET", "/api/v1/tools"))["tools"]

    async def health(self) -> dict[str, Any]:
        return await self._json("GET", "/api/v1/health")

    async def job(self, job_id: str) -> dict[str, Any]:
        """The job's snapshot: status, stage, percent, result or error."""
        return await self._json("GET", f"/api/v1/jobs/{job_id}")

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job and remove its files (idempotent)."""
        return await self._json("DELETE", f"/api/v1/jobs/{job_id}")

    async def submit(self, tool: str, image: Image, params: Mapping[str, Any] | None = None, *,
                     filename: str | None = None, mask: str | os.PathLike[str] | bytes | None = None) -> dict[str, Any]:
        """Queue a job: ``202 {"jobId", "statusUrl", "progressUrl", ...}``. ``image`` is a file path,
        the image's bytes (named ``filename``) or an http(s) URL the server fetches."""
        if isinstance(image, str) and urlsplit(image).scheme in ("http", "https"):
            if mask is not None:
                raise ValueError("a mask is sent as a file, with an uploaded image")
            return await self._json("POST", f"/api/v1/tools/{tool}", json={**(params or {}), "imageUrl": image})
        with _Form(params) as form:
            form.add_file("file", image, filename)
            if mask is not None:
                form.add_file("mask", mask, None)
            return await self._json("POST", f"/api/v1/tools/{tool}", data=form.data)

    async def events(self, job_id: str, last_event_id: int | None = None) -> AsyncIterator[Event]:
        """The job's events until its terminal one; a dropped stream is reopened with ``Last-Event-ID``
        so no event is lost or repeated."""
        failures = 0
        while True:
            problem: BaseException | str = "the progress stream kept ending before the job did"
            try:
                async for event in self._stream(job_id, last_event_id):
                    failures = 0
                    last_event_id = event.id if event.id is not None else last_event_id
                    yield event
                    if event.terminal:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                problem = exc
            failures += 1  # the stream broke or ended before the terminal event (a restart, a proxy)
            if failures > self._reconnects:
                raise connection_error(problem)
            await asyncio.sleep(min(self._delay * 2 ** (failures - 1), 10.0))

    async def _stream(self, job_id: str, last_event_id: int | None) -> AsyncIterator[Event]:
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        async with self._http().get(self.url(f"/api/v1/jobs/{job_id}/progress"), headers=headers) as resp:
            await raise_for_error(resp)
            parser = SseParser()
            async for raw in resp.content:
                if (event := parser.feed(raw.decode("utf-8").rstrip("\r\n"))) is not None:
                    yield event

    async def wait(self, job_id: str, on_event: Callable[[Event], None] | None = None) -> dict[str, Any]:
        """Follow the job to its end and return its result; a failed or cancelled job raises
        :class:`RestoraError` with the job's error code and message."""
        async for event in self.events(job_id):
            if on_event is not None:
                on_event(event)
            if event.type == "complete":
                return event.data["result"]
            if event.terminal:
                raise job_error(job_id, event)
        raise AssertionError("events() ends only after a terminal event")

    async def download(self, url: str, dest: str | os.PathLike[str]) -> Path:
        """Write a result file to ``dest`` atomically (a partial file never has its name)."""
        dest = Path(dest)
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            async with self._http().get(self.url(url)) as resp:
                await raise_for_error(resp)
                with open(partial, "wb") as out:
                    async for chunk in resp.content.iter_chunked(256 * 1024):
                        out.write(chunk)
            os.replace(partial, dest)
        except aiohttp.ClientError as exc:
            raise connection_error(exc) from exc
        finally:
            partial.unlink(missing_ok=True)
        return dest

    async def download_bytes(self, url: str) -> bytes:
        try:
            async with self._http().get(self.url(url)) as resp:
                await raise_for_error(resp)
                return await resp.read()
        except aiohttp.ClientError as exc:
            raise connection_error(exc) from exc


class _Form:
    """Multipart form of a submission; files it opened are closed on exit."""

    def __init__(self, params: Mapping[str, Any] | None):
        self.data = aiohttp.FormData()
        self._open: list[Any] = []
        if params:
            self.data.add_field("settings", json.dumps(dict(params)))

    def add_file(self, name: str, source: str | os.PathLike[str] | bytes, filename: str | None) -> None:
        if isinstance(source, (bytes, bytearray)):
            body: Any = bytes(source)
            filename = filename or "image"
        else:
            body = open(source, "rb")
            self._open.append(body)
            filename = filename or Path(source).name
        self.data.add_field(name, body, filename=filename, content_type="application/octet-stream")

    def __enter__(self) -> "_Form":
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._open:
            handle.close()


async def raise_for_error(resp: aiohttp.ClientResponse) -> None:
    """Raise the server's error (``{"error": {"code", "message", ...}}``) for any status of 400 or more."""
    if resp.status < 400:
        return
    try:
        error = (await resp.json(content_type=None))["error"]
        code, message = str(error.pop("code")), str(error.pop("message"))
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        error, code, message = {}, f"HTTP_{resp.status}", resp.reason or "no error body"
    raise RestoraError(code, message, resp.status, details=error)


def connection_error(problem: BaseException | str) -> RestoraError:
    reason = problem if isinstance(problem, str) else (str(problem) or type(problem).__name__)
    return RestoraError("CONNECTION_FAILED", f"No answer from the server: {reason}")


def job_error(job_id: str, event: Event) -> RestoraError:
    if event.type == "cancelled":
        return RestoraError("CANCELLED", "The job was cancelled.", job_id=job_id)
    error = dict(event.data.get("error") or {})
    code, message = error.pop("code", "FAILED"), error.pop("message", "The job failed.")
    return RestoraError(code, message, job_id=job_id, details=error)


def result_filename(url: str) -> str:
    """The file name a download URL names (the server's output naming)."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


class Client:
    """The synchronous client: :class:`AsyncClient`'s methods, run on a private event loop thread."""

    def __init__(self, base_url: str = DEFAULT_URL, **options: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="restora-client", daemon=True)
        self._thread.start()
        self._async = AsyncClient(base_url, **options)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._async.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def tools(self) -> list[dict[str, Any]]:
        return self._call(self._async.tools())

    def health(self) -> dict[str, Any]:
        return self._call(self._async.health())

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call(self._async.job(job_id))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call(self._async.cancel(job_id))

    def submit(self, tool: str, image: Image, params: Mapping[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        return self._call(self._async.submit(tool, image, params, **options))

    def events(self, job_id: str, last_event_id: int | None = None) -> Iterator[Event]:
        stream = self._async.events(job_id, last_event_id)
        try:
            while True:
                try:
                    yield self._call(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if self._thread.is_alive():  # not after close(): the stream went with the loop
                self._call(stream.aclose())

    def wait(self, job_id: str, on_event: Callable[[Event], None] | None = None) -> dict[str, Any]:
        """``on_event`` is called on the client's loop thread."""
        return self._call(self._async.wait(job_id, on_event))

    def download(self, url: str, dest: str | os.PathLike[str]) -> Path:
        return self._call(self._async.download(url, dest))

    def download_bytes(self, url: str) -> bytes:
        return self._call(self._async.download_bytes(url))
