"""An ONNX graph run by torch, for rembg's convolutional models in bf16 with channels_last.

ONNX Runtime runs these models in fp32 on the CPU; the same graphs in bf16 on AMX ran 1.9x
(u2netp) to 3.2x (isnet at 1024 px) faster per forward (docs/NOTES.md, "rembg"). This module
reads the ONNX file and evaluates its nodes in order with torch operators: a small interpreter,
not a code generator, so what runs is visibly the file's own graph. Convolution weights are cast
once, at load, to the run's dtype and memory format; batch norm that follows a convolution is
folded into it.

Only the operators rembg's U^2-Net and IS-Net files use (and their close relatives) are known; a
graph with any other operator raises :class:`UnsupportedGraph` at load, and the caller keeps ONNX
Runtime. The session object answers the part of ``onnxruntime.InferenceSession``'s interface that
rembg's sessions call (``get_inputs``, ``get_outputs``, ``run``, ``get_providers``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pipelines.registry import Registry


# Part of each stored bf16 decision's key: a changed interpreter measures again.
INTERPRETER_VERSION = 2


class UnsupportedGraph(ValueError):
    """The ONNX graph uses something this interpreter does not implement."""


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Port:
    """What ``get_inputs()``/``get_outputs()`` return in ONNX Runtime: a name and a shape."""
    name: str
    shape: list[int | str]
    type: str = "tensor(float)"


Operator = Callable[["Runner", Node, list[Any]], list[Any]]
OPERATORS: Registry[Operator] = Registry("ONNX operator")


def operator(*names: str) -> Callable[[Operator], Operator]:
    def register(function: Operator) -> Operator:
        for name in names:
            OPERATORS.register(name, function)
        return function
    return register


class TorchOnnxSession:
    """The graph of ``path`` on ``device`` in ``dtype`` (torch.bfloat16 or torch.float32)."""

    def __init__(self, path: Path, device: str = "cpu", dtype: Any = None, channels_last: bool = True):
        import torch

        self.device = torch.device(device)
        self.dtype = dtype or torch.bfloat16
        self.channels_last = channels_last
        graph = _read_graph(Path(path))
        self.nodes = [Node(n.op_type, tuple(n.input), tuple(n.output), _attributes(n)) for n in graph.node]
        missing = sorted({node.op for node in self.nodes} - set(OPERATORS))
        if missing:
            raise UnsupportedGraph(f"operators not supported: {', '.join(missing)}")
        initializers = {t.name: _tensor(t) for t in graph.initializer}
        self.inputs = [_port(v) for v in graph.input if v.name not in initializers]
        self.outputs = [_port(v) for v in graph.output]
        self.constants = self._prepare(initializers)

    def _prepare(self, initializers: dict[str, np.ndarray]) -> dict[str, Any]:
        """Initializers as tensors; convolution weights (batch norm folded) in the run's dtype and layout."""
        import torch

        constants = {name: torch.from_numpy(array.copy()).to(self.device) for name, array in initializers.items()}
        outputs = {port.name for port in self.outputs}
        self.nodes = fold_batch_norms(self.nodes, constants, outputs)
        for name in {name for node in self.nodes if node.op == "Conv" for name in node.inputs[1:3] if name}:
            if name not in constants:
                raise UnsupportedGraph(f"a Conv whose weights are computed in the graph ({name})")
            constants[name] = self._weight(constants[name])  # once, even where convolutions share it
        read = {name for node in self.nodes for name in node.inputs}
        constants = {name: value for name, value in constants.items() if name in read or name in outputs}
        self.released_after = last_uses(self.nodes, keep=set(constants) | outputs)
        return constants

    def _weight(self, tensor: Any) -> Any:
        import torch

        tensor = tensor.to(self.dtype)
        if tensor.dim() == 4 and self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def get_inputs(self) -> list[Port]:
        return list(self.inputs)

    def get_outputs(self) -> list[Port]:
        return list(self.outputs)

    def get_providers(self) -> list[str]:
        return [f"torch-{str(self.dtype).removeprefix('torch.')}-{self.device.type}"]

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        wanted = list(output_names) if output_names else [port.name for port in self.outputs]
        with torch.inference_mode():
            values = Runner(self).evaluate(feeds)
            return [values[name].float().cpu().numpy() for name in wanted]


class Runner:
    """One evaluation: the values by name, filled node by node (ONNX stores nodes in topological order)."""

    def __init__(self, session: TorchOnnxSession):
        self.session = session
        self.values: dict[str, Any] = dict(session.constants)

    def evaluate(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        for name, array in feeds.items():
            tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.session.device, self.session.dtype)
            if tensor.dim() == 4 and self.session.channels_last:
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            self.values[name] = tensor
        for node, released in zip(self.session.nodes, self.session.released_after):
            for name, value in zip(node.outputs, self._apply(node)):
                self.values[name] = value
            for name in released:  # freed as soon as read for the last time, as ONNX Runtime plans it
                self.values.pop(name, None)
        return self.values

    def _apply(self, node: Node) -> list[Any]:
        """The node's outputs; torch refusing what the graph asks is UnsupportedGraph, not a crash."""
        try:
            results = OPERATORS.get(node.op)(self, node, [self.values[name] if name else None for name in node.inputs])
        except UnsupportedGraph:
            raise
        except (RuntimeError, ValueError, IndexError, KeyError, TypeError) as exc:
            raise UnsupportedGraph(f"{node.op} -> {node.outputs[0]} failed in torch: {exc}") from exc
        if len(results) < len([name for name in node.outputs if name]):
            raise UnsupportedGraph(f"{node.op} with {len(node.outputs)} outputs")
        return results


def last_uses(nodes: list[Node], keep: set[str]) -> list[tuple[str, ...]]:
    """For each node, the values it is the last reader of (never ``keep``): what can be freed after it.

    Without this an evaluation holds every intermediate to the end: gigabytes for IS-Net at 1024 px.
    """
    last_reader: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in (*node.inputs, *node.outputs):  # an output nobody reads is freed where it is made
            if name and name not in keep:
                last_reader[name] = index
    released: list[list[str]] = [[] for _ in nodes]
    for name, index in last_reader.items():
        released[index].append(name)
    return [tuple(names) for names in released]


def fold_batch_norms(nodes: list[Node], constants: dict[str, Any], outputs: set[str]) -> list[Node]:
    """Conv followed by inference-mode BatchNormalization (the conv's only reader, and the conv's
    output not a graph output) becomes one Conv with new weights."""
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    producer = {node.outputs[0]: node for node in nodes if node.op == "Conv"}
    kept: list[Node] = []
    replaced: dict[int, Node] = {}
    for node in nodes:
        conv = producer.get(node.inputs[0]) if node.op == "BatchNormalization" else None
        if (conv is None or readers.get(conv.outputs[0]) != 1 or conv.outputs[0] in outputs
                or node.attributes.get("training_mode", 0) or conv.inputs[1] not in constants
                or not all(n in constants for n in node.inputs[1:5])):
            kept.append(node)
            continue
        replaced[id(conv)] = _folded_conv(conv, node, constants)
        kept.append(replaced[id(conv)])
    return [node for node in kept if id(node) not in replaced]


def _folded_conv(conv: Node, norm: Node, constants: dict[str, Any]) -> Node:
    import torch

    scale, shift, mean, variance = (constants[name].double() for name in norm.inputs[1:5])
    factor = scale / torch.sqrt(variance + norm.attributes.get("epsilon", 1e-5))
    weight = constants[conv.inputs[1]].double()
    bias = constants[conv.inputs[2]].double() if len(conv.inputs) > 2 and conv.inputs[2] else torch.zeros_like(mean)
    weight_name, bias_name = f"{norm.outputs[0]}::weight", f"{norm.outputs[0]}::bias"
    constants[weight_name] = (weight * factor.reshape(-1, 1, 1, 1)).float()
    constants[bias_name] = ((bias - mean) * factor + shift).float()
    return Node("Conv", (conv.inputs[0], weight_name, bias_name), norm.outputs, conv.attributes)


def _read_graph(path: Path) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError) as exc:
        raise UnsupportedGraph(f"{path.name} is not a readable ONNX file ({exc})") from exc
    return model.graph


def _tensor(proto: Any) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(proto)


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    values = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        values[attribute.name] = _tensor(value) if hasattr(value, "data_type") else value
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def _port(value_info: Any) -> Port:
    dims = value_info.type.tensor_type.shape.dim
    return Port(value_info.name, [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims])


# The operators live in their own module; importing it fills OPERATORS.
from pipelines.models import onnx_torch_ops  # noqa: E402,F401
