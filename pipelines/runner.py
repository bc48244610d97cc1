"""Run one tool job: decode, run the planned steps in order, write the result and a preview.

Every planned call's parameters are validated against its step's spec before anything runs
(:meth:`Step.checked`): a call the spec refuses is a bug in the tool that planned it, and fails the
job at once with INVALID_PARAMS instead of partway through.

Progress is reported as an overall percentage: decoding takes the first 5%, the steps share
5–90% by their declared weights, writing the files takes the rest.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from pipelines.analysis import read_tone
from pipelines.base import ModelProvider, Picture, Step, StepContext, StepOutcome
from pipelines.imaging.decode import decode_file
from pipelines.imaging.encode import extension_for, output_format_for, write_output, write_preview
from pipelines.models.loaders import PackagedModels
from pipelines.registry import Registry

PREVIEW_NAME = "preview.webp"
DAMAGE_MASK_NAME = "damage-mask.png"
_DECODE_END, _STEPS_END = 5.0, 90.0


@dataclass(frozen=True)
class RunRequest:
    tool: str
    plan: list[Mapping[str, Any]]
    input_path: Path
    output_dir: Path
    output_stem: str
    input_format: str
    options: Mapping[str, Any] = field(default_factory=dict)
    # The caller's mask (white = repair here), stored at the input's size; None without one.
    mask_path: Path | None = None

    @classmethod
    def from_message(cls, job: Mapping[str, Any]) -> "RunRequest":
        return cls(tool=job["tool"], plan=list(job["plan"]), input_path=Path(job["input_path"]),
                   output_dir=Path(job["output_dir"]), output_stem=job["output_stem"],
                   input_format=job["input_format"], options=dict(job.get("options") or {}),
                   mask_path=Path(job["mask_path"]) if job.get("mask_path") else None)


@dataclass
class _Run:
    """Mutable bookkeeping of one run: what ran, what was skipped, what was measured."""

    steps: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, int] = field(default_factory=dict)
    extras: dict[str, Picture] = field(default_factory=dict)
    damage_mask: np.ndarray | None = None  # the union of what the steps repaired

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[name] = int((time.perf_counter() - start) * 1000)

    def record(self, step: Step, outcome: StepOutcome) -> None:
        self.measurements.update(outcome.measurements)
        self.extras.update(outcome.extras)
        if outcome.damage_mask is not None:
            self.damage_mask = _union(self.damage_mask, outcome.damage_mask)
        if outcome.skipped:
            self.skipped.append({"step": step.name, "reason": outcome.skipped, "bundle": None})
        else:
            self.steps.append(step.name)


Decoder = Callable[[Path], Picture]
Call = tuple[Step, dict[str, Any]]  # a step and its validated parameters


def run_tool_job(request: RunRequest, steps: Registry[Step], *, report: Callable[[float, str], None],
                 is_cancelled: Callable[[], bool], device: str = "cpu", models: ModelProvider | None = None,
                 decode: Decoder = decode_file) -> dict[str, Any]:
    """Run one job. ``models`` is the worker's provider (None: only the packaged models, on
    ``device``); ``decode`` is the decoder to use: the worker passes an isolated one."""
    calls = checked_calls(request.plan, steps)
    run = _Run()
    provider = models if models is not None else PackagedModels(device)
    base = StepContext(report=report, is_cancelled=is_cancelled, device=device, models=provider)
    base.report(0.0, "Decoding image...")
    picture = run.timed("decode", lambda: decode(request.input_path))
    mask_path = request.mask_path
    user_mask = run.timed("decodeMask", lambda: _user_mask(mask_path, picture)) if mask_path else None
    tone = read_tone(picture.rgb)
    picture = _run_steps(picture, calls, base, run, user_mask)
    base.check_cancelled()
    base.report(_STEPS_END, "Saving result...")
    files, output_format = run.timed("encode", lambda: _write_files(picture, request, run))
    return {
        "files": files, "outputFormat": output_format, "width": picture.width, "height": picture.height,
        "outputSize": (request.output_dir / files["output"]).stat().st_size,
        "steps": run.steps, "skipped": run.skipped, "measurements": run.measurements,
        "isGrayscale": tone.is_grayscale, "tone": tone.tone, "timings": run.timings,
    }


def checked_calls(plan: list[Mapping[str, Any]], steps: Registry[Step]) -> list[Call]:
    """Each planned ``{"step", "params"}`` as its step and validated parameters (InvalidStepParams
    for any call its step's spec refuses)."""
    calls = []
    for call in plan:
        step = steps.get(call["step"])
        calls.append((step, step.checked(call.get("params") or {})))
    return calls


def _run_steps(picture: Picture, calls: list[Call], base: StepContext, run: _Run,
               user_mask: np.ndarray | None) -> Picture:
    total = sum(step.weight for step, _ in calls) or 1.0
    done = 0.0
    for step, params in calls:
        base.check_cancelled()
        start = _DECODE_END + (_STEPS_END - _DECODE_END) * done / total
        span = (_STEPS_END - _DECODE_END) * step.weight / total
        # The job's context with progress mapped into this step's share of the bar.
        ctx = replace(base, report=lambda f, stage, s=start, w=span: base.report(s + f * w, stage),
                      user_mask=user_mask if _fits(user_mask, picture) else None)
        ctx.progress(0.0, step.stage)
        outcome = run.timed(step.name, lambda: step.run(picture, params, ctx))
        run.record(step, outcome)
        picture = outcome.image
        done += step.weight
    return picture


def _user_mask(path: Path, picture: Picture) -> np.ndarray:
    """The stored mask as bool HxW. The server already decoded the upload in the isolated decoder
    and wrote this file itself (an 8-bit black/white PNG at the input's size), so it is read
    directly as 8 bits: a float RGB decode would cost 12 bytes a pixel for one bit."""
    from PIL import Image

    with Image.open(path) as image:
        mask = np.asarray(image.convert("L")) > 127
    if mask.shape != picture.rgb.shape[:2]:  # a header whose size differs from the decoded pixels
        mask = _resized(mask, picture.rgb.shape[:2])
    return mask


def _fits(mask: np.ndarray | None, picture: Picture) -> bool:
    """The user mask goes only to steps that receive the input's size (the scratch step, first)."""
    return mask is not None and mask.shape == picture.rgb.shape[:2]


def _union(mask: np.ndarray | None, more: np.ndarray) -> np.ndarray:
    if mask is None:
        return more.astype(bool)
    return mask | (more.astype(bool) if more.shape == mask.shape else _resized(more, mask.shape))


def _resized(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import cv2

    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def _write_damage_mask(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.where(mask, np.uint8(255), np.uint8(0)), "L").save(path, "PNG")


def _write_files(picture: Picture, request: RunRequest, run: _Run) -> tuple[dict[str, str], str]:
    output_format = request.options.get("outputFormat") or output_format_for(request.input_format)
    quality = request.options.get("quality")
    name = f"{request.output_stem}.{extension_for(output_format)}"
    _atomic(request.output_dir / name, lambda tmp: write_output(picture, tmp, output_format, quality))
    _atomic(request.output_dir / PREVIEW_NAME, lambda tmp: write_preview(picture, tmp))
    files = {"output": name, "preview": PREVIEW_NAME}
    if run.damage_mask is not None:
        mask = run.damage_mask
        _atomic(request.output_dir / DAMAGE_MASK_NAME, lambda tmp: _write_damage_mask(tmp, mask))
        files["damageMask"] = DAMAGE_MASK_NAME
    for result_type, extra in run.extras.items():
        extra_name = f"{request.output_stem}_{result_type}.png"
        _atomic(request.output_dir / extra_name, lambda tmp, pic=extra: write_output(pic, tmp, "png"))
        files[result_type] = extra_name
    return files, output_format


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write next to the target and rename, so a half-written file is never served."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
