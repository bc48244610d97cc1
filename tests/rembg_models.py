"""rembg's models at their real shapes with random weights, written as ONNX files like rembg's own.

The architectures are U^2-Net (u2net, u2netp; Qin et al. 2020, github.com/xuebinqin/U-2-Net) and
IS-Net (isnet-general-use; github.com/xuebinqin/DIS), written here from their papers' block
structure: residual U-blocks (RSU-L) of conv-BN-ReLU layers, max-pooled with ceil_mode and
re-joined by bilinear upsampling to the skip's size. Parameter counts match the official
checkpoints (u2net 44.0 M, u2netp 1.13 M, isnet 44.0 M).

Random weights alone give a network whose activations vanish or explode with depth, so the
batch-norm statistics are calibrated by one forward pass in training mode over a real photo
before export: each layer then sees inputs of unit scale, as in a trained network. The export is
the legacy TorchScript one at opset 11, which folds batch norm into the convolutions, as the
files rembg downloads do.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# rembg's input sizes per session (rembg/sessions/*.py: the size given to normalize()).
INPUT_SIDE = {"u2net": 320, "u2netp": 320, "isnet-general-use": 1024}


class ConvBnRelu(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation)
        self.bn = nn.BatchNorm2d(out_ch, momentum=None)  # momentum None: calibration is a plain mean
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def upsample_like(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.interpolate(source, size=target.shape[2:], mode="bilinear", align_corners=False)


class RSU(nn.Module):
    """Residual U-block of ``height`` levels: pooled encoder, dilated bottom, upsampling decoder."""

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_in = ConvBnRelu(in_ch, out_ch)
        self.encoder = nn.ModuleList([ConvBnRelu(out_ch, mid_ch)] +
                                     [ConvBnRelu(mid_ch, mid_ch) for _ in range(height - 2)])
        self.bottom = ConvBnRelu(mid_ch, mid_ch, dilation=2)
        self.decoder = nn.ModuleList([ConvBnRelu(mid_ch * 2, mid_ch) for _ in range(height - 2)] +
                                     [ConvBnRelu(mid_ch * 2, out_ch)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.conv_in(x)
        skips, hx = [], x_in
        for index, layer in enumerate(self.encoder):
            if index:
                hx = F.max_pool2d(hx, 2, stride=2, ceil_mode=True)
            hx = layer(hx)
            skips.append(hx)
        hx = self.bottom(hx)
        for index, layer in enumerate(self.decoder):
            skip = skips[-1 - index]
            if index:
                hx = upsample_like(hx, skip)
            hx = layer(torch.cat((hx, skip), 1))
        return hx + x_in


class RSUDilated(nn.Module):
    """RSU-4F: the same U shape with dilation 1, 2, 4, 8 instead of pooling (the coarsest stages)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_in = ConvBnRelu(in_ch, out_ch)
        self.encoder = nn.ModuleList([ConvBnRelu(out_ch, mid_ch), ConvBnRelu(mid_ch, mid_ch, 2),
                                      ConvBnRelu(mid_ch, mid_ch, 4)])
        self.bottom = ConvBnRelu(mid_ch, mid_ch, dilation=8)
        self.decoder = nn.ModuleList([ConvBnRelu(mid_ch * 2, mid_ch, 4), ConvBnRelu(mid_ch * 2, mid_ch, 2),
                                      ConvBnRelu(mid_ch * 2, out_ch)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.conv_in(x)
        skips, hx = [], x_in
        for layer in self.encoder:
            hx = layer(hx)
            skips.append(hx)
        hx = self.bottom(hx)
        for index, layer in enumerate(self.decoder):
            hx = layer(torch.cat((hx, skips[-1 - index]), 1))
        return hx + x_in


def block(height: int, in_ch: int, mid_ch: int, out_ch: int) -> nn.Module:
    return RSUDilated(in_ch, mid_ch, out_ch) if height == 0 else RSU(height, in_ch, mid_ch, out_ch)


# (height, in, mid, out) per stage; height 0 is RSU-4F.
U2NET_ENCODER = [(7, 3, 32, 64), (6, 64, 32, 128), (5, 128, 64, 256), (4, 256, 128, 512), (0, 512, 256, 512),
                 (0, 512, 256, 512)]
U2NET_DECODER = [(0, 1024, 256, 512), (4, 1024, 128, 256), (5, 512, 64, 128), (6, 256, 32, 64), (7, 128, 16, 64)]
U2NETP_ENCODER = [(7, 3, 16, 64), (6, 64, 16, 64), (5, 64, 16, 64), (4, 64, 16, 64), (0, 64, 16, 64), (0, 64, 16, 64)]
U2NETP_DECODER = [(0, 128, 16, 64), (4, 128, 16, 64), (5, 128, 16, 64), (6, 128, 16, 64), (7, 128, 16, 64)]
ISNET_ENCODER = [(7, 64, 32, 64)] + U2NET_ENCODER[1:]


class U2Shape(nn.Module):
    """U^2-Net (``fuse=True``: its six side outputs fused by a 1x1 conv, output 0) or IS-Net (a
    stride-2 stem conv first, no fusion: output 0 is the finest side output)."""

    def __init__(self, encoder: list, decoder: list, stem: bool, fuse: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, stride=2, padding=1) if stem else None
        self.encoder = nn.ModuleList([block(*spec) for spec in encoder])
        self.decoder = nn.ModuleList([block(*spec) for spec in decoder])
        side_channels = [spec[3] for spec in reversed(decoder)] + [encoder[-1][3]]
        self.sides = nn.ModuleList([nn.Conv2d(ch, 1, 3, padding=1) for ch in side_channels])
        self.fuse = nn.Conv2d(len(self.sides), 1, 1) if fuse else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hx = self.stem(x) if self.stem is not None else x
        skips = []
        for index, stage in enumerate(self.encoder):
            if index:
                hx = F.max_pool2d(hx, 2, stride=2, ceil_mode=True)
            hx = stage(hx)
            skips.append(hx)
        features = [hx]
        for index, stage in enumerate(self.decoder):
            skip = skips[-2 - index]
            hx = stage(torch.cat((upsample_like(hx, skip), skip), 1))
            features.insert(0, hx)
        sides = [upsample_like(side(feature), x) for side, feature in zip(self.sides, features)]
        if self.fuse is not None:
            sides.insert(0, self.fuse(torch.cat(sides, 1)))
        return tuple(torch.sigmoid(side) for side in sides)


def build(session_name: str) -> nn.Module:
    if session_name == "u2net":
        return U2Shape(U2NET_ENCODER, U2NET_DECODER, stem=False, fuse=True)
    if session_name == "u2netp":
        return U2Shape(U2NETP_ENCODER, U2NETP_DECODER, stem=False, fuse=True)
    if session_name == "isnet-general-use":
        return U2Shape(ISNET_ENCODER, U2NET_DECODER, stem=True, fuse=False)
    raise ValueError(f"no architecture for {session_name}")


def calibration_batch(side: int) -> torch.Tensor:
    """scikit-image's astronaut at ``side``, normalised as rembg's u2net session does."""
    from skimage import data, transform

    photo = transform.resize(data.astronaut(), (side, side), anti_aliasing=True).astype(np.float32)
    photo = (photo - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return torch.from_numpy(photo.transpose(2, 0, 1)[None].copy())


def random_model(session_name: str, seed: int = 0, calibration_side: int = 256) -> nn.Module:
    """The architecture with seeded random weights and batch norm calibrated on a real photo."""
    torch.manual_seed(seed)
    model = build(session_name)
    model.train()
    with torch.no_grad():
        model(calibration_batch(calibration_side))
    return model.eval()


def write_rembg_onnx(path: Path, session_name: str, seed: int = 0) -> Path:
    """``path`` (conventionally ``<session_name>.onnx``) with the model at rembg's input size."""
    return export_onnx(random_model(session_name, seed), path, INPUT_SIDE[session_name])


def export_onnx(model: nn.Module, path: Path, side: int, **options: object) -> Path:
    """``model`` (in eval mode) as an ONNX file for a (1, 3, side, side) input named ``input.1``, as
    rembg's files were written: torch's legacy exporter, opset 11. ``options`` go to the exporter."""
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(model.eval(), torch.zeros(1, 3, side, side), buffer, opset_version=11, dynamo=False,
                          input_names=["input.1"], **options)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path
