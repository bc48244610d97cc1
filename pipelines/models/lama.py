"""LaMa (big-lama) inpainting: IOPaint's TorchScript export, loaded and run on one crop.

The official interface of ``big-lama.pt`` (as IOPaint's ``LaMa`` model calls it): ``model(image,
mask)`` with image float32 (1, 3, H, W) RGB in [0, 1] and mask float32 (1, 1, H, W) of 0 and 1;
H and W must be multiples of 8 (the network downsamples three times); it returns (1, 3, H, W)
RGB in [0, 1]. Crops are padded by mirroring (IOPaint pads symmetrically, too) and cut back.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

MODEL_ID = "big-lama"
PAD_MULTIPLE = 8


def load_lama(path: Path, device: str) -> "torch.jit.ScriptModule":
    import torch

    return torch.jit.load(str(path), map_location=device).eval()


def padded_side(side: int) -> int:
    return -(-side // PAD_MULTIPLE) * PAD_MULTIPLE


def inpaint_crop(model: Any, rgb: np.ndarray, mask: np.ndarray, device: str) -> np.ndarray:
    """LaMa's fill of float RGB ``rgb`` (HxWx3, [0, 1]) where bool ``mask`` (HxW) is set; HxWx3 out.
    torch's thread pool is the worker's, sized by its model provider."""
    import torch

    height, width = mask.shape
    pad = ((0, padded_side(height) - height), (0, padded_side(width) - width))
    image = np.pad(np.clip(rgb, 0.0, 1.0), pad + ((0, 0),), mode="symmetric")
    holes = np.pad(mask, pad, mode="symmetric").astype(np.float32)
    with torch.no_grad():
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
        mask_t = torch.from_numpy(holes)[None, None].to(device)
        filled = model(image_t, mask_t)[0].float().clamp_(0.0, 1.0).permute(1, 2, 0).cpu().numpy()
    return filled[:height, :width].astype(np.float32, copy=False)
