"""Tools: what the API exposes. A tool declares its parameters and plans which steps run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pipelines.base import scaled_size
from pipelines.params import Param, ValidParams, schema
from pipelines.registry import Registry


@dataclass(frozen=True)
class InputInfo:
    """What is known of the input before it is decoded: read from the file's header."""

    width: int
    height: int
    format: str
    # The caller sent a mask of pixels to repair (restore-photo's ``mask`` upload).
    has_mask: bool = False

    @property
    def long_side(self) -> int:
        return max(self.width, self.height)


@dataclass(frozen=True)
class StepCall:
    """One planned step: its registered name, its parameters, the model ids it will ask for, and
    whether the caller asked for it explicitly (an explicit step whose bundle is missing is refused;
    a default one is skipped)."""

    step: str
    params: Mapping[str, Any] = field(default_factory=dict)
    explicit: bool = False
    models: tuple[str, ...] = ()


def same_size(params: ValidParams, info: InputInfo) -> tuple[int, int]:
    return info.width, info.height


def scaled(info: InputInfo, factor: float) -> tuple[int, int]:
    """The input's size times ``factor``, rounded as the steps round it (:func:`scaled_size`)."""
    return scaled_size(info.width, info.height, factor)


@dataclass(frozen=True)
class Tool:
    name: str
    summary: str
    params: tuple[Param, ...]
    plan: Callable[[ValidParams, InputInfo], list[StepCall]]
    output_suffix: str
    result_type: str
    # Result fields every job of this tool reports, even when the step that measures them is off.
    result_defaults: Mapping[str, Any] = field(default_factory=dict)
    # The output's pixel size, known before queueing so an oversized request is refused early.
    output_size: Callable[[ValidParams, InputInfo], tuple[int, int]] = same_size
    # The output format when the caller names none; None follows the input's format.
    default_format: str | None = None
    # Whether the tool takes a ``mask`` upload (white = repair here); others refuse one.
    accepts_mask: bool = False

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"tool {self.name}: duplicate parameter names {sorted(names)}")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "parameters": schema(self.params)}


def build_tool_registry() -> Registry[Tool]:
    from pipelines.tools import colorize, enhance, face_enhance, remove_bg, restore_photo, upscale

    registry: Registry[Tool] = Registry("tool")
    for module in (restore_photo, enhance, upscale, face_enhance, colorize, remove_bg):
        registry.register(module.TOOL.name, module.TOOL)
    return registry
