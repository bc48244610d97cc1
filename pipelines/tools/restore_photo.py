"""restore-photo (seed 001): scratch repair, face enhancement, denoise, optional colorization."""
from __future__ import annotations

from dataclasses import replace

from pipelines.params import Param, ValidParams
from pipelines.steps import colorize, denoise, face_enhancement, scratch_removal
from pipelines.tools import InputInfo, StepCall, Tool
from pipelines.tools.common import COLOR_MODELS, FACE_MODELS, OUTPUT_PARAMS

PARAMS = (
    Param("scratchRemoval", "boolean", True, "Remove scratches, cracks and fold lines."),
    replace(scratch_removal.DETECTOR, name="damageDetector"),
    Param("faceEnhancement", "boolean", True, "Enhance faces (needs the photo-restoration bundle)."),
    replace(face_enhancement.FIDELITY, description="Face fidelity: higher keeps more of the original face."),
    Param("denoise", "boolean", True, "Reduce noise and grain when the photo has any."),
    replace(denoise.STRENGTH, name="denoiseStrength"),
    Param("colorize", "boolean", False, "Colorize a black-and-white or toned photo (needs the colorization bundle)."),
    replace(colorize.STRENGTH, name="colorizeStrength", description="Colour intensity."),
) + OUTPUT_PARAMS


def plan(params: ValidParams, info: InputInfo) -> list[StepCall]:
    # Order from the contract: scratch repair, faces, denoise, then colorize last.
    wanted = [
        ("scratchRemoval", StepCall("scratch_removal", {"detect": params["scratchRemoval"],
                                                          "detector": params["damageDetector"]})),
        ("faceEnhancement", StepCall("face_enhancement", {"fidelity": params["fidelity"]}, models=FACE_MODELS)),
        ("denoise", StepCall("denoise", {"strength": params["denoiseStrength"]})),
        ("colorize", StepCall("colorize", {"strength": params["colorizeStrength"]}, models=COLOR_MODELS)),
    ]
    # A user mask is repaired by the scratch step: with detection, or (scratchRemoval off) instead of it.
    runs = {flag: bool(params[flag]) for flag, _ in wanted}
    runs["scratchRemoval"] = runs["scratchRemoval"] or info.has_mask
    return [
        StepCall(call.step, call.params, explicit=flag in params.explicit, models=call.models)
        for flag, call in wanted
        if runs[flag]
    ]


TOOL = Tool(
    name="restore-photo",
    summary="Fix scratches, tears and damage on old photos; enhance faces; denoise; optionally colorize.",
    params=PARAMS,
    plan=plan,
    output_suffix="restored",
    result_type="restored",
    result_defaults={"scratchCoverage": None, "facesEnhanced": 0, "colorized": False, "damageMaskUrl": None},
    accepts_mask=True,
)
