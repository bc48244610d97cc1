"""face-enhance: GFPGAN face restoration with fidelity control."""
from __future__ import annotations

from pipelines.params import ValidParams
from pipelines.steps.face_enhancement import PARAMS as STEP_PARAMS
from pipelines.tools import InputInfo, StepCall, Tool, scaled
from pipelines.tools.common import FACE_MODELS, OUTPUT_PARAMS

PARAMS = STEP_PARAMS + OUTPUT_PARAMS


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
