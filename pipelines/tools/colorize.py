"""colorize: DDColor colorization of greyscale and toned (sepia, cyanotype) photos."""
from __future__ import annotations

from pipelines.params import ValidParams
from pipelines.steps.colorize import STRENGTH
from pipelines.tools import InputInfo, StepCall, Tool
from pipelines.tools.common import COLOR_MODELS, OUTPUT_PARAMS

PARAMS = (STRENGTH,) + OUTPUT_PARAMS


def plan(params: ValidParams, info: InputInfo) -> list[StepCall]:
    return [StepCall("colorize", {"strength": params["strength"]}, explicit=True, models=COLOR_MODELS)]


TOOL = Tool(
    name="colorize",
    summary="Colorize black-and-white and toned photos with DDColor at full resolution.",
    params=PARAMS,
    plan=plan,
    output_suffix="colorized",
    result_type="colorized",
    result_defaults={"colorized": False},
)
