"""upscale: Real-ESRGAN super-resolution, tiled, on CPU or GPU, to any factor from 0.25 to 4.

The network runs at its native scale (4, or 2 for x2plus) through :mod:`pipelines.tiling`; its
output is then resized to ``outscale`` (scale 1 still enhances). When the output is smaller than
the native scale makes it, the work is bounded by ``oversampling``: the network's result is at most
that many times the output's size per side, so the input is first area-shrunk (x4plus at scale 1,
oversampling 2: a quarter of RealESRGANer's work; 4 is RealESRGANer's way), and each window's
result is area-shrunk before it is blended, so memory follows the output, not the network's
result. Alpha does not go through the network: it is resized to the output size. Out of GPU memory, the tile is
halved down to :data:`MIN_CUDA_TILE`, then the job finishes on the CPU.

torch is imported inside functions only: the server process imports the step registry.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import numpy as np

from pipelines.base import Picture, Step, StepContext, StepOutcome, scaled_size
from pipelines.params import Param

if TYPE_CHECKING:
    import torch

log = logging.getLogger("restora.upscale")

BUNDLE = "upscale"
GENERAL, GENERAL_WDN = "realesr-general-x4v3", "realesr-general-wdn-x4v3"
NATIVE_SCALE = {"realesrgan-x4plus": 4, "realesrgan-x2plus": 2, GENERAL: 4}
# RRDBNet x2 pixel-unshuffles its input by 2: windows need even sides.
INPUT_MULTIPLE = {"realesrgan-x2plus": 2}
DEFAULT_MODEL = "realesrgan-x4plus"
# 256 px including context runs 20-35% faster on CPU than 256 + context (measured; docs/NOTES.md).
CPU_TILE, CUDA_TILE, MIN_CUDA_TILE = 256, 512, 128
MIN_TILE = 32


MODEL = Param("model", "string", DEFAULT_MODEL, "Real-ESRGAN model.", choices=tuple(NATIVE_SCALE))
OUTSCALE = Param("outscale", "number", 4.0, "Any factor up to 4.", 0.25, 4)
TILE_SIZE = Param("tileSize", "integer", None, "Tile size in pixels, context included (default: 256 on CPU).",
                  MIN_TILE, 2048)
DENOISE_STRENGTH = Param("denoiseStrength", "number", 50, "realesr-general-x4v3 only: 0 keeps grain (its -wdn "
                         "twin), 100 removes it.", 0, 100)
OVERSAMPLING = Param("oversampling", "integer", 2, "When the output is smaller than the model's native scale: "
                     "how many times the output's size per side the network works at (4 with x4plus at "
                     "scale 1 is RealESRGANer's way; 2 does a quarter of that work).", choices=(1, 2, 4))
KEEP_MONOCHROME = Param("keepMonochrome", "boolean", False, "Keep a monochrome photo's own tint.")
PARAMS = (MODEL, OUTSCALE, TILE_SIZE, DENOISE_STRENGTH, OVERSAMPLING, KEEP_MONOCHROME)


@dataclass(frozen=True)
class Attempt:
    device: str
    tile: int


def run(image: Picture, params: Mapping[str, Any], ctx: StepContext) -> StepOutcome:
    model_id = params["model"]
    network = _network(model_id, params["denoiseStrength"], ctx)
    width, height = scaled_size(image.width, image.height, params["outscale"])
    size = (height, width)  # _resize takes (height, width)
    native = NATIVE_SCALE[model_id]
    pre, post = shrink_factors(native, params["outscale"], params["oversampling"], min(image.rgb.shape[:2]))
    source = _resize(image.rgb, _shrunk_size(image.rgb.shape, pre)) if pre > 1 else image.rgb
    work = _Work(network, source, native, INPUT_MULTIPLE.get(model_id, 1), post)
    enhanced, report = _enhance_with_fallback(work, params["tileSize"], ctx)
    rgb = _resize(enhanced, size)
    if params["keepMonochrome"]:
        rgb = _keep_monochrome(image.rgb, rgb)
    alpha = None if image.alpha is None else _resize(image.alpha, size)
    measurements = {"model": model_id, "outscale": params["outscale"], "inputShrink": pre, "windowShrink": post,
                    **report}
    return StepOutcome(replace(image, rgb=rgb, alpha=alpha), measurements={"upscale": measurements})


# Below this many pixels on the short side the input is not shrunk first: there is too little to
# gain, and the network needs some context.
MIN_SHRUNK_SIDE = 64


def shrink_factors(native: int, outscale: float, oversampling: int, short_side: int) -> tuple[int, int]:
    """(input shrink, per-window shrink), both powers of two.

    The input is shrunk while the network's result stays at least ``oversampling`` times the output
    per side; each window's result is then shrunk while it stays at least the output's size. At
    x4plus scale 1: oversampling 4 -> (1, 4), 2 -> (2, 2), 1 -> (4, 1); at scale 4 always (1, 1).
    """
    pre = 1
    while native / (pre * 2) >= outscale * oversampling and short_side // (pre * 2) >= MIN_SHRUNK_SIDE:
        pre *= 2
    post = 1
    while native % (post * 2) == 0 and native / (pre * post * 2) >= outscale:
        post *= 2
    return pre, post


def _shrunk_size(shape: tuple[int, ...], factor: int) -> tuple[int, int]:
    return max(1, round(shape[0] / factor)), max(1, round(shape[1] / factor))


def _network(model_id: str, denoise_strength: float, ctx: StepContext) -> "torch.nn.Module":
    """The network to run: the model itself, or for the general model its blend with the -wdn twin."""
    if model_id != GENERAL or denoise_strength == 100:
        return ctx.model(model_id, BUNDLE)
    if denoise_strength == 0:  # the blend would be 0 x general + 1 x wdn: the wdn twin itself
        return ctx.model(GENERAL_WDN, BUNDLE)
    general, wdn = ctx.model(GENERAL, BUNDLE), ctx.model(GENERAL_WDN, BUNDLE)
    return blended_network(general, wdn, denoise_strength / 100)


_blends_lock = threading.Lock()
MAX_CACHED_BLENDS = 4


def blended_network(general: "torch.nn.Module", wdn: "torch.nn.Module", strength: float) -> "torch.nn.Module":
    """The general/wdn blend for ``strength``, built once per strength (a few at most) and kept on
    the provider's wdn network, so it lives exactly as long as the loaded model. (On wdn, not on
    general: the blend is a deep copy of general, and would copy the kept blends along.)"""
    with _blends_lock:
        blends = wdn.__dict__.setdefault("_restora_blends", {})
        cached = blends.get(strength)
        if cached is not None and cached[0] is general:
            return cached[1]
        if len(blends) >= MAX_CACHED_BLENDS:
            blends.pop(next(iter(blends)))  # the oldest
        network = interpolate_weights(general, wdn, strength)
        network.precision = _blend_precision(general, wdn)
        blends[strength] = (general, network)
        return network


def _blend_precision(general: "torch.nn.Module", wdn: "torch.nn.Module") -> Any:
    """The two networks' precision where their loaders agreed on it; else none (the device's fp32)."""
    decided = getattr(general, "precision", None)
    return decided if decided == getattr(wdn, "precision", None) else None


def interpolate_weights(first: "torch.nn.Module", second: "torch.nn.Module", weight: float) -> "torch.nn.Module":
    """Real-ESRGAN's ``dni``: a copy of ``first`` whose weights are weight*first + (1-weight)*second."""
    import copy

    import torch

    blended, other = copy.deepcopy(first), second.state_dict()
    with torch.no_grad():
        for name, tensor in blended.state_dict().items():  # views of the parameters: edits stick
            if tensor.is_floating_point():
                tensor.mul_(weight).add_(other[name], alpha=1.0 - weight)
    return blended


def attempts_for(device: str, tile: int | None) -> list[Attempt]:
    """The (device, tile) ladder: on CUDA halve the tile on each OOM, then finish on the CPU."""
    if not device.startswith("cuda"):
        return [Attempt(device, tile or CPU_TILE)]
    first = tile or CUDA_TILE
    ladder, size = [Attempt(device, first)], first // 2
    while size >= MIN_CUDA_TILE:
        ladder.append(Attempt(device, size))
        size //= 2
    return ladder + [Attempt("cpu", CPU_TILE)]


@dataclass(frozen=True)
class _Work:
    """What every attempt runs: the network over the RGB pixels."""

    model: "torch.nn.Module"
    rgb: np.ndarray
    scale: int
    input_multiple: int
    window_shrink: int = 1  # each window's result is area-shrunk by this before blending


def _enhance_with_fallback(work: _Work, tile: int | None, ctx: StepContext) -> tuple[np.ndarray, dict[str, Any]]:
    import torch

    ladder = attempts_for(ctx.device, tile)
    progress = _MonotonicProgress(ctx)
    for number, attempt in enumerate(ladder):
        try:
            with _model_on(work.model, attempt.device, home=ctx.device):
                result, report = _enhance(work, attempt, progress.tile, ctx.check_cancelled)
            return result, {**report, "outOfMemoryRetries": number}
        except torch.cuda.OutOfMemoryError:
            if number == len(ladder) - 1:
                raise
            log.warning("out of GPU memory with %d px tiles on %s; next: %s", attempt.tile, attempt.device,
                        ladder[number + 1])
            _release_cuda_cache()
            progress.restart()
    raise AssertionError("unreachable: the ladder is never empty")


def _enhance(work: _Work, attempt: Attempt, on_tile: Callable[[int, int], None],
             check_cancelled: Callable[[], None]) -> tuple[np.ndarray, dict[str, Any]]:
    from pipelines.precision import precision_of, window_runner
    from pipelines.tiling import count_tiles, run_tiled

    precision = precision_of(work.model, attempt.device)  # the loader's, or fp32 on a CPU fallback
    overlap = overlap_for(attempt.tile)
    runner = shrinking(window_runner(work.model, precision), work.window_shrink)
    result = run_tiled(work.rgb, runner, scale=work.scale // work.window_shrink, tile=attempt.tile,
                       overlap=overlap, mod=work.input_multiple, on_tile=on_tile, check_cancelled=check_cancelled)
    tiles = count_tiles(*work.rgb.shape[:2], attempt.tile, overlap, work.input_multiple)
    return result, {"tiles": tiles, "tileSize": attempt.tile, "overlap": overlap, "precision": precision.name,
                    "device": attempt.device}


def shrinking(runner: Callable[[np.ndarray], np.ndarray], factor: int) -> Callable[[np.ndarray], np.ndarray]:
    """``runner`` whose result is area-averaged over ``factor`` x ``factor`` blocks (the window's
    result sides are multiples of the native scale, which ``factor`` divides)."""
    if factor == 1:
        return runner

    def run(window: np.ndarray) -> np.ndarray:
        result = runner(window)
        height, width, channels = result.shape
        blocks = result.reshape(height // factor, factor, width // factor, factor, channels)
        return blocks.mean(axis=(1, 3), dtype=np.float32)
    return run


def overlap_for(tile: int) -> int:
    """An eighth of the tile: 32 px at 256 (a 16 px ramp, 8 px discarded at each window edge)."""
    return max(4, tile // 8)


class _MonotonicProgress:
    """Maps tiles to progress; after an OOM retry the new attempt fills what was left of the bar."""

    def __init__(self, ctx: StepContext):
        self.ctx, self.start, self.reached = ctx, 0.0, 0.0

    def tile(self, done: int, total: int) -> None:
        self.reached = self.start + (1.0 - self.start) * done / total
        self.ctx.progress(self.reached, f"Enhancing tile {done}/{total}")

    def restart(self) -> None:
        self.start = self.reached


@contextlib.contextmanager
def _model_on(model: "torch.nn.Module", device: str, home: str) -> Iterator[None]:
    """Run ``model`` on ``device`` for a while, then move it back to the provider's device.

    The provider hands out one shared model per worker, already on ``home``; a CPU fallback moves
    it (a copy would need GPU memory right after running out of it) and puts it back after.
    """
    if device == home:
        yield
        return
    import torch

    model.to(device)
    try:
        yield
    finally:
        try:
            model.to(home)
        except torch.cuda.OutOfMemoryError:
            # Still usable where it is: inputs follow the weights (see precision.window_runner).
            log.warning("could not move the model back to %s: it stays on %s", home, device)


def _release_cuda_cache() -> None:
    import torch

    torch.cuda.empty_cache()  # a no-op when CUDA was never initialised


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (height, width): area averaging to shrink, Lanczos to enlarge, clipped to [0, 1]."""
    import cv2

    height, width = size
    if array.shape[:2] == (height, width):
        return array
    shrinking = height <= array.shape[0] and width <= array.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    resized = cv2.resize(np.ascontiguousarray(array, dtype=np.float32), (width, height), interpolation=interpolation)
    return np.clip(resized, 0.0, 1.0, out=resized)


def _keep_monochrome(source: np.ndarray, enhanced: np.ndarray) -> np.ndarray:
    """For a monochrome (or toned) source: keep the enhanced lightness, restore the source's tint,
    so the network cannot add colour casts to a black-and-white photo."""
    import cv2

    from pipelines.analysis import is_grayscale

    if not is_grayscale(source):
        return enhanced
    source_lab = cv2.cvtColor(np.ascontiguousarray(source, dtype=np.float32), cv2.COLOR_RGB2Lab)
    lab = cv2.cvtColor(enhanced, cv2.COLOR_RGB2Lab)
    lab[..., 1:] = cv2.resize(source_lab[..., 1:], enhanced.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)


STEP = Step(name="upscale", stage="Enhancing...", run=run, params=PARAMS, bundle=BUNDLE, weight=6.0)
