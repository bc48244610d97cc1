"""``restora run``'s command line made into a request: the parameters, the files, where results go.

Everything here is checked before any work starts. Parameters are checked against the tool
schemas the server publishes (``GET /api/v1/tools``, or the same registry in-process) with the
server's own validation and its error table, so bad usage is refused with exactly the code and
message a submission would get.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pipelines.params import Param, ParamError, validate
from pipelines.registry import UnknownName
from restora.client import RestoraError
from server.errors import ApiError, as_api_error

# Inside folders only files with these endings are taken (photos sit beside sidecars, thumbnails
# databases, notes); a file named on the command line is always sent, whatever its name, and the
# server recognises its format from its bytes.
IMAGE_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .jfif .png .webp .gif .bmp .tif .tiff .heic .heif .avif .dng .cr2 .cr3 .nef .arw .orf "
    ".rw2 .raf .psd .exr .hdr .tga".split())
_KINDS = ("boolean", "number", "integer", "string")


@dataclass(frozen=True)
class Item:
    """One file to restore and the folder its results go to."""

    source: Path
    dest_dir: Path


def usage_error(code: str, message: str, **details: Any) -> RestoraError:
    return RestoraError(code, message, details=details)


def parse_params(settings_json: str | None, assignments: Sequence[str]) -> dict[str, Any]:
    """``--settings`` (a JSON object), then each ``--set KEY=VALUE`` on top (a string, read like a
    form field: ``--set denoise=false``)."""
    params: dict[str, Any] = {}
    if settings_json is not None:
        try:
            value = json.loads(settings_json)
        except ValueError as exc:
            raise usage_error("INVALID_JSON", f"--settings is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise usage_error("INVALID_JSON", "--settings must be a JSON object, such as '{\"denoise\": false}'.")
        params.update(value)
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise usage_error("INVALID_PARAMS", f"--set takes KEY=VALUE, not '{assignment}'.")
        params[key.strip()] = value
    return params


def check_request(tools: Iterable[Mapping[str, Any]], tool: str, params: Mapping[str, Any]) -> None:
    """Refuse an unknown tool or invalid parameters as the server would (its codes and messages)."""
    schemas = {t["name"]: t["parameters"] for t in tools}
    if tool not in schemas:
        raise _as_client_error(UnknownName("tool", tool, sorted(schemas)))
    spec = params_from_schema(schemas[tool])
    if spec is None:
        return  # a schema this version cannot read: the server checks each submission itself
    # The webhook URL is the submission's, not the tool's: the server checks it apart.
    tool_params = {k: v for k, v in params.items() if k not in ("webhookUrl", "webhook_url")}
    try:
        validate(spec, tool_params)
    except ParamError as exc:
        raise _as_client_error(exc) from None


def params_from_schema(schema: Mapping[str, Any]) -> list[Param] | None:
    """The declarations back from their JSON Schema (the inverse of ``Param.schema``)."""
    spec = []
    for name, prop in schema.get("properties", {}).items():
        if prop.get("type") not in _KINDS:
            return None
        pattern = prop.get("pattern")
        spec.append(Param(name=name, kind=prop["type"], default=prop.get("default"),
                          description=prop.get("description", ""), minimum=prop.get("minimum"),
                          maximum=prop.get("maximum"), choices=tuple(prop["enum"]) if "enum" in prop else None,
                          pattern=pattern[1:-1] if pattern else None))
    return spec


def _as_client_error(exc: Exception) -> RestoraError:
    error = as_api_error(exc)
    assert isinstance(error, ApiError)
    return RestoraError(error.code, error.message, error.status, details=error.details)


def collect_inputs(inputs: Sequence[str], out_dir: Path | None, recursive: bool) -> list[Item]:
    """The files to restore, in order, each once. Folders give the images directly inside them (all
    levels with ``recursive``); under ``out_dir`` results keep their place relative to the folder."""
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise usage_error("INVALID_OUTPUT_DIR", f"The output folder {out_dir} exists and is not a folder.")
    items: list[Item] = []
    seen: set[Path] = set()
    for raw in inputs:
        path = Path(raw)
        if path.is_file():
            found = [(path, out_dir or path.parent)]
        elif path.is_dir():
            found = [(f, (out_dir / f.parent.relative_to(path)) if out_dir else f.parent)
                     for f in _images_in(path, recursive, out_dir)]
        else:
            raise usage_error("INPUT_NOT_FOUND", f"No such file or folder: {raw}")
        for source, dest in found:
            if source.resolve() not in seen:
                seen.add(source.resolve())
                items.append(Item(source, dest))
    if not items:
        raise usage_error("NO_INPUTS", "No images found in " + ", ".join(inputs)
                          + ("" if recursive else " (add --recursive to look in sub-folders)") + ".")
    return items


def _images_in(folder: Path, recursive: bool, out_dir: Path | None) -> list[Path]:
    skip = out_dir.resolve() if out_dir is not None else None
    found = []
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue  # hidden files and folders (and this command's partial downloads)
        if skip is not None and path.resolve().is_relative_to(skip):
            continue  # results of an earlier run into a folder inside the input folder
        if path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(path)
    return found


class OutputNames:
    """Result paths claimed in this run: two inputs whose results would share a name (``a.gif`` and
    ``a.bmp`` both give ``a_restored.png``) get ``-2``, ``-3``... instead of overwriting each other.
    A file left by an earlier run is replaced."""

    def __init__(self) -> None:
        self._claimed: set[Path] = set()

    def claim(self, folder: Path, filename: str) -> Path:
        stem, dot, suffix = filename.rpartition(".")
        stem, suffix = (stem, dot + suffix) if dot else (filename, "")
        candidate, n = folder / filename, 1
        while candidate.resolve() in self._claimed:
            n += 1
            candidate = folder / f"{stem}-{n}{suffix}"
        self._claimed.add(candidate.resolve())
        return candidate
