"""The interleaved timing loop the benchmarks share (imported as ``_timing``: scripts run as
``python bench/x.py``, which puts bench/ on sys.path)."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def time_alternately(runners: dict[str, Callable[[], Any]], repeats: int,
                     warm_up: bool = True) -> dict[str, list[float]]:
    """Seconds per run for each runner, interleaved so background load hits all of them alike.
    With ``warm_up``, each runs once untimed first (first calls pay for allocation and kernel setup)."""
    timings: dict[str, list[float]] = {name: [] for name in runners}
    if warm_up:
        for run in runners.values():
            run()
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    return timings


def median_seconds(runners: dict[str, Callable[[], Any]], repeats: int, warm_up: bool = True) -> dict[str, float]:
    """The median of :func:`time_alternately`'s seconds for each runner."""
    return {name: statistics.median(values) for name, values in time_alternately(runners, repeats, warm_up).items()}
