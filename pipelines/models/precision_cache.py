"""Precision decisions kept on disk, per model file and device, so a worker that starts again does
not calibrate again (a GFPGAN or ParseNet check is two full forwards: seconds on a CPU).

A decision is valid for one model file (path, size, modification time), one device, one torch
version and one CPU model: any of them changing measures again. The file is a small JSON object;
workers sharing it replace it atomically, and a lost race only means one more calibration later.
An unreadable or damaged file is treated as empty (and logged), never as a failure.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from pipelines.precision import Precision

log = logging.getLogger("restora.precision")
_lock = threading.Lock()


class PrecisionCache:
    def __init__(self, path: Path):
        self.path = Path(path)

    def decided(self, model_file: Path, device: str, decide: Callable[[], Precision]) -> Precision:
        """The stored decision for this file and device, or ``decide()``, stored for next time."""
        key = decision_key(Path(model_file), device)
        with _lock:
            stored = self._read().get(key)
        if stored is not None:
            try:
                return Precision(**stored)
            except TypeError:
                log.warning("ignoring a malformed precision decision in %s", self.path)
        precision = decide()
        with _lock:
            entries = self._read()
            entries[key] = asdict(precision)
            self._write(entries)
        return precision

    def _read(self) -> dict:
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("precision cache %s unreadable (%s): measuring again", self.path, exc)
            return {}
        return entries if isinstance(entries, dict) else {}

    def _write(self, entries: dict) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp",
                                             encoding="utf-8") as out:
                json.dump(entries, out, indent=1, sort_keys=True)
            os.replace(out.name, self.path)
        except OSError as exc:  # a read-only data dir: the decision still holds for this worker
            log.warning("could not store precision decisions in %s: %s", self.path, exc)


def decision_key(model_file: Path, device: str) -> str:
    import torch

    stat = model_file.stat()
    return "|".join((str(model_file.resolve()), str(stat.st_size), str(stat.st_mtime_ns), device,
                     torch.__version__, cpu_identity()))


def cpu_identity() -> str:
    """The CPU model and whether it has bf16 units: a decision measured on one CPU is not another's."""
    from pipelines.precision import cpu_has_bf16_units

    name = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                     if line.startswith("model name")), "")
    return f"{name or 'cpu'} bf16={cpu_has_bf16_units()}"
