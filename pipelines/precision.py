"""The numeric precision a network runs in, per device and model, and a window runner using it.

* CUDA: fp16 through autocast (what RealESRGANer's ``half=True`` does; the weights stay fp32, so
  the provider's shared model is not modified and a CPU fallback still has fp32 weights).
* CPU with AMX or AVX512-BF16: bf16 autocast with channels_last, if on a calibration image the
  bf16 output matches the fp32 output within :data:`BF16_MIN_PSNR_DB`; fp32 channels_last
  otherwise.
* Other CPUs: fp32 with channels_last, which oneDNN runs faster than the default NCHW layout.

Speeds and agreements measured: docs/NOTES.md, "Precision".

Each model's loader decides once, when it loads the model, and leaves the decision on it
(:func:`precision_of` reads it back). GFPGAN, DDColor and the damage detector take the same
decision (:func:`decide_precision`) with their own agreement measure.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger("restora.precision")

# An RMS error of 1.4 levels of 255; real x4plus weights measured 50.5 dB on the card (docs/NOTES.md).
BF16_MIN_PSNR_DB = 45.0
CALIBRATION_SIDE = 64  # even (x2 pixel-unshuffle); one fp32 and one bf16 pass, 147 GFLOP each for x4plus
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

_decisions_lock = threading.Lock()


@dataclass(frozen=True)
class Precision:
    name: str  # "fp16" | "bf16" | "fp32"
    device_type: str  # "cuda" | "cpu"
    channels_last: bool
    calibration_psnr_db: float | None = None  # bf16 vs fp32 on the calibration image, when measured

    @contextlib.contextmanager
    def autocast(self, tensor_device_type: str) -> Iterator[None]:
        """Autocast to this precision, but only on the device type it was chosen for (a model
        that is somewhere else, say a CPU copy after a GPU fallback, simply runs in fp32)."""
        import torch

        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.name)
        if dtype is None or tensor_device_type != self.device_type:
            yield
            return
        with torch.autocast(device_type=self.device_type, dtype=dtype):
            yield


FP16_CUDA = Precision("fp16", "cuda", channels_last=False)
FP32_CPU = Precision("fp32", "cpu", channels_last=True)


def realesrgan_precision(model: "torch.nn.Module", device: str) -> Precision:
    """The precision a Real-ESRGAN network runs in on ``device``; its loader calls this once."""
    return decide_precision(device, lambda: bf16_agreement_db(model, calibration_image(CALIBRATION_SIDE)),
                            channels_last=True, bf16_allowed=cpu_has_bf16_units, name="Real-ESRGAN")


def precision_of(model: object, device: str, *, channels_last: bool = True) -> Precision:
    """The precision the loader decided for ``model`` (its ``precision``) where it applies to
    ``device``; otherwise the device's plain one: fp16 on CUDA, fp32 on the CPU (a CPU fallback of a
    CUDA model, or a network built by hand, as tests and benches do, that no loader decided for)."""
    decided = getattr(model, "precision", None)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if isinstance(decided, Precision) and decided.device_type == device_type:
        return decided
    return FP16_CUDA if device_type == "cuda" else Precision("fp32", "cpu", channels_last=channels_last)


def remembered(cache: dict, key: object, decide: Callable[[], Precision], label: str) -> Precision:
    """``cache[key]``, decided (and logged) on first use; one lock, so a calibration runs once."""
    with _decisions_lock:
        if key not in cache:
            cache[key] = decide()
            log.info("precision for %s: %s", label, cache[key])
        return cache[key]


def decide_precision(device: str, agreement_db: Callable[[], float], *, channels_last: bool,
                     bf16_allowed: Callable[[], bool], name: str) -> Precision:
    """fp16 on CUDA; on CPU bf16 where ``bf16_allowed()`` and its measured ``agreement_db()`` with
    fp32 reaches BF16_MIN_PSNR_DB, else fp32. Callables, so nothing is measured that is not needed."""
    if device.startswith("cuda"):
        return FP16_CUDA
    if not bf16_allowed():
        return Precision("fp32", "cpu", channels_last=channels_last)
    return precision_for_agreement(agreement_db(), channels_last=channels_last, name=name)


def precision_for_agreement(psnr_db: float, *, channels_last: bool, name: str) -> Precision:
    """bf16 when its output matched fp32 closely enough on the calibration image, else fp32."""
    if psnr_db >= BF16_MIN_PSNR_DB:
        return Precision("bf16", "cpu", channels_last=channels_last, calibration_psnr_db=psnr_db)
    log.warning("%s bf16 output differs from fp32 (%.1f dB < %.1f dB): using fp32", name, psnr_db, BF16_MIN_PSNR_DB)
    return Precision("fp32", "cpu", channels_last=channels_last, calibration_psnr_db=psnr_db)


def cpu_has_bf16_units() -> bool:
    """AMX or AVX512-BF16: /proc/cpuinfo on Linux, torch's own CPU probe elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = set(cpuinfo.read_text().split())
        return any(flag in flags for flag in _BF16_CPU_FLAGS)
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def bf16_agreement_db(model: "torch.nn.Module", image: np.ndarray) -> float:
    """PSNR of the bf16 output against the fp32 output (both channels_last) on ``image``."""
    fp32 = window_runner(model, FP32_CPU)(image)
    bf16 = window_runner(model, Precision("bf16", "cpu", channels_last=True))(image)
    return psnr(bf16, fp32)


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    mean_squared_error = float(np.mean((first.astype(np.float64) - second.astype(np.float64)) ** 2))
    return float("inf") if mean_squared_error == 0 else float(10 * np.log10(1.0 / mean_squared_error))


def calibration_image(side: int) -> np.ndarray:
    """A deterministic test card: smooth shading and three soft-edged discs (lens-like 0.7 px blur).

    Synthetic so the decision does not depend on which job came first, and smooth on purpose: on
    hard edges or noise the network invents texture that changes under any perturbation, so such
    cards cannot tell bf16 error from chaos (docs/NOTES.md, "Precision").
    """
    import cv2

    y, x = np.mgrid[0:side, 0:side].astype(np.float64) / side
    card = np.repeat((0.3 + 0.4 * x * (1 - y))[..., None], 3, axis=2)
    for centre_x, centre_y, radius, colour in _CALIBRATION_DISCS:
        inside = ((x - centre_x) ** 2 + (y - centre_y) ** 2 < radius**2)[..., None]
        card = np.where(inside, np.asarray(colour), card)
    return np.clip(cv2.GaussianBlur(card, (0, 0), 0.7), 0.0, 1.0).astype(np.float32)


_CALIBRATION_DISCS = ((0.3, 0.3, 0.2, (0.9, 0.6, 0.4)), (0.7, 0.6, 0.25, (0.2, 0.3, 0.6)),
                      (0.5, 0.85, 0.1, (0.95, 0.95, 0.9)))


def window_runner(model: "torch.nn.Module", precision: Precision) -> Callable[[np.ndarray], np.ndarray]:
    """A function HxWx3 float32 -> (H*s)x(W*s)x3 float32 in [0, 1] running ``model`` in ``precision``.

    Inputs go to the device the model's weights are on. channels_last is applied to the model in
    place: it changes the memory layout only, not any value another user of the model sees.
    """
    import torch

    device = next(model.parameters()).device
    memory_format = torch.channels_last if precision.channels_last else torch.contiguous_format
    if precision.channels_last:
        model.to(memory_format=torch.channels_last)

    def run_window(window: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(window.transpose(2, 0, 1))).unsqueeze(0)
        tensor = tensor.to(device).contiguous(memory_format=memory_format)
        with torch.inference_mode():
            with precision.autocast(device.type):
                output = model(tensor)
            return output[0].float().clamp_(0.0, 1.0).permute(1, 2, 0).cpu().numpy()

    return run_window
