"""Checksums and size rules for model files."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from server.bundles.manifest import ModelSpec

# Where upstream publishes no exact size, a file must still be within this fraction of the
# manifest's approximate size before we trust it (a login page or an error body is far smaller).
APPROX_SIZE_TOLERANCE = 0.05


class ChecksumMismatch(ValueError):
    pass


@dataclass(frozen=True)
class Digests:
    size: int
    sha256: str
    md5: str


def digests(path: Path) -> Digests:
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 1024 * 1024):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return Digests(size=size, sha256=sha.hexdigest(), md5=md5.hexdigest())


def check_download(spec: ModelSpec, found: Digests) -> str:
    """Apply the manifest's rules to a downloaded file; returns how it was verified."""
    if spec.size is not None and found.size != spec.size:
        raise ChecksumMismatch(f"{spec.file}: size {found.size:,} bytes, expected {spec.size:,}")
    if spec.sha256 and found.sha256 != spec.sha256:
        raise ChecksumMismatch(f"{spec.file}: sha256 {found.sha256} does not match the published {spec.sha256}")
    if spec.md5 and found.md5 != spec.md5:
        raise ChecksumMismatch(f"{spec.file}: md5 {found.md5} does not match the published {spec.md5}")
    if spec.checksum:
        return spec.checksum[0]
    if spec.approx_size is not None and abs(found.size - spec.approx_size) > APPROX_SIZE_TOLERANCE * spec.approx_size:
        raise ChecksumMismatch(f"{spec.file}: size {found.size:,} bytes is far from the expected ~{spec.approx_size:,}")
    return "trust-on-first-use"


def check_converted(spec: ModelSpec, found: Digests, expected_sha256: str | None) -> str:
    """A file produced by a converter (deterministic): checked against the converter's own hash."""
    if expected_sha256 and found.sha256 != expected_sha256:
        raise ChecksumMismatch(f"{spec.file}: converted file sha256 {found.sha256} differs from {expected_sha256}")
    return "converted"
