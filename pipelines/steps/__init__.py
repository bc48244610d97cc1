"""The step registry: every pipeline step, by name. Each step lives in its own module."""
from __future__ import annotations

from pipelines.base import Step
from pipelines.registry import Registry


def build_step_registry() -> Registry[Step]:
    from pipelines.steps import denoise, scratch_removal

    registry: Registry[Step] = Registry("step")
    for module in (scratch_removal, denoise):
        registry.register(module.STEP.name, module.STEP)
    return registry
