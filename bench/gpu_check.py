"""GPU check: every model step with random weights in fp16/bf16 and fp32, a tiled x4plus upscale,
a forced out-of-memory, and a job through the real API; one table at the end.

Run: ``bash bench/gpu_check.sh`` on a CUDA machine (installs the carried wheels first), or here
``.venv/bin/python bench/gpu_check.py --device cpu`` (small sizes; CUDA-only parts say so).
Quality is PSNR against the same step in fp32 (random weights: a check of the precision path, not
of the models' real error). Times are medians after a warm-up. Each section is independent: one
that fails prints its error in the table and the others go on. Measures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import importlib
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the random-weight writers live in tests/
ROWS: list[tuple[str, str, str, str, str]] = []  # section, variant, quality, time, notes


class Skipped(Exception):
    pass


class Provider(dict):
    """A ModelProvider over loaded models (a missing one is ModelUnavailable, as in a worker)."""

    def get(self, model_id: str) -> Any:
        from pipelines.base import ModelUnavailable

        if model_id not in self:
            raise ModelUnavailable(f"no {model_id} in this check", details={"model": model_id})
        return self[model_id]


def section(name: str, run: Callable[[], None]) -> None:
    started = time.perf_counter()
    sys.stdout.write(f"--- {name}\n")
    sys.stdout.flush()
    try:
        run()
    except Skipped as why:
        ROWS.append((name, "-", "", "", f"skipped: {why}"))
    except Exception as exc:  # noqa: BLE001 - the table reports it and the other sections go on
        traceback.print_exc()
        ROWS.append((name, "-", "", "", f"error: {type(exc).__name__}: {str(exc)[:150]}"))
    sys.stdout.write(f"    {time.perf_counter() - started:.1f} s\n")


def cuda(device: str) -> bool:
    return device.startswith("cuda")


def need_cuda(device: str) -> None:
    import torch

    if not cuda(device) or not torch.cuda.is_available():
        raise Skipped("no CUDA")


def timed(run: Callable[[], Any], repeats: int, device: str) -> tuple[Any, float]:
    """(last output, median seconds) after one untimed warm-up run."""
    import torch

    output = run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = run()
        if cuda(device):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return output, statistics.median(seconds)


def precisions(device: str, channels_last: bool) -> list[Any]:
    from pipelines.precision import Precision

    kind = "cuda" if cuda(device) else "cpu"
    names = ("fp32", "fp16", "bf16") if kind == "cuda" else ("fp32", "bf16")
    return [Precision(name, kind, channels_last) for name in names]


def compare_precisions(name: str, holder: Any, run: Callable[[], np.ndarray], args: argparse.Namespace,
                       note: str = "") -> None:
    """Run ``run`` with ``holder.precision`` set to each precision; PSNR against fp32."""
    from pipelines.precision import psnr

    decided = getattr(holder, "precision", None)
    channels_last = bool(getattr(decided, "channels_last", True))
    reference = None
    try:
        for precision in precisions(args.device, channels_last):
            holder.precision = precision
            output, seconds = timed(run, args.repeats, args.device)
            reference = output if reference is None else reference
            quality = "reference" if output is reference else f"{psnr(output, reference):.1f} dB"
            chosen = " (loader's choice)" if decided is not None and decided.name == precision.name else ""
            ROWS.append((name, precision.name + chosen, quality, f"{seconds:.3f} s", note))
    finally:
        holder.precision = decided


def context(device: str, models: Provider) -> Any:
    from pipelines.base import StepContext

    return StepContext(report=lambda fraction, stage: None, is_cancelled=lambda: False, device=device,
                       models=models)


def photo(side: int, grey: bool = False) -> np.ndarray:
    import cv2
    from skimage import data

    rgb = cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    if grey:
        rgb = np.repeat(rgb.mean(axis=2, keepdims=True), 3, axis=2)
    return np.ascontiguousarray(rgb)


def run_step(step: Any, image: np.ndarray, params: dict, ctx: Any) -> Callable[[], np.ndarray]:
    from pipelines.base import Picture

    checked = step.checked(params)
    return lambda: step.run(Picture(rgb=image), checked, ctx).image.rgb


def upscale_models(args: argparse.Namespace, scratch: Path) -> None:
    from pipelines.models.loaders import load_model
    from pipelines.steps import upscale
    from tests.model_factories import rrdbnet_checkpoint, srvgg_checkpoint

    side = 512 if cuda(args.device) else 48
    for model_id, loader, write in (("realesrgan-x4plus", "rrdbnet-x4", rrdbnet_checkpoint),
                                    ("realesr-general-x4v3", "srvgg-x4", srvgg_checkpoint)):
        model = load_model(loader, write(scratch / f"{model_id}.pth"), args.device)
        ctx = context(args.device, Provider({model_id: model}))
        params = {"model": model_id, "outscale": 4, "denoiseStrength": 100}
        compare_precisions(f"upscale {model_id}", model, run_step(upscale.STEP, photo(side), params, ctx), args,
                           f"{side}px -> x4")


def face(args: argparse.Namespace, scratch: Path) -> None:
    from bench.face_speed import AstronautDetector
    from pipelines.models.loaders import load_model
    from pipelines.steps import face_enhancement as step
    from tests.model_factories import save_random_gfpgan, save_random_parsenet, save_random_retinaface

    restorer = load_model("gfpgan-v1-clean", save_random_gfpgan(scratch / "GFPGANv1.4.pth"), args.device)
    detector = load_model("retinaface-resnet50", save_random_retinaface(scratch / "det.pth"), args.device)
    parser = load_model("parsenet", save_random_parsenet(scratch / "parsenet.pth"), args.device)
    models = Provider({step.DETECTOR_ID: AstronautDetector(detector), step.RESTORER_ID: restorer,
                       step.PARSER_ID: parser})
    run = run_step(step.STEP, photo(512), {"fidelity": 0.5, "upscale": 1}, context(args.device, models))
    compare_precisions("face_enhancement", restorer, run, args, "astronaut 512px, 1 face")


def colorize(args: argparse.Namespace, scratch: Path) -> None:
    from pipelines.models.loaders import load_model
    from pipelines.steps import colorize as step
    from tests.model_factories import write_random_ddcolor

    colorizer = load_model("ddcolor", write_random_ddcolor(scratch / "ddcolor"), args.device)
    side = 1024 if cuda(args.device) else 256
    run = run_step(step.STEP, photo(side, grey=True), {}, context(args.device, Provider({step.MODEL_ID: colorizer})))
    compare_precisions("colorize ddcolor convnext-t", colorizer, run, args, f"{side}px grey")


def remove_background(args: argparse.Namespace, scratch: Path) -> None:
    import onnxruntime

    from pipelines.models.loaders import load_model
    from pipelines.steps import remove_background as step
    from tests.tiny_onnx import write_tiny_onnx

    try:
        importlib.import_module("rembg")  # only to know whether the step can run
    except ImportError as exc:
        raise Skipped(f"rembg not importable ({exc}); onnxruntime providers: "
                      f"{onnxruntime.get_available_providers()}") from None
    session = load_model("rembg", write_tiny_onnx(scratch / "isnet-general-use.onnx"), args.device)
    ctx = context(args.device, Provider({"isnet-general-use": session}))
    _, seconds = timed(run_step(step.STEP, photo(512), {"quality": "medium"}, ctx), args.repeats, args.device)
    ROWS.append(("remove_background", "onnxruntime", "-", f"{seconds:.3f} s",
                 f"tiny ONNX; providers {session.inner_session.get_providers()}"))


def scratch_removal(args: argparse.Namespace, scratch: Path) -> None:
    from pipelines.models.loaders import PackagedModels, load_model
    from pipelines.steps import denoise, scratch_removal as step
    from tests.model_factories import lama_torchscript

    detector = PackagedModels(args.device).get("damage-unet")
    models = Provider({"damage-unet": detector,
                       "big-lama": load_model("lama-torchscript", lama_torchscript(scratch / "lama.pt"), args.device)})
    side = 1024 if cuda(args.device) else 256
    run = run_step(step.STEP, photo(side), {}, context(args.device, models))
    compare_precisions("scratch_removal (damage-unet + LaMa)", detector, run, args, f"{side}px, real detector")
    noisy = np.clip(photo(side) + np.random.default_rng(0).normal(0, 0.08, (side, side, 3)), 0, 1).astype(np.float32)
    _, seconds = timed(run_step(denoise.STEP, noisy, {}, context(args.device, Provider())), args.repeats, args.device)
    ROWS.append(("denoise (no model)", "-", "-", f"{seconds:.3f} s", f"{side}px, noise sigma 0.08"))


def tiled(args: argparse.Namespace, scratch: Path) -> None:
    import torch

    from pipelines.models.loaders import load_model
    from pipelines.steps import upscale
    from tests.model_factories import rrdbnet_checkpoint

    model = load_model("rrdbnet-x4", rrdbnet_checkpoint(scratch / "tiled.pth"), args.device)
    side, tile = (2048, None) if cuda(args.device) else (96, 48)
    ctx = context(args.device, Provider({"realesrgan-x4plus": model}))
    params = upscale.STEP.checked({"outscale": 4, "tileSize": tile})
    from pipelines.base import Picture

    if cuda(args.device):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    outcome = upscale.STEP.run(Picture(rgb=photo(side)), params, ctx)
    seconds = time.perf_counter() - start
    report = outcome.measurements["upscale"]
    vram = f"peak VRAM {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if cuda(args.device) else "no CUDA"
    ROWS.append(("x4plus tiled", f"{report['precision']} on {report['device']}", "-", f"{seconds:.2f} s",
                 f"{side}px -> {outcome.image.width}px; tile {report['tileSize']} (chosen by the step: "
                 f"{tile is None}), {report['tiles']} tiles; {vram}"))


def out_of_memory(args: argparse.Namespace, scratch: Path) -> None:
    need_cuda(args.device)
    import torch

    from pipelines.base import Picture
    from pipelines.models.loaders import load_model
    from pipelines.steps import upscale
    from tests.model_factories import rrdbnet_checkpoint

    model = load_model("rrdbnet-x4", rrdbnet_checkpoint(scratch / "oom.pth"), args.device)
    ctx = context(args.device, Provider({"realesrgan-x4plus": model}))
    params = upscale.STEP.checked({"outscale": 4})
    total = torch.cuda.get_device_properties(torch.device(args.device)).total_memory
    torch.cuda.empty_cache()
    # Room for the weights and a little more: 512 px tiles cannot fit, smaller ones may.
    fraction = (torch.cuda.memory_allocated() + 300 * 2**20) / total
    torch.cuda.set_per_process_memory_fraction(fraction, torch.device(args.device))
    try:
        report = upscale.STEP.run(Picture(rgb=photo(1024)), params, ctx).measurements["upscale"]
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, torch.device(args.device))
    ROWS.append(("OOM: memory fraction", f"limit {fraction * total / 2**20:.0f} MiB", "-", "-",
                 f"retries {report['outOfMemoryRetries']}, finished with tile {report['tileSize']} on "
                 f"{report['device']}"))

    def refuse(module: Any, inputs: tuple) -> None:  # every CUDA attempt fails: the ladder ends on the CPU
        if inputs[0].is_cuda:
            raise torch.cuda.OutOfMemoryError("forced by gpu_check")

    hook = model.register_forward_pre_hook(refuse)
    try:
        start = time.perf_counter()
        report = upscale.STEP.run(Picture(rgb=photo(64)), params, ctx).measurements["upscale"]
    finally:
        hook.remove()
    ROWS.append(("OOM: forced on every CUDA tile", report["precision"], "-", f"{time.perf_counter() - start:.2f} s",
                 f"ladder {[a.tile for a in upscale.attempts_for(args.device, None)]}; retries "
                 f"{report['outOfMemoryRetries']}, finished with tile {report['tileSize']} on {report['device']}; "
                 f"model back on {next(model.parameters()).device}"))


def api_job(args: argparse.Namespace, scratch: Path) -> None:
    import shutil

    from bundles import MANIFEST_DIR
    from tests.model_factories import rrdbnet_checkpoint
    from tests.models import manifest_toml, sha256
    from tests.server_process import free_port

    files, manifests, data_dir = scratch / "api-files", scratch / "api-manifests", scratch / "api-data"
    files.mkdir()
    manifests.mkdir()
    checkpoint = rrdbnet_checkpoint(files / "RealESRGAN_x4plus.pth")
    (manifests / "upscale.toml").write_text(manifest_toml(
        "upscale", [{"id": "realesrgan-x4plus", "file": checkpoint.name, "license": "test", "loader": "rrdbnet-x4",
                     "sha256": sha256(checkpoint), "sources": [{"kind": "url", "url": "http://127.0.0.1:9/x4.pth"}]}],
        ("enhance", "upscale")))  # installed --from the folder: the URL is never fetched
    for name in ("photo-restoration", "colorization", "background-removal"):
        shutil.copy(MANIFEST_DIR / f"{name}.toml", manifests / f"{name}.toml")
    env = {**os.environ, "RESTORA_MANIFESTS_DIR": str(manifests)}
    cli = [sys.executable, "-m", "server.cli"]
    subprocess.run([*cli, "bundles", "install", "upscale", "--from", str(files), "--data-dir", str(data_dir)],
                   env=env, cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    log = open(scratch / "server.log", "w")
    server = subprocess.Popen([*cli, "serve", "--port", str(port), "--data-dir", str(data_dir), "--workers", "1",
                               "--device", args.device, "--no-embedded-default"], env=env, cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        result, seconds = asyncio.run(submit_and_follow(f"http://127.0.0.1:{port}", 256 if cuda(args.device) else 64))
    finally:
        server.terminate()
        server.wait(timeout=60)
    measured = result.get("measurements", result).get("upscale", {}) if isinstance(result, dict) else {}
    ROWS.append(("API enhance job", f"restora serve --device {args.device}", "-", f"{seconds:.2f} s",
                 f"complete; upscale {json.dumps(measured)[:120] or json.dumps(result)[:120]}"))


async def submit_and_follow(base: str, side: int) -> tuple[dict, float]:
    import io

    import aiohttp
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((photo(side) * 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 120
        while True:
            try:
                async with session.get(base + "/api/v1/health") as resp:
                    health = await resp.json()
                if health["workers"] and all(w["state"] in ("idle", "busy") for w in health["workers"]):
                    break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start (see server.log)")
            await asyncio.sleep(0.3)
        form = aiohttp.FormData()
        form.add_field("file", buffer.getvalue(), filename="photo.jpg", content_type="image/jpeg")
        form.add_field("scale", "2")
        start = time.perf_counter()
        async with session.post(base + "/api/v1/tools/enhance", data=form) as resp:
            body = await resp.json()
            if resp.status != 202:
                raise RuntimeError(f"submit answered {resp.status}: {body}")
        last = await last_event(session, f"{base}/api/v1/jobs/{body['jobId']}/progress")
        if last[0] != "complete":
            raise RuntimeError(f"job ended with {last[0]}: {json.dumps(last[1])[:200]}")
        return last[1].get("result", {}), time.perf_counter() - start


async def last_event(session: Any, url: str) -> tuple[str, dict]:
    event, last = "message", ("none", {})
    async with session.get(url, timeout=None) as resp:
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                last = (event, json.loads(line.partition(":")[2]))
                event = "message"
    return last


def environment(args: argparse.Namespace) -> None:
    import torch

    from pipelines.torchvision_compat import ensure_torchvision

    mode = ensure_torchvision()
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
    ROWS.append(("environment", f"torch {torch.__version__}", "-", "-",
                 f"{name}; torchvision {mode}; CUDA devices {torch.cuda.device_count()}"))


def print_table() -> None:
    widths = [max(len(row[i]) for row in ROWS + [("section", "variant", "vs fp32", "time", "notes")])
              for i in range(5)]
    widths[4] = 0
    lines = [("section", "variant", "vs fp32", "time", "notes"), *ROWS]
    sys.stdout.write("\n")
    for row in lines:
        sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="comma-separated section names (default: all)")
    args = parser.parse_args()
    sections = {"environment": lambda _: environment(args), "upscale": upscale_models, "face": face,
                "colorize": colorize, "remove_background": remove_background, "scratch_removal": scratch_removal,
                "tiled": tiled, "oom": out_of_memory, "api": api_job}
    wanted = args.only.split(",") if args.only else list(sections)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for name in wanted:
            folder = Path(scratch) / name
            folder.mkdir()
            section(name, lambda: sections[name](args, folder) if name != "environment" else environment(args))
    print_table()
    sys.stdout.write(f"\ntotal {time.perf_counter() - started:.0f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
