"""The model store on disk: verified files, installed-bundle records, install locks.

Layout under ``DATA_DIR/models``::

    files/<model id or group>/<file>   verified model files, each stored once
    state/<bundle>.json                what an installed bundle holds (written last, atomically)
    locks/<bundle>.lock                flock held by the one install running (released by the
                                       kernel if that process dies, so a crash never wedges it)
    partial/                           downloads in progress (resumable)

A bundle is *installed* when its record exists and every file it lists is present with the
recorded size; *broken* when the record exists but a file is missing or wrong.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from server.bundles.manifest import Manifest, ModelSpec

NOT_INSTALLED, INSTALLING, INSTALLED, BROKEN = "not_installed", "installing", "installed", "broken"


class InstallInProgress(RuntimeError):
    pass


@dataclass(frozen=True)
class BundleState:
    status: str
    installed_models: tuple[str, ...] = ()
    missing_models: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)


class ModelStore:
    def __init__(self, root: Path):
        self.root = root
        self.files_dir = root / "files"
        self.state_dir = root / "state"
        self.locks_dir = root / "locks"
        self.partial_dir = root / "partial"

    def ensure_dirs(self) -> None:
        for folder in (self.files_dir, self.state_dir, self.locks_dir, self.partial_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def model_path(self, spec: ModelSpec) -> Path:
        return self.files_dir / (spec.group or spec.id) / spec.file

    def recorded_paths(self, manifest: Manifest, record: dict[str, Any]) -> Iterator[tuple[str, dict, Path]]:
        """(model id, record entry, file path) of each recorded model the manifest still names;
        a model the manifest dropped since the install is passed over (it has no known path)."""
        for model_id, entry in record.get("models", {}).items():
            try:
                yield model_id, entry, self.model_path(manifest.model(model_id))
            except KeyError:
                continue

    # -- records ----------------------------------------------------------------------------
    def read_record(self, name: str) -> dict[str, Any] | None:
        path = self.state_dir / f"{name}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"unreadable": True}

    def write_record(self, name: str, record: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def remove_record(self, name: str) -> None:
        (self.state_dir / f"{name}.json").unlink(missing_ok=True)

    def records(self) -> dict[str, dict[str, Any]]:
        if not self.state_dir.is_dir():
            return {}
        return {p.stem: r for p in sorted(self.state_dir.glob("*.json"))
                if (r := self.read_record(p.stem)) is not None}

    # -- status -----------------------------------------------------------------------------
    def state(self, manifest: Manifest) -> BundleState:
        if self.is_locked(manifest.name):
            return BundleState(INSTALLING)
        record = self.read_record(manifest.name)
        if record is None:
            return BundleState(NOT_INSTALLED, missing_models=tuple(m.id for m in manifest.models))
        if record.get("unreadable"):
            return BundleState(BROKEN, problems=("the install record cannot be read",))
        problems = tuple(self._file_problems(manifest, record))
        recorded = record.get("models", {})
        installed = tuple(m.id for m in manifest.models if m.id in recorded)  # manifest order
        missing = tuple(m.id for m in manifest.models if m.id not in recorded)
        return BundleState(BROKEN if problems else INSTALLED, installed, missing, problems, record)

    def _file_problems(self, manifest: Manifest, record: dict[str, Any]) -> Iterator[str]:
        for model_id, entry, path in self.recorded_paths(manifest, record):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                yield f"{model_id}: file missing ({path.name})"
                continue
            if size != entry.get("size"):
                yield f"{model_id}: size {size} differs from the installed {entry.get('size')}"
            if entry.get("drift"):
                yield f"{model_id}: checksum drift found by verify"

    def model_file(self, manifest: Manifest, model_id: str) -> Path | None:
        """The path of an installed, present model file, else None."""
        record = self.read_record(manifest.name) or {}
        if model_id not in record.get("models", {}):
            return None
        path = self.model_path(manifest.model(model_id))
        return path if path.is_file() else None

    # -- locking ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        with open(self.locks_dir / f"{name}.lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InstallInProgress(f"an install of '{name}' is already running") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()} {time.time():.0f}\n")
            fh.flush()
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def is_locked(self, name: str) -> bool:
        path = self.locks_dir / f"{name}.lock"
        if not path.exists():
            return False
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False
