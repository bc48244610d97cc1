"""Declared, validated tool parameters.

Every tool declares its parameters as :class:`Param` entries. Requests are validated against the
declaration: unknown fields are refused, values are coerced from form strings where that is
unambiguous, ranges and choices are checked, and *every* problem is reported at once. The same
declaration produces the JSON schema served at ``GET /api/v1/tools``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ParamError(ValueError):
    """One or more parameters were invalid; ``problems`` lists ``{field, message}`` for each."""

    def __init__(self, problems: list[dict[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "boolean" | "number" | "integer" | "string" | "boxes"
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    pattern: str | None = None  # for strings: a regular expression the whole value must match

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": _SCHEMA_TYPES.get(self.kind, self.kind), "description": self.description}
        if self.default is not None:
            out["default"] = self.default
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.pattern is not None:
            out["pattern"] = f"^{self.pattern}$"
        return out

    def coerce(self, raw: Any) -> Any:
        """Return the typed value or raise ValueError with a sentence for people."""
        value = _COERCERS[self.kind](raw)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(map(str, self.choices))}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ValueError(f"must match {self.pattern}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self.maximum:g}")
        return value


def _as_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError("must be true or false")


def _as_number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("must be a number")
    try:
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        raise ValueError("must be a number") from None
    except OverflowError:  # a JSON integer of hundreds of digits: past any float
        raise ValueError("is too large") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _as_integer(raw: Any) -> int:
    value = _as_number(raw)
    if value != int(value):
        raise ValueError("must be a whole number")
    return int(value)


def _as_string(raw: Any) -> str:
    # Whole numbers are accepted where a choice is spelled as digits (enhance's scale "2").
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    if not isinstance(raw, str):
        raise ValueError("must be a string")
    return raw.strip()


def _as_boxes(raw: Any) -> tuple[tuple[float, float, float, float], ...]:
    """Pixel boxes [x0, y0, x1, y1]: a step's own input (the scratch step's protected regions)."""
    if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple)):
        raise ValueError("must be a list of [x0, y0, x1, y1] boxes")
    boxes = []
    for box in raw:
        if isinstance(box, (str, bytes)) or not isinstance(box, (list, tuple)) or len(box) != 4:
            raise ValueError("must be a list of [x0, y0, x1, y1] boxes")
        x0, y0, x1, y1 = (_as_number(value) for value in box)
        boxes.append((x0, y0, x1, y1))
    return tuple(boxes)


_COERCERS = {"boolean": _as_bool, "number": _as_number, "integer": _as_integer, "string": _as_string,
             "boxes": _as_boxes}
_SCHEMA_TYPES = {"boxes": "array"}


@dataclass(frozen=True)
class ValidParams:
    """Validated values (defaults filled in) and the names the caller set explicitly."""

    values: Mapping[str, Any]
    explicit: frozenset[str]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def validate(spec: Sequence[Param], raw: Mapping[str, Any]) -> ValidParams:
    by_name = {p.name: p for p in spec}
    problems = [{"field": k, "message": "is not a known parameter"} for k in raw if k not in by_name]
    values: dict[str, Any] = {}
    for param in spec:
        if param.name not in raw or raw[param.name] is None:
            values[param.name] = param.default
            continue
        try:
            values[param.name] = param.coerce(raw[param.name])
        except ValueError as exc:
            problems.append({"field": param.name, "message": str(exc)})
    if problems:
        raise ParamError(problems)
    explicit = frozenset(k for k in raw if raw[k] is not None)
    return ValidParams(values=values, explicit=explicit)


def schema(spec: Sequence[Param]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {p.name: p.schema() for p in spec},
    }
