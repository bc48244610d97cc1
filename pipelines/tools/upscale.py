"""upscale: Real-ESRGAN super-resolution by 2, 4 or any factor up to 4."""
from __future__ import annotations

from dataclasses import replace

from pipelines.params import Param, ParamError, ValidParams
from pipelines.steps import upscale as step
from pipelines.tools import InputInfo, StepCall, Tool, scaled
from pipelines.tools.common import OUTPUT_PARAMS

MODELS = step.MODEL.choices
MODEL_PARAMS = (step.MODEL, step.DENOISE_STRENGTH, step.OVERSAMPLING)
MIN_API_TILE = 64  # smaller tiles only cost time; the step takes down to its MIN_TILE for tiny inputs

PARAMS = (
    Param("scale", "integer", 4, "Upscale factor.", choices=(2, 4)),
    replace(step.OUTSCALE, default=None, description="Any factor up to 4 (overrides scale)."),
    *MODEL_PARAMS,
    replace(step.TILE_SIZE, minimum=MIN_API_TILE),
) + OUTPUT_PARAMS


def model_ids(model: str) -> tuple[str, ...]:
    """The files a model choice needs: the general model blends with its -wdn twin."""
    return (model, "realesr-general-wdn-x4v3") if model == "realesr-general-x4v3" else (model,)


def outscale(params: ValidParams) -> float:
    if params["outscale"] is not None and "scale" in params.explicit and params["outscale"] != params["scale"]:
        raise ParamError([{"field": "outscale", "message": "give either scale or outscale, not both"}])
    return float(params["outscale"] if params["outscale"] is not None else params["scale"])


def plan(params: ValidParams, info: InputInfo) -> list[StepCall]:
    step_params = {"model": params["model"], "outscale": outscale(params), "tileSize": params["tileSize"],
                   "denoiseStrength": params["denoiseStrength"], "oversampling": params["oversampling"]}
    return [StepCall("upscale", step_params, explicit=True, models=model_ids(params["model"]))]


TOOL = Tool(
    name="upscale",
    summary="Upscale with Real-ESRGAN (2x, 4x or any factor up to 4), tiled, on CPU or GPU.",
    params=PARAMS,
    plan=plan,
    output_suffix="upscaled",
    result_type="upscaled",
    output_size=lambda params, info: scaled(info, outscale(params)),
)
