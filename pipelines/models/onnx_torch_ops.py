"""The ONNX operators :mod:`pipelines.models.onnx_torch` knows, each as torch code.

Semantics follow the ONNX operator specification (onnx.ai/onnx/operators); an attribute or case
not implemented raises UnsupportedGraph rather than computing something else. Floating activations
keep the run's dtype (bf16): a ``Cast`` to a float type leaves them alone, and a convolution casts
its input to its weights' dtype, so an fp32 constant mixed in (which promotes an Add or a Mul to
fp32) goes no further than the next convolution. Integer tensors (the shape arithmetic around
``Resize``) stay int64 on the CPU.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.models.onnx_torch import Node, Runner, UnsupportedGraph, operator

_INT64_MAX = np.iinfo(np.int64).max
_ONNX_FLOAT_TYPES = {1, 10, 11, 16}  # float, float16, double, bfloat16
_ONNX_INT_TYPES = {6: torch.int32, 7: torch.int64, 9: torch.bool}


def _symmetric_padding(node: Node, spatial: int) -> tuple[int, ...]:
    if node.attributes.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise UnsupportedGraph(f"{node.op} with auto_pad {node.attributes['auto_pad']}")
    pads = list(node.attributes.get("pads", [0] * 2 * spatial))
    if pads[:spatial] != pads[spatial:]:
        raise UnsupportedGraph(f"{node.op} with asymmetric pads {pads}")
    return tuple(pads[:spatial])


@operator("Conv")
def conv(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    x, weight = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    if weight.dim() != 4:
        raise UnsupportedGraph("only 2-D convolutions")
    a = node.attributes
    out = F.conv2d(x.to(weight.dtype), weight, bias, stride=tuple(a.get("strides", (1, 1))),
                   padding=_symmetric_padding(node, 2), dilation=tuple(a.get("dilations", (1, 1))),
                   groups=a.get("group", 1))
    return [out]


@operator("MaxPool", "AveragePool")
def pool(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    a = node.attributes
    kernel = tuple(a["kernel_shape"])
    stride = tuple(a.get("strides", (1,) * len(kernel)))
    padding = _symmetric_padding(node, len(kernel))
    ceil_mode = bool(a.get("ceil_mode", 0))
    if node.op == "MaxPool":
        return [F.max_pool2d(args[0], kernel, stride, padding, tuple(a.get("dilations", (1, 1))), ceil_mode)]
    if any(d != 1 for d in a.get("dilations", ())):
        raise UnsupportedGraph("AveragePool with dilations")
    include_pad = bool(a.get("count_include_pad", 0))
    return [F.avg_pool2d(args[0], kernel, stride, padding, ceil_mode, count_include_pad=include_pad)]


@operator("GlobalAveragePool")
def global_average_pool(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    return [args[0].mean(dim=(2, 3), keepdim=True)]


@operator("Relu")
def relu(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    return [torch.relu(args[0])]


@operator("LeakyRelu")
def leaky_relu(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    return [F.leaky_relu(args[0], node.attributes.get("alpha", 0.01))]


@operator("Sigmoid")
def sigmoid(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    return [torch.sigmoid(args[0])]


@operator("Tanh")
def tanh(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    return [torch.tanh(args[0])]


_BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Pow": torch.pow}


@operator(*_BINARY)
def binary(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    return [_BINARY[node.op](args[0], args[1])]


@operator("Div")
def divide(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    a, b = args
    if not a.is_floating_point() and not b.is_floating_point():
        return [torch.div(a, b, rounding_mode="trunc")]  # ONNX integer division truncates
    return [a / b]


_UNARY = {"Floor": torch.floor, "Ceil": torch.ceil, "Sqrt": torch.sqrt, "Exp": torch.exp, "Neg": torch.neg,
          "Identity": lambda x: x}


@operator(*_UNARY)
def unary(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    return [_UNARY[node.op](args[0])]


@operator("Clip")
def clip(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    low = args[1] if len(args) > 1 and args[1] is not None else node.attributes.get("min")
    high = args[2] if len(args) > 2 and args[2] is not None else node.attributes.get("max")
    return [torch.clamp(args[0], _scalar(low), _scalar(high))]


def _scalar(value: Any) -> Any:
    return None if value is None else float(value)


@operator("Concat")
def concat(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    return [torch.cat([t for t in args if t is not None], dim=node.attributes["axis"])]


@operator("Constant")
def constant(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    a = node.attributes
    if "value" in a:
        return [torch.from_numpy(np.array(a["value"]))]
    for key, dtype in (("value_float", torch.float32), ("value_int", torch.int64),
                       ("value_floats", torch.float32), ("value_ints", torch.int64)):
        if key in a:
            return [torch.tensor(a[key], dtype=dtype)]
    raise UnsupportedGraph(f"Constant with attributes {sorted(a)}")


@operator("ConstantOfShape")
def constant_of_shape(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    fill = torch.from_numpy(np.array(node.attributes.get("value", np.zeros(1, np.float32))))
    return [fill.reshape(-1)[0].expand(*[int(d) for d in args[0]]).clone()]


@operator("Shape")
def shape(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    dims = list(args[0].shape)
    start, end = node.attributes.get("start", 0), node.attributes.get("end", len(dims))
    return [torch.tensor(dims[start:end], dtype=torch.int64)]


@operator("Cast")
def cast(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    target, x = node.attributes["to"], args[0]
    if target in _ONNX_FLOAT_TYPES:
        return [x if x.is_floating_point() else x.to(torch.float32)]
    if target in _ONNX_INT_TYPES:
        return [x.to(_ONNX_INT_TYPES[target])]
    raise UnsupportedGraph(f"Cast to ONNX type {target}")


def _axes(node: Node, args: list[Any], position: int) -> list[int]:
    if len(args) > position and args[position] is not None:
        return [int(v) for v in args[position]]
    return list(node.attributes.get("axes", []))


@operator("Slice")
def slice_(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    starts, ends = [int(v) for v in args[1]], [int(v) for v in args[2]]
    axes = _axes(node, args, 3) or list(range(len(starts)))
    steps = [int(v) for v in args[4]] if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step <= 0:
            raise UnsupportedGraph("Slice with a negative step")
        index[axis] = slice(start, None if end >= _INT64_MAX // 2 else end, step)
    return [x[tuple(index)]]


@operator("Gather")
def gather(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    data, indices = args
    axis = node.attributes.get("axis", 0) % data.dim()
    size = data.shape[axis]
    if indices.numel() and not (-size <= int(indices.min()) and int(indices.max()) < size):
        raise UnsupportedGraph("Gather index out of range")
    flat = indices.reshape(-1).long() % size
    picked = data.index_select(axis, flat)
    return [picked.reshape((*data.shape[:axis], *indices.shape, *data.shape[axis + 1:]))]


@operator("Unsqueeze")
def unsqueeze(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    rank = x.dim() + len(_axes(node, args, 1))
    for axis in sorted(a % rank for a in _axes(node, args, 1)):
        x = x.unsqueeze(axis)
    return [x]


@operator("Squeeze")
def squeeze(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    axes = _axes(node, args, 1)
    x = args[0]
    if not axes:
        return [x.squeeze()]
    for axis in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(axis)
    return [x]


@operator("Reshape")
def reshape(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    if node.attributes.get("allowzero", 0):
        raise UnsupportedGraph("Reshape with allowzero")
    x, target = args[0], [int(v) for v in args[1]]
    target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]  # 0 copies the input's dim
    return [x.reshape(target)]


@operator("Transpose")
def transpose(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    perm = node.attributes.get("perm", list(reversed(range(args[0].dim()))))
    return [args[0].permute(*perm)]


@operator("Resize", "Upsample")
def resize(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    mode, align_corners = _resize_mode(node)
    sizes = args[3] if node.op == "Resize" and len(args) > 3 and args[3] is not None else None
    if sizes is not None and sizes.numel():
        if [int(v) for v in sizes[:2]] != list(x.shape[:2]):
            raise UnsupportedGraph(f"{node.op} of the batch or channel axis")
        size = tuple(int(v) for v in sizes[2:])
        _check_pytorch_half_pixel(node, size)
        return [F.interpolate(x, size=size, mode=mode, align_corners=align_corners)]
    scales = args[2] if node.op == "Resize" else (args[1] if len(args) > 1 else node.attributes.get("scales"))
    scales = [float(v) for v in scales]
    if scales[:2] != [1.0, 1.0]:
        raise UnsupportedGraph(f"{node.op} of the batch or channel axis")
    _check_pytorch_half_pixel(node, tuple(int(n * f) for n, f in zip(x.shape[2:], scales[2:])))
    return [F.interpolate(x, scale_factor=tuple(scales[2:]), mode=mode, align_corners=align_corners,
                          recompute_scale_factor=False)]


def _check_pytorch_half_pixel(node: Node, size: tuple[int, ...]) -> None:
    """pytorch_half_pixel maps an output of length 1 to coordinate 0, not to the centre as torch does."""
    if node.attributes.get("coordinate_transformation_mode") == "pytorch_half_pixel" and 1 in size:
        raise UnsupportedGraph(f"{node.op} to length 1 with pytorch_half_pixel")


def _resize_mode(node: Node) -> tuple[str, bool | None]:
    """torch's interpolate mode and align_corners for the node's ONNX attributes."""
    a = node.attributes
    if a.get("antialias", 0) or a.get("axes") or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise UnsupportedGraph(f"{node.op} with antialias, axes or a kept aspect ratio")
    mode = a.get("mode", "nearest")
    default = "asymmetric" if node.op == "Upsample" else "half_pixel"
    coordinates = a.get("coordinate_transformation_mode", default)
    if mode == "linear" and coordinates in ("half_pixel", "pytorch_half_pixel"):
        return "bilinear", False
    if mode == "linear" and coordinates == "align_corners":
        return "bilinear", True
    rounding = a.get("nearest_mode", "floor" if node.op == "Upsample" else "round_prefer_floor")
    if mode == "nearest" and coordinates == "asymmetric" and rounding == "floor":
        return "nearest", None
    raise UnsupportedGraph(f"{node.op} mode {mode} with {coordinates} coordinates")


@operator("BatchNormalization")
def batch_normalization(runner: Runner, node: Node, args: list[Any]) -> list[Any]:
    """Inference-mode batch norm (one that could not be folded into a convolution)."""
    if node.attributes.get("training_mode", 0) or not node.attributes.get("spatial", 1):
        raise UnsupportedGraph("BatchNormalization in training mode or not spatial")
    x, scale, shift, mean, variance = args[:5]
    factor = scale / torch.sqrt(variance + node.attributes.get("epsilon", 1e-5))
    view = (1, -1) + (1,) * (x.dim() - 2)
    return [x * factor.reshape(view).to(x.dtype) + (shift - mean * factor).reshape(view).to(x.dtype)]
