"""The step registry: every pipeline step, by name. Each step lives in its own module."""
from __future__ import annotations

from pipelines.base import Step
from pipelines.registry import Registry


def build_step_registry() -> Registry[Step]:
    from pipelines.steps import colorize, denoise, face_enhancement, remove_background, scratch_removal, upscale

    registry: Registry[Step] = Registry("step")
    for module in (scratch_removal, face_enhancement, denoise, colorize, remove_background, upscale):
        registry.register(module.STEP.name, module.STEP)
    return registry
