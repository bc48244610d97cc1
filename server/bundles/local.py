"""Offline installs: model files from a directory or a .zip / .tar(.gz) archive.

An archive is checked as a whole before anything is read from it: any member with an absolute
path, a ``..`` component, or that is a link or a device refuses the archive. The same checksum
rules as for downloads apply to what is taken from it.
"""
from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from server.bundles.manifest import ModelSpec


class UnsafeArchive(ValueError):
    pass


class LocalSource:
    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        self._members = None if path.is_dir() else _safe_members(path)

    def describe(self) -> str:
        return str(self.path)

    def copy_to(self, spec: ModelSpec, dest: Path) -> bool:
        """Copy the model's file to ``dest``; False when the source does not contain it."""
        if self._members is None:
            found = self._find_in_dir(spec)
            if found is None:
                return False
            shutil.copyfile(found, dest)
            return True
        member = self._members.get(spec.file)
        if member is None:
            return False
        _extract(self.path, member, dest)
        return True

    def _find_in_dir(self, spec: ModelSpec) -> Path | None:
        for candidate in (self.path / spec.file, self.path / (spec.group or spec.id) / spec.file):
            if candidate.is_file():
                return candidate
        return next((p for p in sorted(self.path.rglob(spec.file)) if p.is_file()), None)


def _is_zip(archive: Path) -> bool:
    """By the leading signature: zipfile.is_zipfile also says yes for a tar that merely contains a
    zip-based file (a .pth checkpoint is one), because it looks for the directory near the end."""
    with open(archive, "rb") as fh:
        return fh.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def _safe_members(archive: Path) -> dict[str, str]:
    """Map file name → member name for every regular file; refuse the archive if any member is unsafe."""
    entries = _zip_entries(archive) if _is_zip(archive) else _tar_entries(archive)
    members: dict[str, str] = {}
    for name, is_regular, is_dir in entries:
        parts = PurePosixPath(name.replace("\\", "/"))
        if parts.is_absolute() or ".." in parts.parts or (len(name) > 1 and name[1] == ":"):
            raise UnsafeArchive(f"{archive.name}: member '{name}' escapes the archive")
        if not (is_regular or is_dir):
            raise UnsafeArchive(f"{archive.name}: member '{name}' is a link or special file")
        if is_regular:
            members.setdefault(parts.name, name)
    return members


def _zip_entries(archive: Path) -> list[tuple[str, bool, bool]]:
    with zipfile.ZipFile(archive) as zf:
        out = []
        for info in zf.infolist():
            mode = info.external_attr >> 16
            is_link = stat.S_ISLNK(mode)
            out.append((info.filename, not info.is_dir() and not is_link, info.is_dir() and not is_link))
        return out


def _tar_entries(archive: Path) -> list[tuple[str, bool, bool]]:
    try:
        with tarfile.open(archive) as tf:
            return [(m.name, m.isfile(), m.isdir()) for m in tf.getmembers()]
    except tarfile.TarError as exc:
        raise UnsafeArchive(f"{archive.name} is neither a zip nor a tar archive: {exc}") from exc


def _extract(archive: Path, member: str, dest: Path) -> None:
    if _is_zip(archive):
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 4 * 1024 * 1024)
        return
    with tarfile.open(archive) as tf:
        src = tf.extractfile(member)
        if src is None:
            raise UnsafeArchive(f"{archive.name}: '{member}' is not a regular file")
        with src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 4 * 1024 * 1024)
