"""Model files with random weights in the official formats, for tests and benchmarks.

Each writer builds the real architecture (the one the production loader builds), seeds it, and
saves it in the layout the official checkpoint uses, so the loaders under test read it exactly as
they read the real file. Nothing here downloads. The tiny ONNX model in rembg's format is in
tests/tiny_onnx.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def rrdbnet_checkpoint(path: Path, scale: int = 4, seed: int = 0) -> Path:
    """Real-ESRGAN RRDBNet weights, official layout ``{'params_ema': state_dict}``, random values."""
    from pipelines.models.rrdbnet import build_rrdbnet
    import torch

    torch.manual_seed(seed)
    model = build_rrdbnet(scale)
    torch.save({"params_ema": model.state_dict()}, path)
    return path


def srvgg_checkpoint(path: Path, seed: int = 0) -> Path:
    """realesr-general-x4v3 layout: SRVGGNetCompact(64 feat, 32 convs, x4, prelu) under 'params'."""
    from pipelines.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    import torch
    from basicsr.archs.srvgg_arch import SRVGGNetCompact

    torch.manual_seed(seed)
    model = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu")
    torch.save({"params": model.state_dict()}, path)
    return path


def lama_torchscript(path: Path, seed: int = 0) -> Path:
    """A TorchScript file in big-lama.pt's interface (IOPaint's LaMa): ``forward(image, mask)``,
    image (1, 3, H, W) RGB in [0, 1], mask (1, 1, H, W) of 0/1, out (1, 3, H, W) in [0, 1]; 126
    random weights. Like the real network it fails unless H and W are multiples of 8."""
    import torch
    import torch.nn.functional as F

    class TinyLama(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.local = torch.nn.Conv2d(4, 3, 3, padding=1)
            self.coarse = torch.nn.Conv2d(4, 3, 1)

        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = torch.cat([image * (1 - mask), mask], dim=1)
            # Down 8x and back, as LaMa's encoder and decoder do: other sizes do not add up.
            coarse = F.interpolate(F.avg_pool2d(x, 8), scale_factor=8.0, mode="nearest")
            return torch.sigmoid(self.local(x) + self.coarse(coarse))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = TinyLama().eval()
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def save_random_gfpgan(path: Path, seed: int = 0) -> Path:
    """A GFPGAN v1.4 checkpoint in the official layout (``{'params_ema': state_dict}``), random weights."""
    import torch

    from pipelines.models.gfpgan import build_gfpgan

    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        model = build_gfpgan()
    torch.save({"params_ema": model.state_dict()}, Path(path))
    return Path(path)


def save_random_retinaface(path: Path, seed: int = 0, finds_no_faces: bool = True) -> Path:
    """A detector checkpoint in the official layout (``module.``-prefixed keys), random weights.

    With random weights RetinaFace scores thousands of anchors as faces; ``finds_no_faces``
    (the default) sets the classification head to answer "background" everywhere instead.
    """
    import torch

    from pipelines.models.face_helpers import build_retinaface

    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        model = build_retinaface()
    if finds_no_faces:
        silence_classification_head(model)
    torch.save({f"module.{key}": value for key, value in model.state_dict().items()}, Path(path))
    return Path(path)


def silence_classification_head(model: "torch.nn.Module") -> None:
    """Make every anchor's (background, face) logits (+8, -8): a face probability of 1e-7."""
    import torch

    with torch.no_grad():
        for head in model.ClassHead:
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.copy_(torch.tensor([8.0, -8.0]).repeat(head.conv1x1.bias.numel() // 2))


def save_random_parsenet(path: Path, seed: int = 0) -> Path:
    """A parser checkpoint in the official layout (a bare state dict), random weights."""
    import torch

    from pipelines.models.face_helpers import build_parsenet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_parsenet()
    torch.save(model.state_dict(), Path(path))
    return Path(path)


def write_random_ddcolor(directory: Path, encoder_name: str = "convnext-t", seed: int = 0) -> Path:
    """DDColor's official files (``pytorch_model.pt`` as ``{'params': state_dict}`` and
    ``configuration.json``) with random weights; returns the weights file's path."""
    import torch

    from pipelines.models.ddcolor import CONFIG_FILE, WEIGHTS_FILE

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    network = random_ddcolor_network(encoder_name, seed)
    weights_path = directory / WEIGHTS_FILE
    torch.save({"params": network.state_dict()}, weights_path)
    (directory / CONFIG_FILE).write_text(json.dumps(official_style_config(encoder_name), indent=2), encoding="utf-8")
    return weights_path


def official_style_config(encoder_name: str) -> dict[str, Any]:
    """A configuration.json shaped like modelscope's: task, pipeline and model type, plus the encoder."""
    return {
        "framework": "pytorch",
        "task": "image-colorization",
        "pipeline": {"type": "ddcolor-image-colorization"},
        "model": {"type": "ddcolor", "encoder_name": encoder_name},
    }


# The constructor runs the encoder once at its input size only to find layer widths; the
# parameters do not depend on it, so a small probe saves seconds.
RANDOM_PROBE_SIDE = 128
# A fresh DDColor predicts (a, b) of about 1e13 (its spectral norms were never estimated) or, once
# they are, about 0.1; tests need colour of a photo's spread, a few tens of Lab units.
RANDOM_AB_SPREAD = 25.0
SPECTRAL_POWER_ITERATIONS = 10


def random_ddcolor_network(encoder_name: str, seed: int) -> "torch.nn.Module":
    """modelscope's DDColor network, randomly initialised, predicting (a, b) of a photo-like spread."""
    import torch

    from pipelines.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from modelscope.models.cv.image_colorization.ddcolor.ddcolor import DDColor

    torch.manual_seed(seed)
    network = DDColor(encoder_name, (RANDOM_PROBE_SIDE, RANDOM_PROBE_SIDE)).eval()
    with torch.no_grad():
        _estimate_spectral_norms(network)
        _scale_colour_head(network, RANDOM_AB_SPREAD)
    return network


def _estimate_spectral_norms(network: "torch.nn.Module") -> None:
    """Run the power iterations training would have run, so each normalised weight has norm ~1."""
    from torch.nn.utils.spectral_norm import SpectralNorm

    for module in network.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, SpectralNorm):
                iterations_per_call = hook.n_power_iterations
                hook.n_power_iterations = SPECTRAL_POWER_ITERATIONS  # one call, many iterations
                hook.compute_weight(module, do_power_iteration=True)
                hook.n_power_iterations = iterations_per_call


def _scale_colour_head(network: "torch.nn.Module", target_spread: float) -> None:
    """Scale the colour queries' last linear layer; (a, b) is linear in it (einsum, 1x1 conv)."""
    import torch

    from pipelines.models.ddcolor import grey_from_lightness, lightness_of
    from pipelines.precision import calibration_image

    card = grey_from_lightness(lightness_of(calibration_image(RANDOM_PROBE_SIDE)))
    spread = float(network(torch.from_numpy(card.transpose(2, 0, 1)).unsqueeze(0)).std())
    head = network.decoder.color_decoder.color_embed.layers[-1]
    head.weight.mul_(target_spread / spread)
    head.bias.mul_(target_spread / spread)
