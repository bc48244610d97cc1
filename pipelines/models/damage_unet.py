"""The learned damage detector: a small U-Net (about 270k parameters) that maps a photo to the
probability, per pixel, that it is a scratch, crack, dust speck or fold.

Trained in this repository by ``tools/train_damage_detector.py`` on scikit-image's photos with
synthetic damage (``tools/synth_damage.py``); the weights ship in the package
(``pipelines/models/weights/damage-unet.pt`` and the conservative ``damage-unet-conservative.pt``,
plain ``{'params': state_dict, 'meta': {...}}`` checkpoints) and load like any other model, with no download.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

WIDTHS = (16, 24, 40, 64, 64)  # channels per level, full resolution first
PACKAGED_WEIGHTS = Path(__file__).with_name("weights") / "damage-unet.pt"
CONSERVATIVE_WEIGHTS = PACKAGED_WEIGHTS.with_name("damage-unet-conservative.pt")  # those, fine-tuned with structures


def _block(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True),
        nn.Conv2d(outputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True),
    )


class DamageUNet(nn.Module):
    """Input: N x 3 x H x W RGB in 0..1 (H, W multiples of 16). Output: N x 1 x H x W logits."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.down = nn.ModuleList(_block(a, b) for a, b in zip((3,) + widths[:-1], widths))
        # Each up block takes the deeper level's output and the skip of its own level.
        deeper = (widths[-1],) + widths[-2:0:-1]
        self.up = nn.ModuleList(_block(d + s, s) for d, s in zip(deeper, widths[-2::-1]))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = rgb - 0.5
        skips = []
        for index, block in enumerate(self.down):
            x = block(x if index == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


def load_damage_unet(path: Path, device: str) -> Any:
    """The detector from a ``{'params': state_dict}`` checkpoint, in eval mode, on ``device``."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = DamageUNet()
    model.load_state_dict(checkpoint["params"], strict=True)
    model.meta = dict(checkpoint.get("meta") or {})
    return model.eval().requires_grad_(False).to(device)
