"""rembg sessions built from the background-removal bundle's files, never from rembg's downloads.

How a session finds its file: rembg's session classes locate their model through the classmethod
``download_models`` (look under ``U2NET_HOME``/``REMBG_HOME``, else fetch with pooch). We build a
subclass of the real session class whose ``download_models`` returns the bundle's file, so the
file is passed explicitly: ``U2NET_HOME`` and ``REMBG_HOME`` are neither read nor written, nothing
leaks into other loads, and pooch cannot be reached. Everything else (pre-processing, inference,
post-processing) is rembg's own code.

Inference on a CPU with bf16 units (AMX, AVX512-BF16): the same ONNX graph can run in torch in
bf16 with channels_last (:mod:`pipelines.models.onnx_torch`), which measured 1.9x (u2netp) to
3.2x (isnet) faster than ONNX Runtime's fp32 per forward (docs/NOTES.md, "rembg"). It is used
only where, on a fixed photo, its mask matches ONNX Runtime's within
:data:`pipelines.precision.BF16_MIN_PSNR_DB`; the decision is kept in the precision cache, per
model file, device and interpreter version. Otherwise, and on CUDA, ONNX Runtime runs the model
as rembg would. With random weights the check refuses bf16 (their masks moved by tens of levels);
briefly trained stand-ins passed it (docs/NOTES.md); the real weights could not be tried here.

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
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.base import ModelUnavailable
from pipelines.precision import Precision

if TYPE_CHECKING:
    from pipelines.models.precision_cache import PrecisionCache

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


def load_session(path: Path, device: str, cache: "PrecisionCache | None" = None) -> Any:
    """A rembg session for ``path`` (named ``<session-name>.onnx``) on ``device``; never downloads.

    Its inference runs in torch bf16 where that was decided (see the module's docstring); the
    decision is read from ``cache`` when it holds one for this file and device.
    """
    path = Path(path)
    session = load_onnxruntime_session(path, device)
    if not _bf16_possible(device):
        return session
    candidate = _TorchCandidate(path)

    def decide() -> "Precision":
        return _decide(session, candidate)
    precision = decide() if cache is None else cache.decided(path, _decision_device(device), decide)
    if precision.name == "bf16":
        _use_torch(session, candidate)
    log.info("rembg %s inference: %s", path.stem, session.inner_session.get_providers()[0])
    return session


def _decision_device(device: str) -> str:
    """The device part of a stored decision's key, with the interpreter's version: a changed
    interpreter decides again instead of trusting what an older one measured."""
    from pipelines.models.onnx_torch import INTERPRETER_VERSION

    return f"{device}+onnx_torch{INTERPRETER_VERSION}"


def _use_torch(session: Any, candidate: "_TorchCandidate") -> None:
    """Swap in the torch graph; a stored decision this interpreter can no longer honour keeps ORT."""
    from pipelines.models.onnx_torch import UnsupportedGraph

    try:
        session.inner_session = candidate.get()
    except UnsupportedGraph as exc:
        log.warning("rembg %s: stored bf16 decision not usable (%s): ONNX Runtime runs it", candidate.path.stem, exc)


def load_onnxruntime_session(path: Path, device: str) -> Any:
    """rembg's own session for ``path``, run by ONNX Runtime."""
    path = Path(path)
    if not path.is_file():
        raise ModelUnavailable(f"The model file {path} is missing: reinstall the {BUNDLE} bundle.",
                               details={"bundle": BUNDLE})
    warm_up_rembg()
    session_class = _session_class(path.stem)
    session = _build(session_class, path, _providers(device))
    log.info("rembg session %s on %s", path.stem, session.inner_session.get_providers())
    return session


# The decision "ONNX Runtime runs it": rembg's own fp32 path (stored like any precision decision).
_ONNXRUNTIME = Precision("fp32", "cpu", channels_last=False)


def _bf16_possible(device: str) -> bool:
    from pipelines.precision import cpu_has_bf16_units

    return not device.startswith("cuda") and cpu_has_bf16_units()


class _TorchCandidate:
    """The model's graph in torch bf16, built on first use (not at all when a stored decision says
    ONNX Runtime), at most once."""

    def __init__(self, path: Path):
        self.path, self._session = path, None

    def get(self) -> Any:
        if self._session is None:
            import torch

            from pipelines.models.onnx_torch import TorchOnnxSession
            self._session = TorchOnnxSession(self.path, "cpu", torch.bfloat16)
        return self._session


def _decide(session: Any, candidate: _TorchCandidate) -> "Precision":
    """bf16 or ONNX Runtime (fp32) for this model; a graph torch cannot run stays on ONNX Runtime."""
    from pipelines.models.onnx_torch import UnsupportedGraph

    try:
        torch_session = candidate.get()
    except UnsupportedGraph as exc:
        log.info("rembg %s stays on ONNX Runtime: %s", candidate.path.stem, exc)
        return _ONNXRUNTIME
    return bf16_decision(session, torch_session)


def bf16_decision(session: Any, torch_session: Any) -> "Precision":
    """bf16 when the torch session's mask of a fixed photo matches ONNX Runtime's closely enough.

    The masks compared are rembg's final ones (after its min-max stretch and resize), so the measure
    is what a user would see. A graph that fails to run in torch is fp32, that is ONNX Runtime.
    """
    from pipelines.models.onnx_torch import UnsupportedGraph
    from pipelines.precision import precision_for_agreement, psnr

    photo = calibration_photo()
    reference = mask_with(session, session.inner_session, photo)
    try:
        candidate = mask_with(session, torch_session, photo)
    except UnsupportedGraph as exc:  # an operator torch cannot run as the graph asks (see Runner._apply)
        log.warning("rembg graph failed in torch (%s): ONNX Runtime runs it", exc)
        return _ONNXRUNTIME
    return precision_for_agreement(psnr(candidate, reference), channels_last=True, name="rembg")


def mask_with(session: Any, inner_session: Any, photo: Any) -> np.ndarray:
    """rembg's final mask of ``photo`` (float32, 0-1) with ``inner_session`` running the graph; the
    session's own inner session is back in place afterwards, whatever happened."""
    own = session.inner_session
    session.inner_session = inner_session
    try:
        return np.asarray(session.predict(photo)[0], np.float32) / 255.0
    finally:
        session.inner_session = own


def calibration_photo() -> Any:
    """scikit-image's astronaut (bundled with scikit-image, which rembg needs): a photo with one
    clear subject, where a saliency model is confident; a synthetic card has none, and the model's
    output there is all doubt, stretched by rembg's min-max normalisation."""
    from PIL import Image
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((512, 512), Image.Resampling.BILINEAR)


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
