"""Turn a tool's validated parameters into the steps a job will run, checking bundles first.

A step that is on by default and lacks its bundle is skipped and reported; a step the caller
asked for explicitly is refused (409) before anything is queued, naming the bundle and how to
install it. A broken bundle answers 503 for its steps while everything else keeps working.
"""
from __future__ import annotations

from typing import Any

from pipelines.base import Step
from pipelines.params import ValidParams
from pipelines.registry import Registry
from pipelines.tools import InputInfo, Tool
from server.bundles.catalog import BundleCatalog, install_command
from server.bundles.store import BROKEN, INSTALLED, INSTALLING
from server.errors import Conflict, ServiceUnavailable


def resolve_plan(tool: Tool, params: ValidParams, info: InputInfo, steps: Registry[Step],
                 bundles: BundleCatalog) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    plan: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for call in tool.plan(params, info):
        step = steps.get(call.step)
        status = bundles.state(step.bundle).status if step.bundle else INSTALLED
        missing = [m for m in call.models if step.bundle and not bundles.has_model(step.bundle, m)]
        if status == INSTALLED and not missing:
            plan.append({"step": call.step, "params": dict(call.params)})
        elif call.explicit:
            raise _refusal(step, status, bundles) if status != INSTALLED else _missing_model(step, missing[0])
        else:
            reason = (f"the {step.bundle} bundle is {status.replace('_', ' ')}" if status != INSTALLED
                      else f"the model {missing[0]} of the {step.bundle} bundle is not installed")
            skipped.append({"step": call.step, "bundle": step.bundle, "reason": reason})
    return plan, skipped


def _missing_model(step: Step, model: str) -> Exception:
    name = step.bundle or ""
    return Conflict(f"'{step.name}' needs the model {model}, which is not installed. Install the whole "
                    f"{name} bundle with `{install_command(name)}`.",
                    code="MODEL_NOT_INSTALLED", bundle=name, model=model, install=install_command(name))


def _refusal(step: Step, status: str, bundles: BundleCatalog) -> Exception:
    name = step.bundle or ""
    size_mb = round(bundles.size(name) / 1e6)
    if status == BROKEN:
        return ServiceUnavailable(
            f"The {name} bundle is broken; run `restora bundles verify {name}` or reinstall it.",
            code="BUNDLE_BROKEN", bundle=name, install=install_command(name))
    verb = "is being installed; try again when it finishes" if status == INSTALLING else "is not installed"
    return Conflict(f"'{step.name}' needs the {name} bundle (about {size_mb} MB), which {verb}. "
                    f"Install it with `{install_command(name)}` or POST /api/v1/bundles/{name}/install.",
                    code="BUNDLE_NOT_INSTALLED", bundle=name, step=step.name, sizeBytes=bundles.size(name),
                    install=install_command(name))
