"""A tiny ONNX model in rembg's input/output format, for tests and benchmarks.

The few protobuf messages are written by hand (this file predates the `onnx` dependency and needs
neither it nor torch's exporter): field numbers from the ONNX project's onnx/onnx.proto
(github.com/onnx/onnx).
"""
from __future__ import annotations

import struct
from pathlib import Path

_FLOAT = 1  # TensorProto.DataType.FLOAT
_OPSET = 13
_IR_VERSION = 7


def write_tiny_onnx(path: Path, scale: float = 8.0) -> Path:
    """Write a model with input ``input`` (N,3,H,W) and output ``mask`` (N,1,H,W), H/W dynamic.

    ``mask = sigmoid(scale * (channel 0 - channel 2))`` of the normalised input: red reads as
    foreground, blue as background, so tests can predict the mask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiny_onnx_bytes(scale))
    return path


def tiny_onnx_bytes(scale: float) -> bytes:
    weight = _tensor("weight", (1, 3, 1, 1), (scale, 0.0, -scale))
    graph = b"".join([
        _field(1, _node("Conv", ["input", "weight"], ["difference"])),
        _field(1, _node("Sigmoid", ["difference"], ["mask"])),
        _field(2, "tiny_rembg"),
        _field(5, weight),
        _field(11, _value_info("input", ("N", 3, "H", "W"))),
        _field(12, _value_info("mask", ("N", 1, "H", "W"))),
    ])
    opset = _field(2, _OPSET)
    return b"".join([_field(1, _IR_VERSION), _field(2, "restora-tests"), _field(7, graph), _field(8, opset)])


def _node(op_type: str, inputs: list[str], outputs: list[str]) -> bytes:
    fields = [_field(1, name) for name in inputs] + [_field(2, name) for name in outputs]
    return b"".join(fields + [_field(3, f"{op_type.lower()}_0"), _field(4, op_type)])


def _tensor(name: str, dims: tuple[int, ...], values: tuple[float, ...]) -> bytes:
    raw = struct.pack(f"<{len(values)}f", *values)
    return b"".join([*(_field(1, dim) for dim in dims), _field(2, _FLOAT), _field(8, name), _field(9, raw)])


def _value_info(name: str, shape: tuple[int | str, ...]) -> bytes:
    # A str dimension is symbolic (dim_param, field 2), an int is fixed (dim_value, field 1).
    dims = b"".join(_field(1, _field(2 if isinstance(d, str) else 1, d)) for d in shape)
    tensor_type = _field(1, _FLOAT) + _field(2, dims)
    return _field(1, name) + _field(2, _field(1, tensor_type))


def _field(number: int, value: int | str | bytes) -> bytes:
    """One protobuf field: ints as varints (wire type 0), str/bytes length-delimited (wire type 2)."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
