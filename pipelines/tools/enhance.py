"""enhance (seeds 000 and 002): sharpen and clean, optionally repair damage, restore faces, and
return a background-removed second result."""
from __future__ import annotations

from dataclasses import replace

from pipelines.params import Param, ValidParams
from pipelines.steps import face_enhancement, remove_background
from pipelines.tools import InputInfo, StepCall, Tool, scaled
from pipelines.tools.common import FACE_MODELS, OUTPUT_PARAMS
from pipelines.tools.upscale import MODEL_PARAMS, model_ids

PARAMS = (
    Param("mode", "string", "enhance", "enhance: clean photos; restore: also repair scratches, tears and "
          "fold lines, leaving faces untouched.", choices=("enhance", "restore")),
    Param("enhance", "boolean", True, "Run the enhancement itself (false: only the other requested steps)."),
    Param("scale", "string", "auto", "auto: long side <= 512 -> 4x, <= 1024 -> 2x, else 1x.",
          choices=("auto", "1", "2", "4")),
    Param("type", "string", "clean", "face: also restore faces (needs the photo-restoration bundle).",
          choices=("clean", "face")),
    *MODEL_PARAMS,
    replace(face_enhancement.FIDELITY, description="With type=face: higher keeps more of the original face."),
    Param("remove_bg", "boolean", False, "Also return a background-removed PNG (a second result)."),
    replace(remove_background.QUALITY, name="remove_bg_quality", description="Background removal quality."),
) + OUTPUT_PARAMS


def auto_scale(info: InputInfo) -> int:
    """Seed 002's rule, which also keeps seed 000's promise that small inputs come back usable."""
    return 4 if info.long_side <= 512 else 2 if info.long_side <= 1024 else 1


def factor(params: ValidParams, info: InputInfo) -> int:
    if not params["enhance"]:
        return 1
    return auto_scale(info) if params["scale"] == "auto" else int(params["scale"])


def plan(params: ValidParams, info: InputInfo) -> list[StepCall]:
    calls = []
    if params["mode"] == "restore":
        calls.append(StepCall("scratch_removal", {"protectFaces": True}, explicit=True))
    if params["enhance"]:
        calls.append(StepCall("upscale", {"model": params["model"], "outscale": factor(params, info),
                                          "tileSize": None, "denoiseStrength": params["denoiseStrength"],
                                          "oversampling": params["oversampling"],
                                          "keepMonochrome": True},
                              explicit=True, models=model_ids(params["model"])))
    if params["type"] == "face":
        calls.append(StepCall("face_enhancement", {"fidelity": params["fidelity"], "onlyCenterFace": False,
                                                   "upscale": 1}, models=FACE_MODELS))
    if params["remove_bg"]:
        calls.append(StepCall("remove_background", {"quality": params["remove_bg_quality"], "asExtra": True,
                                                    "returnMask": False, "alphaMatting": False,
                                                    "background": None}, explicit=True))
    return calls


TOOL = Tool(
    name="enhance",
    summary="Enhance photos (sharpen, denoise, JPEG and banding cleanup, upscale); restore mode also "
            "repairs damage; optionally restore faces and remove the background.",
    params=PARAMS,
    plan=plan,
    output_suffix="enhanced",
    result_type="enhanced",
    result_defaults={"facesEnhanced": 0},
    output_size=lambda params, info: scaled(info, factor(params, info)),
)
