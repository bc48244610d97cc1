"""Loaders: read an official checkpoint format from an explicit path into a ready model.

The manifest names a loader for every model file; workers call :func:`load_model` once per model
and keep the result warm. Loaders never download anything and never look at the working directory.

A loader also decides the precision its model runs in, once, when it loads it, and leaves the
decision on the model as ``model.precision`` (a :class:`pipelines.precision.Precision`): steps
only read it. Given a :class:`pipelines.models.precision_cache.PrecisionCache`, the decisions of
Real-ESRGAN, GFPGAN, ParseNet and RetinaFace are kept on disk per model file and device.
DDColor's loader keeps its decision on its colorizer; LaMa always runs fp32 and carries none.
rembg's sessions decide between torch bf16 and ONNX Runtime for their inference, kept in the
same cache (:func:`pipelines.models.rembg_sessions.load_session`).

Models that ship in the package (:data:`PACKAGED`) need no bundle: :class:`PackagedModels`
provides them by id, and the worker's provider falls back to it.
"""
from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipelines.registry import Registry

if TYPE_CHECKING:
    from pipelines.models.precision_cache import PrecisionCache

log = logging.getLogger("restora.models")
Loader = Callable[[Path, str], Any]

# Model id -> (loader, file in pipelines/models/weights/) for the models the package ships.
PACKAGED = {"damage-unet": ("damage-unet", "damage-unet.pt"),
            "damage-unet-conservative": ("damage-unet", "damage-unet-conservative.pt")}
PACKAGED_DIR = Path(__file__).with_name("weights")


def _rrdbnet(scale: int) -> Loader:
    def load(path: Path, device: str) -> Any:
        from pipelines.models.rrdbnet import load_rrdbnet

        return load_rrdbnet(path, scale, device)
    return load


def _srvgg_x4(path: Path, device: str) -> Any:
    """realesr-general-x4v3 (and its -wdn twin): SRVGGNetCompact, 64 features, 32 convs, PReLU."""
    import torch

    from pipelines.models.rrdbnet import select_state_dict
    from pipelines.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from basicsr.archs.srvgg_arch import SRVGGNetCompact

    model = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu")
    model.load_state_dict(select_state_dict(torch.load(path, map_location="cpu", weights_only=True)), strict=True)
    return model.eval().requires_grad_(False).to(device)


def _lazy(module: str, function: str, *extra: Any) -> Loader:
    """A loader whose module (and its heavy imports) is imported only when a model is loaded;
    ``extra`` arguments follow the path and the device."""
    def load(path: Path, device: str) -> Any:
        return getattr(importlib.import_module(module), function)(path, device, *extra)
    return load


def _decided(load: Loader, module: str, decide: str, cache: "PrecisionCache | None") -> Loader:
    """``load``, then ``module.decide(model, device)`` picks the precision, kept on the model; with a
    cache, a decision already taken for this file and device is read back instead of measured."""
    def load_and_decide(path: Path, device: str) -> Any:
        model = load(path, device)

        def measure() -> Any:
            return getattr(importlib.import_module(module), decide)(model, device)
        model.precision = measure() if cache is None else cache.decided(path, device, measure)
        return model
    return load_and_decide


def build_loader_registry(cache: "PrecisionCache | None" = None) -> Registry[Loader]:
    registry: Registry[Loader] = Registry("loader")
    esrgan = ("pipelines.precision", "realesrgan_precision", cache)
    registry.register("rrdbnet-x4", _decided(_rrdbnet(4), *esrgan))
    registry.register("rrdbnet-x2", _decided(_rrdbnet(2), *esrgan))
    registry.register("srvgg-x4", _decided(_srvgg_x4, *esrgan))
    registry.register("gfpgan-v1-clean", _decided(_lazy("pipelines.models.gfpgan", "load_gfpgan"),
                                                  "pipelines.models.gfpgan", "gfpgan_precision", cache))
    registry.register("retinaface-resnet50", _decided(_lazy("pipelines.models.face_helpers", "load_retinaface"),
                                                      "pipelines.models.face_helpers", "retinaface_precision", cache))
    registry.register("parsenet", _decided(_lazy("pipelines.models.face_helpers", "load_parsenet"),
                                           "pipelines.models.face_helpers", "parsenet_precision", cache))
    registry.register("ddcolor", _lazy("pipelines.models.ddcolor", "load_ddcolor"))
    registry.register("damage-unet", _lazy("pipelines.damage_detection", "load_detector"))
    registry.register("lama-torchscript", _lazy("pipelines.models.lama", "load_lama"))
    # rembg sessions keep their bf16-or-ONNX-Runtime decision in the cache themselves.
    registry.register("rembg", _lazy("pipelines.models.rembg_sessions", "load_session", cache))
    return registry


def load_model(loader: str, path: Path, device: str) -> Any:
    return build_loader_registry().get(loader)(Path(path), device)


def use_torch_threads(threads: int | None) -> None:
    """Size torch's intra-op pool to the cores this worker was given (None: leave it alone)."""
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != max(1, int(threads)):
        torch.set_num_threads(max(1, int(threads)))


class PackagedModels:
    """A ModelProvider of the models that ship in the package, each loaded once on ``device``.

    ``threads`` sizes torch's pool before the first load (the worker's share of the cores).
    """

    def __init__(self, device: str = "cpu", threads: int | None = None):
        self.device, self.threads = device, threads
        self.loaders = build_loader_registry()
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str) -> Any:
        from pipelines.base import ModelUnavailable

        if model_id not in PACKAGED:
            raise ModelUnavailable(f"The model '{model_id}' comes with a bundle, and none is available here.",
                                   details={"model": model_id})
        with self._lock:
            if model_id not in self._loaded:
                use_torch_threads(self.threads)
                loader, file = PACKAGED[model_id]
                self._loaded[model_id] = self.loaders.get(loader)(PACKAGED_DIR / file, self.device)
                log.info("loaded the packaged %s", model_id)
            return self._loaded[model_id]
