"""face-enhance: GFPGAN face restoration with fidelity control."""
from __future__ import annotations

from pipelines.params import Param, ValidParams
from pipelines.tools import InputInfo, StepCall, Tool
from pipelines.tools.common import FACE_MODELS, OUTPUT_PARAMS
from pipelines.tools.upscale import scaled

PARAMS = (
    Param("fidelity", "number", 0.7, "Higher keeps more of the original face; lower restores more strongly.", 0, 1),
    Param("onlyCenterFace", "boolean", False, "Restore only the face nearest the centre."),
    Param("upscale", "integer", 1, "Upscale the whole photo by this factor.", choices=(1, 2)),
) + OUTPUT_PARAMS


def plan(params: ValidParams, info: InputInfo) -> list[StepCall]:
    return [StepCall("face_enhancement", {"fidelity": params["fidelity"], "onlyCenterFace": params["onlyCenterFace"],
                                          "upscale": params["upscale"]}, explicit=True, models=FACE_MODELS)]


TOOL = Tool(
    name="face-enhance",
    summary="Detect faces, restore them with GFPGAN v1.4 and blend them back by fidelity.",
    params=PARAMS,
    plan=plan,
    output_suffix="faces",
    result_type="face_enhanced",
    result_defaults={"facesEnhanced": 0},
    output_size=lambda params, info: scaled(info, params["upscale"]),
)
