"""Make torchvision 0.28.0 importable on a CPU-only torch 2.13.0.

The torchvision 0.28.0 wheel is a CUDA build. On a CPU torch its ``_C`` extension does not load,
and ``import torchvision`` then dies with "operator torchvision::nms does not exist" because its
fake-tensor registrations expect the op. Everything built on it (basicsr, facexlib, gfpgan, timm)
fails with it.

:func:`ensure_torchvision` must run before the first ``import torchvision``. When the real
extension loads (GPU machines with a matching torch) it does nothing. Otherwise it registers
``torchvision::nms`` and ``torchvision::qnms`` as CPU operators written in plain torch, lets
``torchvision.ops.nms`` pass its "ops loaded" check, and provides the
``torchvision.transforms.functional_tensor`` module that basicsr 1.4.2 still imports.
Everything else keeps torchvision's own behaviour: ``roi_align`` uses its Python fallback because
``_has_ops()`` stays False; ``deform_conv2d`` stays unavailable.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import sys
import threading

_lock = threading.Lock()
_state: dict[str, object] = {}


def ensure_torchvision() -> str:
    """Idempotent. Returns "native" when torchvision's extension loads, "compat" otherwise."""
    with _lock:
        if "mode" not in _state:
            _state["mode"] = _install()
        return str(_state["mode"])


def _install() -> str:
    import torch

    if "torchvision" in sys.modules:
        # Already imported successfully (it would have raised otherwise): the extension loaded.
        return "native"
    if _native_extension_loads(torch):
        return "native"
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.impl("nms", _nms, "CPU")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.impl("qnms", _nms, "CPU")
    _state["library"] = library  # the registration lives as long as this object

    import torchvision.ops.boxes as boxes
    import torchvision.transforms.functional as functional

    # nms is available now; the check only asks whether the C++ extension loaded.
    boxes._assert_has_ops = lambda: None
    sys.modules.setdefault("torchvision.transforms.functional_tensor", functional)
    return "compat"


def _native_extension_loads(torch) -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torchvision is not installed")
    candidates = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))
    candidates += glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.pyd"))
    for path in candidates:
        try:
            torch.ops.load_library(path)
            return True
        except (OSError, ImportError, RuntimeError):
            continue
    return False


def _nms(dets, scores, iou_threshold: float):
    """Greedy non-maximum suppression, the same contract as torchvision's C++ kernel."""
    import torch

    if dets.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=dets.device)
    dets = dets.float()
    x1, y1, x2, y2 = dets.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = scores.float().argsort(descending=True)
    keep = []
    while order.numel() > 0:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = (torch.minimum(x2[best], x2[rest]) - torch.maximum(x1[best], x1[rest])).clamp(min=0)
        height = (torch.minimum(y2[best], y2[rest]) - torch.maximum(y1[best], y1[rest])).clamp(min=0)
        inter = width * height
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]  # as torchvision: a NaN IoU (zero areas) suppresses nothing
    return torch.stack(keep)
