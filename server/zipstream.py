"""A ZIP archive written straight to an HTTP response: memory stays at one chunk whatever the
archive's size, and the first bytes go out before the last file is read.

zipfile writes to a sink that cannot seek, so each entry's sizes and CRC follow its data (a data
descriptor, which every unzip tool reads); entries are stored, not compressed: they are images.
"""
from __future__ import annotations

import asyncio
import io
import time
import zipfile
from pathlib import Path

from aiohttp import web

_CHUNK = 256 * 1024
_ZIP64_FROM = 2**31  # entries this large get ZIP64 sizes (a plain entry stops at 4 GiB)


class _Sink(io.RawIOBase):
    """Collects what zipfile writes until it is sent; not seekable, so zipfile streams."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self._buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


async def stream_zip(resp: web.StreamResponse, entries: list[tuple[str, Path]]) -> None:
    """Write ``(name in the archive, file)`` entries to the prepared response ``resp``."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, path in entries:
            stat = path.stat()
            info = zipfile.ZipInfo(name, date_time=time.localtime(stat.st_mtime)[:6])
            with open(path, "rb") as source, archive.open(info, "w", force_zip64=stat.st_size >= _ZIP64_FROM) as entry:
                while chunk := await asyncio.to_thread(source.read, _CHUNK):
                    entry.write(chunk)
                    await resp.write(sink.take())
            await resp.write(sink.take())
    await resp.write(sink.take())  # the central directory
