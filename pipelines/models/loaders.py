"""Loaders: read an official checkpoint format from an explicit path into a ready model.

The manifest names a loader for every model file; workers call :func:`load_model` once per model
and keep the result warm. Loaders never download anything and never look at the working directory.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from pipelines.registry import Registry

Loader = Callable[[Path, str], Any]


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


def _lazy(module: str, function: str) -> Loader:
    """A loader whose module (and its heavy imports) is imported only when a model is loaded."""
    def load(path: Path, device: str) -> Any:
        return getattr(importlib.import_module(module), function)(path, device)
    return load


def build_loader_registry() -> Registry[Loader]:
    registry: Registry[Loader] = Registry("loader")
    registry.register("rrdbnet-x4", _rrdbnet(4))
    registry.register("rrdbnet-x2", _rrdbnet(2))
    registry.register("srvgg-x4", _srvgg_x4)
    registry.register("gfpgan-v1-clean", _lazy("pipelines.models.gfpgan", "load_gfpgan"))
    registry.register("retinaface-resnet50", _lazy("pipelines.models.face_helpers", "load_retinaface"))
    registry.register("parsenet", _lazy("pipelines.models.face_helpers", "load_parsenet"))
    registry.register("ddcolor", _lazy("pipelines.models.ddcolor", "load_ddcolor"))
    registry.register("damage-unet", _lazy("pipelines.models.damage_unet", "load_damage_unet"))
    registry.register("lama-torchscript", _lazy("pipelines.models.lama", "load_lama"))
    registry.register("rembg", _lazy("pipelines.models.rembg_sessions", "load_session"))
    return registry


def load_model(loader: str, path: Path, device: str) -> Any:
    return build_loader_registry().get(loader)(Path(path), device)
