"""Figures for ``bench/results.json``: each benchmark calls :func:`record` next to the line it
prints. ``bench/run_all.py`` sets ``RESTORA_BENCH_RESULTS`` to a file the scripts append to and
writes the list when all have run; a script run on its own records nothing.

A speed-up against a reference implementation has unit ``"x"`` (above 1: Restora is faster) and
names the reference in ``baseline``.
"""
from __future__ import annotations

import json
import os

ENV = "RESTORA_BENCH_RESULTS"


def record(name: str, value: float, unit: str, baseline: str | None = None) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    entry = {"name": name, "value": round(float(value), 4), "unit": unit, "baseline": baseline}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")
