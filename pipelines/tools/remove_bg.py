"""remove-bg (seed 003): transparent PNG cutouts or masks at three quality levels."""
from __future__ import annotations

from pipelines.params import ValidParams
from pipelines.steps import remove_background as step
from pipelines.tools import InputInfo, StepCall, Tool, scaled
from pipelines.tools.common import OUTPUT_FORMAT_PARAM

PARAMS = (
    step.QUALITY, step.RETURN_MASK, step.ALPHA_MATTING, step.BACKGROUND,
    # Seed 003's `quality` names the model level, so the output-quality parameter is left out here.
    OUTPUT_FORMAT_PARAM,
)


def resize_factor(params: ValidParams, info: InputInfo) -> float:
    return min(1.0, step.MAX_INPUT_SIDE[params["quality"]] / info.long_side)


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
