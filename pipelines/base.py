"""The contract every pipeline step follows.

A step is one module exposing ``STEP = Step(...)``. It declares its parameters as
:class:`~pipelines.params.Param` specs; the runner validates every planned call against them once
(:meth:`Step.checked`), so ``run`` receives the image, complete and valid parameters (defaults
filled in) and a :class:`StepContext`, and returns a :class:`StepOutcome`. Steps know nothing of
HTTP, file paths or globals: progress, cancellation, the device and the models all arrive
through the context.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from pipelines.params import Param, ParamError, validate


class PipelineError(Exception):
    """A failure with a stable, machine-readable code and a sentence for people."""

    code = "PIPELINE_ERROR"

    def __init__(self, message: str, *, code: str | None = None, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = dict(details or {})


class Cancelled(PipelineError):
    """Raised at a step boundary (a tile, a band, a face) once cancellation was requested."""

    code = "CANCELLED"


class ModelUnavailable(PipelineError):
    """A model's bundle is missing or broken; carries the bundle name for the error payload."""

    code = "BUNDLE_NOT_INSTALLED"


class InvalidStepParams(PipelineError):
    """A planned step call its step's spec refuses: a bug in the tool that planned it, since the
    caller's own parameters were validated against the tool's spec before the job was queued."""

    code = "INVALID_PARAMS"


@dataclass(frozen=True)
class Picture:
    """A decoded image: linear-in-file (display-referred) RGB floats in [0, 1], plus extras.

    ``rgb`` is float32 HxWx3. ``alpha`` is float32 HxW or None. ``bit_depth`` is 8 or 16 and tells
    the encoder what precision the source had.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def with_rgb(self, rgb: np.ndarray) -> "Picture":
        return replace(self, rgb=rgb)


def scaled_size(width: int, height: int, factor: float) -> tuple[int, int]:
    """(width, height) times ``factor``, rounded, at least 1 px: the one rounding that a tool's
    promised output size and the step producing it must share."""
    return max(1, round(width * factor)), max(1, round(height * factor))


class ModelProvider(Protocol):
    """Gives steps loaded models by id; loads each once per worker and keeps it warm. A loader
    decides a model's precision when it loads it (see :mod:`pipelines.models.loaders`)."""

    def get(self, model_id: str) -> Any: ...


def _packaged_models() -> ModelProvider:
    from pipelines.models.loaders import PackagedModels

    return PackagedModels()


ProgressFn = Callable[[float, str], None]


@dataclass
class StepContext:
    """What a running step may use besides its image and parameters."""

    report: ProgressFn
    is_cancelled: Callable[[], bool]
    device: str = "cpu"
    # The worker's models. By default only those that ship in the package (the damage detector),
    # loaded on the CPU; None: no models at all.
    models: ModelProvider | None = field(default_factory=_packaged_models)
    # Pixels the caller asked to repair (restore-photo's ``mask`` upload): bool HxW at the size of
    # the image the step receives, or None.
    user_mask: np.ndarray | None = None

    def progress(self, fraction: float, stage: str) -> None:
        """Report progress within this step (0..1) with a stage text for people."""
        self.report(min(max(fraction, 0.0), 1.0), stage)

    def check_cancelled(self) -> None:
        if self.is_cancelled():
            raise Cancelled("The job was cancelled.")

    def model(self, model_id: str, bundle: str | None = None) -> Any:
        """The loaded model ``model_id``. The provider raises ModelUnavailable (with the bundle and
        its install command) when it lacks it; without a provider the step's ``bundle`` is named."""
        if self.models is None:
            wanted = f"install the {bundle} bundle" if bundle else f"the model '{model_id}' is unavailable"
            raise ModelUnavailable(f"No models are available to this worker: {wanted}.",
                                   details={"bundle": bundle, "model": model_id} if bundle else {"model": model_id})
        return self.models.get(model_id)


@dataclass(frozen=True)
class StepOutcome:
    """A step's result: the new image and what it measured.

    ``skipped`` is a reason when the step decided not to change anything (for example denoise on
    a clean photo); the image is then returned unchanged. ``extras`` are additional results by
    result type (e.g. ``background_removed`` next to the enhanced image); they are written as PNG.
    """

    image: Picture
    measurements: Mapping[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    extras: Mapping[str, Picture] = field(default_factory=dict)
    # The pixels this step repaired (bool HxW, the input's size); the runner writes it as
    # damage-mask.png, white = repaired.
    damage_mask: np.ndarray | None = None


StepFn = Callable[[Picture, Mapping[str, Any], StepContext], StepOutcome]


@dataclass(frozen=True)
class Step:
    name: str
    stage: str
    run: StepFn
    params: tuple[Param, ...] = ()
    bundle: str | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"step {self.name}: duplicate parameter names {sorted(names)}")

    def checked(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """``raw`` (a planned call's parameters) validated against this step's spec, with every
        default filled in: what ``run`` receives. Unknown or invalid values raise InvalidStepParams."""
        try:
            return dict(validate(self.params, raw).values)
        except ParamError as exc:
            raise InvalidStepParams(f"The step '{self.name}' was planned with invalid parameters: {exc}.",
                                    details={"step": self.name, "fields": exc.problems}) from None
