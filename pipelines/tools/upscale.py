"""upscale: Real-ESRGAN super-resolution by 2, 4 or any factor up to 4."""
from __future__ import annotations

from pipelines.base import scaled_size
from pipelines.params import Param, ParamError, ValidParams
from pipelines.tools import InputInfo, StepCall, Tool
from pipelines.tools.common import OUTPUT_PARAMS

MODELS = ("realesrgan-x4plus", "realesrgan-x2plus", "realesr-general-x4v3")

MODEL_PARAMS = (
    Param("model", "string", "realesrgan-x4plus", "Real-ESRGAN model.", choices=MODELS),
    Param("denoiseStrength", "number", 50, "realesr-general-x4v3 only: 0 keeps grain (its -wdn twin), "
          "100 removes it.", 0, 100),
)

PARAMS = (
    Param("scale", "integer", 4, "Upscale factor.", choices=(2, 4)),
    Param("outscale", "number", None, "Any factor up to 4 (overrides scale).", 0.25, 4),
    *MODEL_PARAMS,
    Param("tileSize", "integer", None, "Tile size in pixels, context included (default: 256 on CPU).", 64, 2048),
) + OUTPUT_PARAMS


def model_ids(model: str) -> tuple[str, ...]:
    """The files a model choice needs: the general model blends with its -wdn twin."""
    return (model, "realesr-general-wdn-x4v3") if model == "realesr-general-x4v3" else (model,)


def outscale(params: ValidParams) -> float:
    if params["outscale"] is not None and "scale" in params.explicit and params["outscale"] != params["scale"]:
        raise ParamError([{"field": "outscale", "message": "give either scale or outscale, not both"}])
    return float(params["outscale"] if params["outscale"] is not None else params["scale"])


def scaled(info: InputInfo, factor: float) -> tuple[int, int]:
    return scaled_size(info.width, info.height, factor)


def plan(params: ValidParams, info: InputInfo) -> list[StepCall]:
    step_params = {"model": params["model"], "outscale": outscale(params), "tileSize": params["tileSize"],
                   "denoiseStrength": params["denoiseStrength"]}
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
