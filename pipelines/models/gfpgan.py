"""GFPGAN v1.4: load the official checkpoint, restore one aligned 512² face, choose its precision.

GFPGANv1.4.pth is ``{'params_ema': state_dict}`` for ``GFPGANv1Clean`` built with
:data:`GFPGAN_V14_ARGS` (what ``GFPGANer(arch='clean')`` builds). Faces run with the checkpoint's
stored StyleGAN noise (``randomize_noise=False``) rather than fresh noise per call as GFPGANer
does, so the same photo always gives the same result.

Precision: fp16 autocast on CUDA. On CPUs with AMX or AVX512-BF16, bf16 autocast only if, with
the weights actually loaded, its output on :func:`calibration_face` matches fp32 within
:data:`pipelines.precision.BF16_MIN_PSNR_DB` (45 dB, an RMS error of 1.4 levels of 255); fp32
otherwise. The check runs once per worker and device (one bf16 and one fp32 forward), because
offline only random weights could be measured, and those say little about the real ones (the
figures, and why bf16's speed on CPU is still an open question: docs/NOTES.md, "GFPGAN").
On the CPU GFPGAN runs channels_last (bf16: 1.19 s per face against 1.44 s NCHW; fp32 the same,
docs/NOTES.md "GFPGAN"): the loader stores its 2-D convolutions' weights channels_last, and the
encoder's last feature map is made contiguous again, because GFPGAN flattens it with ``.view()``.
(Its StyleGAN convolutions modulate their weights at every call: those stay as they come.)
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines import precision as _shared
from pipelines.precision import Precision, cpu_has_bf16_units, psnr

if TYPE_CHECKING:
    import torch

FACE_SIZE = 512
GFPGAN_V14_ARGS = dict(out_size=FACE_SIZE, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                       fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1,
                       sft_half=True)

FP32_CPU = Precision("fp32", "cpu", channels_last=True)
BF16_CPU = Precision("bf16", "cpu", channels_last=True)

_decisions: dict[str, Precision] = {}  # per device; tests and bench/face_speed.py preset "cpu"


def build_gfpgan(on_meta: bool = False) -> "torch.nn.Module":
    """An untrained GFPGANv1Clean; on the meta device it costs nothing (no 350 MB random init)."""
    import torch

    from pipelines.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

    with torch.device("meta" if on_meta else "cpu"):
        return GFPGANv1Clean(**GFPGAN_V14_ARGS)


def load_gfpgan(path: Path, device: str) -> "torch.nn.Module":
    """GFPGANv1Clean from an official checkpoint, strict, in eval mode without gradients."""
    import torch

    from pipelines.models.rrdbnet import select_state_dict

    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = build_gfpgan(on_meta=True)
    # assign=True swaps the meta tensors for the checkpoint's: strict makes sure none is left over.
    model.load_state_dict(select_state_dict(checkpoint), strict=True, assign=True)
    _require_materialized(model)
    model = model.eval().requires_grad_(False).to(device)
    use_channels_last(model)
    return model


def use_channels_last(model: "torch.nn.Module") -> None:
    """Store the 2-D convolutions' weights channels_last, and hand the encoder's last feature map
    on contiguous: ``GFPGANv1Clean.forward`` flattens it with ``.view()``."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.to(memory_format=torch.channels_last)
    model.final_conv.register_forward_hook(lambda _module, _inputs, output: output.contiguous())
    model.channels_last_ready = True


def _require_materialized(model: "torch.nn.Module") -> None:
    leftovers = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    if leftovers:
        raise ValueError(f"GFPGAN checkpoint left tensors unset: {leftovers[:5]}")


def restore_face(model: "torch.nn.Module", face: np.ndarray, precision: Precision) -> np.ndarray:
    """Restore one aligned face: float32 512x512x3 RGB in [0, 1] in, the same shape out."""
    import torch

    if face.shape != (FACE_SIZE, FACE_SIZE, 3):
        raise ValueError(f"an aligned face is {FACE_SIZE}x{FACE_SIZE}x3, got {face.shape}")
    device = next(model.parameters()).device
    tensor = torch.from_numpy(np.ascontiguousarray(face.transpose(2, 0, 1), dtype=np.float32)).unsqueeze(0)
    tensor = (tensor * 2 - 1).to(device)  # GFPGAN works in [-1, 1]
    if precision.channels_last and getattr(model, "channels_last_ready", False):  # not a hand-built network
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), precision.autocast(device.type):
        output = model(tensor, return_rgb=False, randomize_noise=False)[0]
    output = (output.float().clamp(-1, 1) + 1) / 2
    return output[0].permute(1, 2, 0).cpu().numpy()


def gfpgan_precision(model: "torch.nn.Module", device: str) -> Precision:
    """The precision to run GFPGAN in on ``device``: decided once per device (see module notes)."""
    return _shared.remembered(_decisions, device, lambda: _decide(model, device), f"GFPGAN on {device}")


def _decide(model: "torch.nn.Module", device: str) -> Precision:
    # cpu_has_bf16_units is read from this module at call time, so tests can patch it here.
    return _shared.decide_precision(device, lambda: bf16_agreement_db(model, calibration_face()),
                                    channels_last=True, bf16_allowed=cpu_has_bf16_units, name="GFPGAN")


def precision_for_agreement(psnr_db: float) -> Precision:
    """bf16 when its output matched fp32 closely enough on the calibration face, else fp32."""
    return _shared.precision_for_agreement(psnr_db, channels_last=True, name="GFPGAN")


def bf16_agreement_db(model: "torch.nn.Module", face: np.ndarray) -> float:
    """PSNR of GFPGAN's bf16 output against its fp32 output on one aligned face."""
    bf16 = restore_face(model, face, BF16_CPU)
    fp32 = restore_face(model, face, FP32_CPU)
    return psnr(bf16, fp32)


def calibration_face() -> np.ndarray:
    """A deterministic, softly drawn face on the FFHQ template: skin, hair, eyes, mouth.

    Synthetic so the decision does not depend on which job came first; face-shaped so GFPGAN sees
    the kind of input it was trained on rather than a test card.
    """
    import cv2

    card = np.zeros((FACE_SIZE, FACE_SIZE, 3), np.float32)
    card[:] = np.linspace(0.55, 0.75, FACE_SIZE, dtype=np.float32)[:, None, None]  # backdrop shading
    cv2.ellipse(card, (256, 200), (190, 170), 0, 0, 360, (0.35, 0.25, 0.18), -1)  # hair
    cv2.ellipse(card, (256, 300), (150, 190), 0, 0, 360, (0.86, 0.67, 0.56), -1)  # skin
    for centre in ((193, 240), (319, 240)):  # eyes where the template puts them
        cv2.ellipse(card, centre, (26, 13), 0, 0, 360, (0.95, 0.95, 0.95), -1)
        cv2.circle(card, centre, 10, (0.25, 0.18, 0.12), -1)
    cv2.ellipse(card, (257, 372), (56, 14), 0, 0, 360, (0.62, 0.32, 0.32), -1)  # mouth
    cv2.line(card, (256, 270), (256, 312), (0.74, 0.55, 0.46), 6)  # nose ridge
    return np.clip(cv2.GaussianBlur(card, (0, 0), 2.0), 0.0, 1.0)
