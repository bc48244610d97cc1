"""Tools: what the API exposes. A tool declares its parameters and plans which steps run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pipelines.params import Param, ValidParams, schema
from pipelines.registry import Registry


@dataclass(frozen=True)
class StepCall:
    """One planned step: its registered name, its parameters, and whether the caller asked for it
    explicitly (an explicit step whose bundle is missing is refused; a default one is skipped)."""

    step: str
    params: Mapping[str, Any] = field(default_factory=dict)
    explicit: bool = False


@dataclass(frozen=True)
class Tool:
    name: str
    summary: str
    params: tuple[Param, ...]
    plan: Callable[[ValidParams], list[StepCall]]
    output_suffix: str

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "parameters": schema(self.params)}


def build_tool_registry() -> Registry[Tool]:
    from pipelines.tools import restore_photo

    registry: Registry[Tool] = Registry("tool")
    for module in (restore_photo,):
        registry.register(module.TOOL.name, module.TOOL)
    return registry
