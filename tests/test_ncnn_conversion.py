"""The ncnn Real-ESRGAN x4plus weights convert into a PyTorch RRDBNet that computes what ncnn does.

The strongest check is numerical: the converted model and the ncnn runtime (fp32, CPU) run on the
same real photo crop and must agree to float rounding. A wrong layer mapping (two convolutions of
the same shape swapped) still loads with strict=True, so only the numbers can catch it.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from pipelines.models import ncnn_realesrgan
from pipelines.models.ncnn_realesrgan import (
    FP16_TAG,
    convert_to_pth,
    io_blob_names,
    load_ncnn_fp32,
    packaged_x4plus_files,
    parse_param,
    read_convolutions,
    rrdbnet_state_dict,
)
from pipelines.models.rrdbnet import build_rrdbnet, load_rrdbnet, select_state_dict, upscale_array
from pipelines.precision import psnr

# Measured: max abs diff 2.9e-6, PSNR 131.8 dB between ncnn fp32 and the converted model on the
# crop below. The bounds leave ~30x margin for other CPUs and BLAS kernels; a wrong mapping gives
# differences of order 0.1 to 1.
MAX_ABS_DIFF_VS_NCNN = 1e-4
MIN_PSNR_VS_NCNN_DB = 100.0
# Measured 32.0 dB (the 4x output box-downscaled back vs the input). Deliberately broken mappings
# measured 5.9 dB (conv_up1/conv_up2 swapped), 19.9 dB (RRDB blocks reversed) and 3.1 dB
# (rdb1/rdb3 swapped), and differed from ncnn by 0.94 to 1.0.
MIN_ROUND_TRIP_PSNR_DB = 25.0


@pytest.fixture(scope="module")
def x4plus_files() -> tuple[Path, Path]:
    return packaged_x4plus_files()


@pytest.fixture(scope="module")
def converted_checkpoint(x4plus_files, tmp_path_factory) -> Path:
    return convert_to_pth(*x4plus_files, tmp_path_factory.mktemp("converted") / "RealESRGAN_x4plus.pth")


@pytest.fixture(scope="module")
def x4plus_model(converted_checkpoint) -> torch.nn.Module:
    return load_rrdbnet(converted_checkpoint, scale=4)


@pytest.fixture(scope="module")
def photo_crop() -> np.ndarray:
    """32x32 of a real photo (an eye and eyebrow: edges and texture), RGB float32 in [0, 1]."""
    return skimage_data.astronaut()[80:112, 190:222].astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def upscaled_crop(x4plus_model, photo_crop) -> np.ndarray:
    # pre_pad=0: the ncnn graph gets no padding either, so both see exactly the same pixels.
    return upscale_array(x4plus_model, photo_crop, scale=4, pre_pad=0)


def test_packaged_graph_has_351_convolutions(x4plus_files):
    convolutions = read_convolutions(*x4plus_files)
    assert len(convolutions) == 351
    assert all(weights.dtype == np.float32 and bias is not None for weights, bias in convolutions)


def test_graph_contains_only_what_rrdbnet_does(x4plus_files):
    layers = parse_param(x4plus_files[0])
    assert Counter(layer.type for layer in layers) == Counter(
        {"Convolution": 351, "Split": 276, "Concat": 276, "Eltwise": 92, "Interp": 2, "BinaryOp": 1, "Input": 1}
    )
    assert io_blob_names(layers) == ("data", "output")
    for layer in layers:
        if layer.type == "Eltwise":  # sum with coefficients: 0.2 * residual + identity
            assert layer.params == {0: "1", -23301: "2,2.000000e-01,1.000000e+00"}
        elif layer.type == "Interp":  # nearest-neighbour, x2 in both directions
            assert layer.params == {0: "1", 1: "2.000000e+00", 2: "2.000000e+00"}
        elif layer.type == "BinaryOp":  # op_type absent = 0 = add (feat + conv_body(body(feat)))
            assert layer.params == {}
        elif layer.type == "Convolution":  # 3x3, stride 1, dilation 1, padding 1, with bias
            assert {key: layer.params.get(key) for key in (1, 2, 3, 4, 5, 11)} == {
                1: "3", 2: None, 3: None, 4: "1", 5: "1", 11: None
            }


def test_state_dict_loads_strictly_into_rrdbnet(x4plus_files):
    state_dict = rrdbnet_state_dict(*x4plus_files)
    expected = build_rrdbnet(4, device="meta").state_dict()
    assert list(state_dict) == list(expected)
    assert {key: tuple(value.shape) for key, value in state_dict.items()} == {
        key: tuple(value.shape) for key, value in expected.items()
    }
    model = build_rrdbnet(4, device="meta").to_empty(device="cpu")
    model.load_state_dict(state_dict, strict=True)


def test_checkpoint_has_official_format_and_is_deterministic(x4plus_files, converted_checkpoint, tmp_path):
    # A different file name on purpose: torch.save would otherwise embed it in the zip.
    second = convert_to_pth(*x4plus_files, tmp_path / "another_name.pth")
    assert hashlib.sha256(second.read_bytes()).digest() == hashlib.sha256(converted_checkpoint.read_bytes()).digest()
    checkpoint = torch.load(converted_checkpoint, map_location="cpu", weights_only=True)
    assert list(checkpoint) == ["params_ema"]
    assert checkpoint["params_ema"]["conv_first.weight"].dtype == torch.float32


def test_converted_model_matches_ncnn_runtime(x4plus_files, photo_crop, upscaled_crop):
    ncnn_output = load_ncnn_fp32(*x4plus_files).run(photo_crop.transpose(2, 0, 1))
    ncnn_rgb = np.clip(ncnn_output, 0.0, 1.0).transpose(1, 2, 0)
    assert upscaled_crop.shape == ncnn_rgb.shape == (128, 128, 3)
    assert float(np.max(np.abs(upscaled_crop - ncnn_rgb))) < MAX_ABS_DIFF_VS_NCNN
    assert psnr(upscaled_crop, ncnn_rgb) > MIN_PSNR_VS_NCNN_DB


def test_output_is_a_plausible_upscale(photo_crop, upscaled_crop):
    downscaled = upscaled_crop.reshape(32, 4, 32, 4, 3).mean(axis=(1, 3))  # 4x4 box average
    assert psnr(downscaled, photo_crop) > MIN_ROUND_TRIP_PSNR_DB


def test_pre_pad_is_reflect_bottom_right_then_cropped(x4plus_model, photo_crop):
    image = photo_crop[:12, :14]
    upscaled = upscale_array(x4plus_model, image, scale=4, pre_pad=10)
    assert upscaled.shape == (48, 56, 3) and upscaled.dtype == np.float32
    assert 0.0 <= float(upscaled.min()) and float(upscaled.max()) <= 1.0
    # RealESRGANer's math: reflect-pad bottom and right only, run, keep the top-left scaled crop.
    reflected = np.pad(image, ((0, 10), (0, 10), (0, 0)), mode="reflect")
    by_hand = upscale_array(x4plus_model, reflected, scale=4, pre_pad=0)[:48, :56]
    assert float(np.max(np.abs(upscaled - by_hand))) < 1e-5


def test_x2_layout_unshuffles_and_handles_odd_sizes():
    model = build_rrdbnet(2, device="meta").to_empty(device="cpu")
    assert model.conv_first.weight.shape == (64, 12, 3, 3)  # 3 channels pixel-unshuffled by 2
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.01)  # shapes only: any finite weights will do
    model.eval()
    upscaled = upscale_array(model, np.full((13, 11, 3), 0.5, np.float32), scale=2, pre_pad=3)
    assert upscaled.shape == (26, 22, 3)


@pytest.fixture()
def bin_bytes(x4plus_files) -> bytes:
    return x4plus_files[1].read_bytes()


def test_truncated_bin_is_refused(x4plus_files, bin_bytes, tmp_path):
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(bin_bytes[:-6])
    with pytest.raises(ValueError, match="truncated"):
        read_convolutions(x4plus_files[0], truncated)


def test_wrong_tag_is_refused(x4plus_files, bin_bytes, tmp_path):
    assert int.from_bytes(bin_bytes[:4], "little") == FP16_TAG
    wrong_tag = tmp_path / "wrong_tag.bin"
    wrong_tag.write_bytes((0x0002C056).to_bytes(4, "little") + bin_bytes[4:])
    with pytest.raises(ValueError, match="tag"):
        read_convolutions(x4plus_files[0], wrong_tag)


def test_leftover_bytes_are_refused(x4plus_files, bin_bytes, tmp_path):
    padded = tmp_path / "padded.bin"
    padded.write_bytes(bin_bytes + b"\0" * 4)
    with pytest.raises(ValueError, match="left over"):
        read_convolutions(x4plus_files[0], padded)


def test_other_packaged_graphs_are_refused(x4plus_files):
    models_dir = x4plus_files[0].parent
    anime = models_dir / "REALESRGAN_X4PLUSANIME_UP4X"  # RRDBNet with 6 blocks: 96 convolutions
    with pytest.raises(ValueError, match="351"):
        rrdbnet_state_dict(anime.with_suffix(".param"), anime.with_suffix(".bin"))
    video = models_dir / "REALESRGAN_ANIMAVIDEOV3_UP4X"  # SRVGGNet: PReLU carries weights
    with pytest.raises(ValueError, match="PReLU"):
        read_convolutions(video.with_suffix(".param"), video.with_suffix(".bin"))


@pytest.mark.parametrize(
    ("original", "altered", "message"),
    [
        (" 6=1728\n", " 6=1728 9=2 -23310=1,2.000000e-01\n", "activation"),  # conv_first gains a LeakyReLU
        (" 0=64 1=3 4=1 5=1 6=1728", " 0=64 1=3 4=0 5=1 6=1728", "geometry"),  # conv_first loses its padding
    ],
)
def test_graph_that_is_not_rrdbnet_is_refused(x4plus_files, tmp_path, original, altered, message):
    text = x4plus_files[0].read_text()
    assert text.count(original) >= 1
    altered_param = tmp_path / "altered.param"
    altered_param.write_text(text.replace(original, altered, 1))
    with pytest.raises(ValueError, match=message):
        rrdbnet_state_dict(altered_param, x4plus_files[1])


def test_select_state_dict_prefers_ema_then_params_then_bare():
    weights = {"conv.weight": torch.zeros(1)}
    other = {"conv.weight": torch.ones(1)}
    assert select_state_dict({"params_ema": weights, "params": other}) is weights
    assert select_state_dict({"params": other}) is other
    assert select_state_dict(weights) is weights
    with pytest.raises(ValueError):
        select_state_dict({"optimizer": {}})


def test_packaged_files_come_from_the_installed_package(x4plus_files):
    param_path, bin_path = x4plus_files
    assert param_path.name == "REALESRGAN_X4PLUS_UP4X.param" and bin_path.suffix == ".bin"
    assert ncnn_realesrgan.PACKAGE in param_path.parts
