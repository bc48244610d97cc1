"""rembg sessions built from the background-removal bundle's files, never from rembg's downloads.

How a session finds its file: rembg's session classes locate their model through the classmethod
``download_models`` (look under ``U2NET_HOME``/``REMBG_HOME``, else fetch with pooch). We build a
subclass of the real session class whose ``download_models`` returns the bundle's file, so the
file is passed explicitly: ``U2NET_HOME`` and ``REMBG_HOME`` are neither read nor written, nothing
leaks into other loads, and pooch cannot be reached. Everything else (pre-processing, inference,
post-processing) is rembg's own code.

``import rembg`` compiles pymatting's numba kernels the first time in a fresh environment (a minute
or more; docs/NOTES.md), so nothing here imports it at module import: call
:func:`warm_up_rembg` from a background thread at worker start.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from pipelines.base import ModelUnavailable

log = logging.getLogger("restora.models.rembg")

BUNDLE = "background-removal"

_warm_lock = threading.Lock()
_first_import_seconds: float | None = None


def warm_up_rembg() -> float:
    """Import rembg (and so compile or load pymatting's numba kernels); cheap after the first call.

    Returns the seconds the first import took, so the caller can log it.
    """
    global _first_import_seconds
    with _warm_lock:
        if _first_import_seconds is None:
            started = time.perf_counter()
            importlib.import_module("rembg")
            _first_import_seconds = time.perf_counter() - started
            log.info("rembg imported in %.1fs", _first_import_seconds)
        return _first_import_seconds


def load_session(path: Path, device: str) -> Any:
    """A rembg session for ``path`` (named ``<session-name>.onnx``) on ``device``; never downloads."""
    path = Path(path)
    if not path.is_file():
        raise ModelUnavailable(f"The model file {path} is missing: reinstall the {BUNDLE} bundle.",
                               details={"bundle": BUNDLE})
    warm_up_rembg()
    session_class = _session_class(path.stem)
    session = _build(session_class, path, _providers(device))
    log.info("rembg session %s on %s", path.stem, session.inner_session.get_providers())
    return session


def _session_class(session_name: str) -> type:
    from rembg.sessions import sessions

    if session_name not in sessions:
        raise ModelUnavailable(f"'{session_name}' is not a rembg session name; the {BUNDLE} bundle is broken.",
                               details={"bundle": BUNDLE})
    return sessions[session_name]


def _build(session_class: type, path: Path, providers: list[Any]) -> Any:
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf, NoModel

    pinned = _pinned_to_file(session_class, path)
    try:
        return pinned(path.stem, _session_options(), providers=providers)
    except (InvalidProtobuf, InvalidGraph, NoModel, Fail) as exc:  # the file is not a usable model
        raise ModelUnavailable(f"The model file {path} could not be loaded ({exc}); reinstall the "
                               f"{BUNDLE} bundle.", details={"bundle": BUNDLE}) from exc


def _pinned_to_file(session_class: type, path: Path) -> type:
    """The real session class, with its model lookup (and download) replaced by ``path``."""
    model_file = str(path)

    def download_models(cls: type, *args: Any, **kwargs: Any) -> str:
        return model_file

    return type(f"Bundled{session_class.__name__}", (session_class,),
                {"download_models": classmethod(download_models)})


def _session_options() -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _thread_count()
    options.inter_op_num_threads = 1  # one graph at a time; parallelism lives inside operators
    return options


def _thread_count() -> int:
    """The worker's share of the cores (the pool starts it with OMP_NUM_THREADS); else every usable core."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _providers(device: str) -> list[Any]:
    """CUDA first when asked for and onnxruntime has it (onnxruntime-gpu), always CPU as fallback."""
    import onnxruntime as ort

    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
