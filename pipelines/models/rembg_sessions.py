"""rembg sessions built from the background-removal bundle's files, never from rembg's downloads.

How a session finds its file: rembg's session classes locate their model through the classmethod
``download_models`` (look under ``U2NET_HOME``/``REMBG_HOME``, else fetch with pooch). We build a
subclass of the real session class whose ``download_models`` returns the bundle's file, so the
file is passed explicitly: ``U2NET_HOME`` and ``REMBG_HOME`` are neither read nor written, nothing
leaks into other loads, and pooch cannot be reached. Everything else (pre-processing, inference,
post-processing) is rembg's own code.

``import rembg`` compiles pymatting's numba kernels the first time in a fresh environment (about
70 s, longer on a busy machine), so nothing here imports it at module import: call
:func:`warm_up_rembg` from a background thread at worker start.
"""
from __future__ import annotations

import importlib
import logging
import os
import struct
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


# -- a tiny model in rembg's input/output format, for tests and benchmarks ----------------------
# The `onnx` package is not a dependency (and torch.onnx.export needs it), so the few protobuf
# messages are written by hand: field numbers from onnx/onnx.proto.

_FLOAT = 1  # TensorProto.DataType.FLOAT
_OPSET = 13
_IR_VERSION = 7


def write_tiny_onnx(path: Path, scale: float = 8.0) -> Path:
    """Write a model with input ``input`` (N,3,H,W) and output ``mask`` (N,1,H,W), H/W dynamic.

    ``mask = sigmoid(scale * (channel 0 - channel 2))`` of the normalised input: red reads as
    foreground, blue as background, so tests can predict the mask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiny_onnx_bytes(scale))
    return path


def tiny_onnx_bytes(scale: float) -> bytes:
    weight = _tensor("weight", (1, 3, 1, 1), (scale, 0.0, -scale))
    graph = b"".join([
        _field(1, _node("Conv", ["input", "weight"], ["difference"])),
        _field(1, _node("Sigmoid", ["difference"], ["mask"])),
        _field(2, "tiny_rembg"),
        _field(5, weight),
        _field(11, _value_info("input", ("N", 3, "H", "W"))),
        _field(12, _value_info("mask", ("N", 1, "H", "W"))),
    ])
    opset = _field(2, _OPSET)
    return b"".join([_field(1, _IR_VERSION), _field(2, "restora-tests"), _field(7, graph), _field(8, opset)])


def _node(op_type: str, inputs: list[str], outputs: list[str]) -> bytes:
    fields = [_field(1, name) for name in inputs] + [_field(2, name) for name in outputs]
    return b"".join(fields + [_field(3, f"{op_type.lower()}_0"), _field(4, op_type)])


def _tensor(name: str, dims: tuple[int, ...], values: tuple[float, ...]) -> bytes:
    raw = struct.pack(f"<{len(values)}f", *values)
    return b"".join([*(_field(1, dim) for dim in dims), _field(2, _FLOAT), _field(8, name), _field(9, raw)])


def _value_info(name: str, shape: tuple[int | str, ...]) -> bytes:
    # A str dimension is symbolic (dim_param, field 2), an int is fixed (dim_value, field 1).
    dims = b"".join(_field(1, _field(2 if isinstance(d, str) else 1, d)) for d in shape)
    tensor_type = _field(1, _FLOAT) + _field(2, dims)
    return _field(1, name) + _field(2, _field(1, tensor_type))


def _field(number: int, value: int | str | bytes) -> bytes:
    """One protobuf field: ints as varints (wire type 0), str/bytes length-delimited (wire type 2)."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
