"""Real-ESRGAN's RRDBNet (x4plus, x2plus): build, load an official checkpoint, upscale one tile.

Loading and inference are separate so a worker loads a model once and keeps it warm. The
inference path reproduces RealESRGANer for a single tile: reflect pre-padding on the bottom and
right, reflect "mod" padding so x2's pixel-unshuffle sees even sizes, crop, clamp to [0, 1].
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.torchvision_compat import ensure_torchvision

# Both official RRDBNet checkpoints (x4plus, x2plus) share these; only the scale differs.
RRDBNET_SETTINGS = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}
SUPPORTED_SCALES = (2, 4)
# RRDBNet x2 pixel-unshuffles by 2, so its input sides must be even (RealESRGANer's mod_scale).
MOD_SCALE = {2: 2, 4: 1}


def build_rrdbnet(scale: int, *, device: str | torch.device = "cpu") -> torch.nn.Module:
    """An untrained RRDBNet with the official x4plus (scale 4) or x2plus (scale 2) layout.

    For scale 2 basicsr multiplies ``num_in_ch`` by 4 itself (pixel-unshuffle), so 3 stays right.
    ``device="meta"`` builds it without memory or random initialisation, for loading weights into.
    """
    if scale not in SUPPORTED_SCALES:
        raise ValueError(f"RRDBNet scale must be one of {SUPPORTED_SCALES}, got {scale}")
    ensure_torchvision()  # basicsr imports torchvision, which needs the CPU shim first
    from basicsr.archs.rrdbnet_arch import RRDBNet

    with torch.device(device):
        return RRDBNet(scale=scale, **RRDBNET_SETTINGS)


def load_rrdbnet(path: str | os.PathLike[str], scale: int, device: str = "cpu") -> torch.nn.Module:
    """Load an official-format checkpoint strictly, in eval mode, fp32, on ``device``."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    # Built on "meta", then given uninitialised memory: basicsr's random initialisation of 16.7 M
    # weights that are overwritten at once costs seconds per load (docs/NOTES.md). load_state_dict
    # then copies (and casts to the fp32 parameters), so every weight is overwritten or it raises.
    model = build_rrdbnet(scale, device="meta").to_empty(device="cpu")
    model.load_state_dict(select_state_dict(checkpoint), strict=True)
    model.eval()
    model.requires_grad_(False)
    return model.to(device)


def select_state_dict(checkpoint: Any) -> Mapping[str, torch.Tensor]:
    """The weights inside a checkpoint: ``params_ema`` (what Real-ESRGAN ships), ``params``, or bare."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"checkpoint is a {type(checkpoint).__name__}, expected a mapping")
    for key in ("params_ema", "params"):
        if key in checkpoint:
            return checkpoint[key]
    if checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        return checkpoint
    raise ValueError(f"checkpoint has neither 'params_ema' nor 'params' (keys: {sorted(checkpoint)[:5]})")


def upscale_array(model: torch.nn.Module, rgb: np.ndarray, scale: int, pre_pad: int = 10) -> np.ndarray:
    """Upscale float32 HxWx3 RGB in [0, 1] to (H*scale)x(W*scale)x3, in fp32, as one tile."""
    height, width = _check_rgb(rgb)
    if scale not in SUPPORTED_SCALES or pre_pad < 0:
        raise ValueError(f"scale must be one of {SUPPORTED_SCALES} and pre_pad >= 0 (got {scale}, {pre_pad})")
    device = next(model.parameters()).device
    with torch.inference_mode():
        image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).unsqueeze(0)
        padded = _pad_like_realesrganer(image.to(device, torch.float32), scale, pre_pad)
        output = model(padded)
        # All padding sits on the bottom and right, so cropping to the scaled size removes it.
        output = output[:, :, : height * scale, : width * scale].clamp_(0.0, 1.0)
        return output.squeeze(0).permute(1, 2, 0).contiguous().cpu().numpy()


def _check_rgb(rgb: np.ndarray) -> tuple[int, int]:
    if rgb.dtype != np.float32 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected float32 HxWx3 RGB, got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    if height < 2 or width < 2:
        # Reflect padding needs at least two pixels along each side.
        raise ValueError(f"image is too small to upscale: {width}x{height}")
    return height, width


def _pad_like_realesrganer(image: torch.Tensor, scale: int, pre_pad: int) -> torch.Tensor:
    """Reflect pre-pad, then reflect-pad to a multiple of the model's mod scale (bottom/right)."""
    height, width = image.shape[-2:]
    # RealESRGANer would fail on images no larger than the pad; reflect cannot exceed side - 1.
    pad_h, pad_w = min(pre_pad, height - 1), min(pre_pad, width - 1)
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), mode="reflect")
    mod = MOD_SCALE[scale]
    mod_pad_h, mod_pad_w = -image.shape[-2] % mod, -image.shape[-1] % mod
    if mod_pad_h or mod_pad_w:
        image = F.pad(image, (0, mod_pad_w, 0, mod_pad_h), mode="reflect")
    return image
