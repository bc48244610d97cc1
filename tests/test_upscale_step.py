"""The upscale step with a fake model provider: real architectures with random weights on tiny
inputs, fake networks for out-of-memory fallbacks, and one run with the real x4plus weights."""
from __future__ import annotations

import subprocess
import sys
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from pipelines import precision
from pipelines.base import Cancelled, ModelUnavailable, Picture, PipelineError, StepContext
from pipelines.models.converters import main as convert
from pipelines.models.rrdbnet import build_rrdbnet, load_rrdbnet
from pipelines.steps import upscale
from pipelines.torchvision_compat import ensure_torchvision
from tests.server_process import ROOT

# Measured 32.2 dB: the real x4plus output of the 32x32 astronaut crop, area-downscaled back, vs the
# crop (the ncnn conversion test measured wrong layer mappings at 3-20 dB).
MIN_REAL_ROUND_TRIP_PSNR_DB = 28.0
REAL_BF16_PROBE = precision.cpu_has_bf16_units  # kept before the fixture below replaces it


class FakeModels:
    def __init__(self, models: dict[str, torch.nn.Module]):
        self.models, self.requested = models, []

    def get(self, model_id: str) -> Any:
        self.requested.append(model_id)
        if model_id not in self.models:
            raise ModelUnavailable(f"{model_id} is not installed", details={"bundle": "upscale"})
        return self.models[model_id]


def random_rrdbnet(scale: int, seed: int = 0) -> torch.nn.Module:
    """The real 16.7 M-parameter architecture, built on 'meta' and given small random weights."""
    torch.manual_seed(seed)
    model = build_rrdbnet(scale, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02)
    return model.eval().requires_grad_(False)


def random_srvgg(seed: int) -> torch.nn.Module:
    ensure_torchvision()
    from basicsr.archs.srvgg_arch import SRVGGNetCompact

    torch.manual_seed(seed)
    model = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu")
    return model.eval().requires_grad_(False)


def tiny_x4(seed: int = 0) -> torch.nn.Module:
    """A cheap stand-in where the step's logic, not the architecture, is under test."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3, padding=1), torch.nn.Sigmoid(),
                               torch.nn.PixelShuffle(4)).eval().requires_grad_(False)


class OutOfMemoryOnCuda(torch.nn.Module):
    """Pretends to live on CUDA and to run out of memory for windows larger than ``max_side``.

    ``.to("cpu")`` / ``.to("cuda")`` only flip where it pretends to be (there is no GPU here).
    """

    def __init__(self, max_side: int):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3, padding=1), torch.nn.PixelShuffle(4))
        self.max_side, self.on_cuda, self.windows = max_side, True, []

    def to(self, *args: Any, **kwargs: Any) -> "OutOfMemoryOnCuda":
        target = kwargs.get("device", args[0] if args else None)
        if isinstance(target, (str, torch.device)):
            self.on_cuda = torch.device(target).type == "cuda"
            return self
        return super().to(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.windows.append((self.on_cuda, max(x.shape[-2:])))
        if self.on_cuda and max(x.shape[-2:]) > self.max_side:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        return self.net(x)


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    """A precision decided in a test calibrates on a tiny card, and is fp32 (exact comparisons)
    unless the test opts into the CPU's bf16 units. Torch runs one thread, as a worker given one
    core does (its provider sizes the pool): on a shared, oversubscribed CPU two OpenMP threads
    spin at every layer's barrier (measured: a 20x16 RRDBNet window took 5-14 s with 2 threads,
    0.4-0.6 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(precision, "CALIBRATION_SIDE", 16)
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: False)
    yield
    torch.set_num_threads(threads)


def context(models: FakeModels, device: str = "cpu", cancel_after: int | None = None) -> tuple[StepContext, list]:
    reports: list[tuple[float, str]] = []

    def is_cancelled() -> bool:
        return cancel_after is not None and len(reports) >= cancel_after

    return StepContext(report=lambda f, stage: reports.append((f, stage)), is_cancelled=is_cancelled,
                       device=device, models=models), reports


def run_step(image: Picture, params: dict[str, Any], ctx: StepContext) -> Any:
    """The step as the runner runs it: its parameters validated against its spec first."""
    return upscale.STEP.run(image, upscale.STEP.checked(params), ctx)


def picture(height: int, width: int, seed: int = 0, **extra: Any) -> Picture:
    rgb = np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)
    return Picture(rgb=cv2.GaussianBlur(rgb, (0, 0), 1.0), **extra)


def test_x4plus_is_4x_with_measurements_and_tile_progress():
    ctx, reports = context(FakeModels({"realesrgan-x4plus": random_rrdbnet(4)}))
    outcome = run_step(picture(16, 12), {"tileSize": 32}, ctx)  # one 20x16 window: seconds
    assert outcome.image.rgb.shape == (64, 48, 3) and outcome.image.rgb.dtype == np.float32
    assert outcome.measurements["upscale"] == {
        "model": "realesrgan-x4plus", "outscale": 4.0, "inputShrink": 1, "windowShrink": 1, "tiles": 1,
        "tileSize": 32, "overlap": 4,
        "precision": "fp32", "device": "cpu", "outOfMemoryRetries": 0}
    assert reports == [(1.0, "Enhancing tile 1/1")]


def test_progress_counts_every_tile():
    ctx, reports = context(FakeModels({"realesrgan-x4plus": tiny_x4()}))
    outcome = run_step(picture(40, 40), {"tileSize": 32}, ctx)
    tiles = outcome.measurements["upscale"]["tiles"]
    assert tiles == 4 and [stage for _, stage in reports] == [f"Enhancing tile {i}/4" for i in range(1, 5)]
    assert [fraction for fraction, _ in reports] == [0.25, 0.5, 0.75, 1.0]


def test_alpha_is_resized_not_enhanced_and_16_bit_stays_16_bit():
    alpha = np.tile(np.linspace(0, 1, 20, dtype=np.float32), (24, 1))
    source = picture(24, 20, alpha=alpha, bit_depth=16, info={"icc": b"profile", "exif": b"x"})
    ctx, _ = context(FakeModels({"realesrgan-x4plus": tiny_x4()}))
    out = run_step(source, {"outscale": 2}, ctx).image
    assert out.alpha.shape == (48, 40) and out.rgb.shape == (48, 40, 3)
    bilinear = cv2.resize(alpha, (40, 48), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out.alpha - bilinear).max() < 0.02 and 0 <= out.alpha.min() and out.alpha.max() <= 1
    assert out.bit_depth == 16 and out.info == source.info


@pytest.mark.parametrize("outscale, size", [(2, (48, 40)), (1, (24, 20)), (0.5, (12, 10)), (3.5, (84, 70))])
def test_outscale_gives_the_requested_size_from_an_x4_model(outscale, size):
    models = FakeModels({"realesrgan-x4plus": tiny_x4()})
    source = picture(24, 20)
    out = run_step(source, {"outscale": outscale}, context(models)[0]).image
    assert out.rgb.shape == (*size, 3)
    if outscale == 1:  # scale 1 still runs the network: the pixels change
        assert np.abs(out.rgb - source.rgb).mean() > 0.01


@pytest.mark.parametrize("native, outscale, oversampling, short_side, factors", [
    (4, 1, 4, 512, (1, 4)), (4, 1, 2, 512, (2, 2)), (4, 1, 1, 512, (4, 1)), (4, 4, 1, 512, (1, 1)),
    (4, 2, 2, 512, (1, 2)), (4, 3, 2, 512, (1, 1)), (4, 0.5, 2, 512, (4, 2)), (2, 1, 2, 512, (1, 2)),
    (4, 1, 2, 100, (1, 4)),  # too small to shrink first: only the windows' results are shrunk
])
def test_shrink_factors(native, outscale, oversampling, short_side, factors):
    assert upscale.shrink_factors(native, outscale, oversampling, short_side) == factors


class Recording(torch.nn.Module):
    """Records the pixels of every window it is given."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net, self.pixels = net, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.pixels += x.shape[-2] * x.shape[-1]
        return self.net(x)


def test_scale_1_runs_the_network_on_a_quarter_of_the_pixels_at_oversampling_2():
    seen = {}
    for oversampling in (4, 2):
        network = Recording(tiny_x4())
        ctx, _ = context(FakeModels({"realesrgan-x4plus": network}))
        outcome = run_step(picture(256, 256), {"outscale": 1, "oversampling": oversampling, "tileSize": 64}, ctx)
        assert outcome.image.rgb.shape == (256, 256, 3)
        seen[oversampling] = network.pixels, outcome.measurements["upscale"]
    assert seen[4][1]["inputShrink"] == 1 and seen[2][1]["inputShrink"] == 2
    from pipelines.tiling import count_tiles

    # oversampling 4 runs windows over the 256 px photo; 2 over it shrunk to 128 px
    assert seen[4][0] == count_tiles(256, 256, 64, upscale.overlap_for(64)) * 64 * 64
    assert seen[2][0] == count_tiles(128, 128, 64, upscale.overlap_for(64)) * 64 * 64


def test_oversampling_4_at_scale_1_is_the_x4_result_shrunk_without_holding_it():
    import tracemalloc

    source = picture(192, 160)
    models = FakeModels({"realesrgan-x4plus": tiny_x4()})
    whole = run_step(source, {"outscale": 4, "tileSize": 64}, context(models)[0]).image.rgb
    reference = cv2.resize(whole, (160, 192), interpolation=cv2.INTER_AREA)
    tracemalloc.start()
    try:
        out = run_step(source, {"outscale": 1, "oversampling": 4, "tileSize": 64}, context(models)[0]).image.rgb
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Blending shrunk windows instead of shrinking the blend: measured 150 dB (float rounding).
    assert precision.psnr(out, reference) > 50
    # Measured 0.18 of the 4x result (one window's result, the padded input, the output); holding
    # the 4x result, as the step did before, peaks at 1.26 of it.
    assert peak < whole.nbytes / 4


def test_x2plus_takes_odd_sizes_and_reaches_outscale_3():
    models = FakeModels({"realesrgan-x2plus": random_rrdbnet(2)})
    params = {"model": "realesrgan-x2plus", "outscale": 3, "tileSize": 32}
    outcome = run_step(picture(23, 21), params, context(models)[0])
    assert outcome.image.rgb.shape == (69, 63, 3)
    assert 0 <= outcome.image.rgb.min() and outcome.image.rgb.max() <= 1


def test_denoise_strength_equals_running_the_blended_weights():
    general, wdn = random_srvgg(1), random_srvgg(2)
    blended = random_srvgg(3)
    blended.load_state_dict({name: 0.3 * value + 0.7 * wdn.state_dict()[name]
                             for name, value in general.state_dict().items()})
    source, params = picture(20, 20), {"model": "realesr-general-x4v3", "denoiseStrength": 30}
    provider = FakeModels({"realesr-general-x4v3": general, "realesr-general-wdn-x4v3": wdn})
    via_step = run_step(source, params, context(provider)[0]).image.rgb
    reference = FakeModels({"realesr-general-x4v3": blended})
    expected = run_step(source, {**params, "denoiseStrength": 100}, context(reference)[0]).image.rgb
    assert np.abs(via_step - expected).max() < 1e-5
    assert upscale.blended_network(general, wdn, 0.3) is upscale.blended_network(general, wdn, 0.3)
    assert reference.requested == ["realesr-general-x4v3"]  # strength 100 needs no wdn twin


def test_denoise_strength_ends_are_the_two_networks():
    general, wdn = random_srvgg(1), random_srvgg(2)
    for strength, expected in ((0.0, wdn), (1.0, general)):
        state = upscale.interpolate_weights(general, wdn, strength).state_dict()
        assert all(torch.equal(state[name], value) for name, value in expected.state_dict().items())


def test_out_of_gpu_memory_halves_the_tile_and_stays_on_the_gpu():
    fake = OutOfMemoryOnCuda(max_side=128)
    ctx, reports = context(FakeModels({"realesrgan-x4plus": fake}), device="cuda")
    outcome = run_step(picture(200, 200), {}, ctx)
    report = outcome.measurements["upscale"]
    assert (report["device"], report["tileSize"], report["precision"]) == ("cuda", 128, "fp16")
    assert report["outOfMemoryRetries"] == 2  # 512 and 256 failed
    assert outcome.image.rgb.shape == (800, 800, 3)
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_out_of_gpu_memory_at_every_tile_size_finishes_on_the_cpu():
    fake = OutOfMemoryOnCuda(max_side=0)
    ctx, _ = context(FakeModels({"realesrgan-x4plus": fake}), device="cuda")
    outcome = run_step(picture(40, 30), {"tileSize": 512}, ctx)
    report = outcome.measurements["upscale"]
    assert (report["device"], report["tileSize"], report["outOfMemoryRetries"]) == ("cpu", 256, 3)
    # One window each time (context included): 512 -> 104 px, 256 -> 72 px, 128 -> 56 px; all OOM.
    assert [side for on_cuda, side in fake.windows if on_cuda] == [104, 72, 56]
    assert fake.on_cuda  # moved back to the provider's device afterwards
    plain = run_step(picture(40, 30), {}, context(FakeModels({"realesrgan-x4plus": fake.net}))[0])
    assert np.abs(outcome.image.rgb - plain.image.rgb).max() < 1e-6


def test_cancellation_stops_between_tiles():
    ctx, reports = context(FakeModels({"realesrgan-x4plus": tiny_x4()}), cancel_after=2)
    with pytest.raises(Cancelled):
        run_step(picture(40, 40), {"tileSize": 32}, ctx)
    assert len(reports) == 2


def test_missing_bundle_raises_model_unavailable():
    with pytest.raises(ModelUnavailable):
        run_step(picture(8, 8), {"model": "realesrgan-x2plus"}, context(FakeModels({}))[0])


@pytest.mark.parametrize("params", [{"model": "nope"}, {"outscale": 5}, {"tileSize": 8},
                                    {"denoiseStrength": 101}])
def test_invalid_parameters_are_refused(params):
    with pytest.raises(PipelineError):
        run_step(picture(8, 8), params, context(FakeModels({}))[0])


def test_keep_monochrome_keeps_a_grey_photo_grey():
    grey = np.repeat(picture(24, 24).rgb.mean(axis=2, keepdims=True), 3, axis=2)
    ctx, _ = context(FakeModels({"realesrgan-x4plus": tiny_x4()}))
    out = run_step(Picture(rgb=grey), {"outscale": 2, "keepMonochrome": True}, ctx).image.rgb
    assert np.abs(out - out.mean(axis=2, keepdims=True)).max() < 0.01


def test_importing_the_step_does_not_import_torch():
    code = "import sys, pipelines.steps.upscale; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.fixture(scope="session")
def real_x4plus(tmp_path_factory) -> torch.nn.Module:
    path = tmp_path_factory.mktemp("weights") / "RealESRGAN_x4plus.pth"
    assert convert(["ncnn-realesrgan-x4plus", str(path)]) == 0
    return load_rrdbnet(path, scale=4)


def test_real_x4plus_weights_give_a_sensible_upscale(real_x4plus, monkeypatch):
    from skimage import data

    monkeypatch.setattr(precision, "cpu_has_bf16_units", REAL_BF16_PROBE)  # bf16 where this CPU has it
    crop = data.astronaut()[100:132, 180:212].astype(np.float32) / 255
    outcome = run_step(Picture(rgb=crop), {}, context(FakeModels({"realesrgan-x4plus": real_x4plus}))[0])
    out = outcome.image.rgb
    assert out.shape == (128, 128, 3)
    assert (outcome.measurements["upscale"]["tileSize"], outcome.measurements["upscale"]["tiles"]) == (256, 1)
    back = cv2.resize(out, (32, 32), interpolation=cv2.INTER_AREA)
    assert precision.psnr(back, crop) > MIN_REAL_ROUND_TRIP_PSNR_DB
    bicubic = cv2.resize(crop, (128, 128), interpolation=cv2.INTER_CUBIC)
    assert sharpness(out) > sharpness(bicubic)  # it restores detail instead of only interpolating


def sharpness(rgb: np.ndarray) -> float:
    return float(cv2.Laplacian(rgb.mean(axis=2), cv2.CV_32F).var())


def test_the_runner_refuses_a_call_its_step_refuses_before_decoding(tmp_path):
    from pipelines.base import InvalidStepParams
    from pipelines.runner import RunRequest, run_tool_job
    from pipelines.steps import build_step_registry

    decoded: list = []
    request = RunRequest(tool="upscale", plan=[{"step": "upscale", "params": {"tileSize": 8, "sharpen": True}}],
                         input_path=tmp_path / "in.png", output_dir=tmp_path, output_stem="out", input_format="png")
    with pytest.raises(InvalidStepParams) as caught:
        run_tool_job(request, build_step_registry(), report=lambda *_: None, is_cancelled=lambda: False,
                     models=FakeModels({}), decode=decoded.append)
    assert caught.value.code == "INVALID_PARAMS" and decoded == []
    assert {problem["field"] for problem in caught.value.details["fields"]} == {"tileSize", "sharpen"}
