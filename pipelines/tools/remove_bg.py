"""remove-bg (seed 003): transparent PNG cutouts or masks at three quality levels."""
from __future__ import annotations

from pipelines.params import Param, ValidParams
from pipelines.tools import InputInfo, StepCall, Tool
from pipelines.tools.common import OUTPUT_FORMAT_PARAM
from pipelines.tools.upscale import scaled

# Seed 003: larger inputs are resized down proportionally before processing.
MAX_INPUT_SIDE = {"low": 2048, "medium": 2048, "high": 4096}

PARAMS = (
    Param("quality", "string", "medium", "low: u2netp; medium: isnet-general-use; high: BiRefNet (fine edges).",
          choices=("low", "medium", "high")),
    Param("returnMask", "boolean", False, "Return a greyscale mask (white = foreground) instead of the cutout."),
    Param("alphaMatting", "boolean", False, "Refine fine edges (hair, fur) with alpha matting."),
    Param("background", "string", None, "Composite onto this colour (#rrggbb) instead of transparency.",
          pattern="#[0-9a-fA-F]{6}"),
    # Seed 003's `quality` names the model level, so the output-quality parameter is left out here.
    OUTPUT_FORMAT_PARAM,
)


def resize_factor(params: ValidParams, info: InputInfo) -> float:
    return min(1.0, MAX_INPUT_SIDE[params["quality"]] / info.long_side)


def plan(params: ValidParams, info: InputInfo) -> list[StepCall]:
    step_params = {"quality": params["quality"], "returnMask": params["returnMask"],
                   "alphaMatting": params["alphaMatting"], "background": params["background"], "asExtra": False}
    return [StepCall("remove_background", step_params, explicit=True)]


TOOL = Tool(
    name="remove-bg",
    summary="Remove the background: transparent PNG (or a mask) at three quality levels.",
    params=PARAMS,
    plan=plan,
    output_suffix="nobg",
    result_type="background_removed",
    default_format="png",
    output_size=lambda params, info: scaled(info, resize_factor(params, info)),
)
