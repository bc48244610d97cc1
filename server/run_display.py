"""What ``restora run`` shows while it works: a bar per file in flight and one overall on a terminal,
plain lines otherwise (a log, CI, a pipe); a line per finished file and the summary on stdout.

Progress goes to stderr so that stdout holds only the outcome (one line per file, then the summary).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from restora.client import Event, RestoraError

_BAR = 24


@dataclass
class Outcome:
    source: Path
    outputs: list[Path] = field(default_factory=list)
    error: RestoraError | None = None


@dataclass
class _Live:
    percent: int = 0
    stage: str = "Uploading"


class Display:
    def __init__(self, out: TextIO, err: TextIO, sources: list[Path], tty: bool):
        self.out, self.err, self.tty = out, err, tty
        self._order = {source: n for n, source in enumerate(sources)}
        self.total = len(sources)
        self._live: dict[Path, _Live] = {}
        self._drawn = 0  # lines of the live region now on the terminal
        self.outcomes: list[Outcome] = []
        self._started = time.monotonic()

    def started(self, source: Path) -> None:
        self._live[source] = _Live()
        self._changed(source, announce=True)

    def event(self, source: Path, event: Event) -> None:
        live = self._live.get(source)
        if live is None or event.terminal:
            return
        stage = str(event.data.get("stage") or event.data.get("phase") or "")
        announce = stage != live.stage
        live.percent, live.stage = int(event.data.get("percent") or 0), stage
        self._changed(source, announce)

    def stage(self, source: Path, stage: str) -> None:
        """A step of the command's own (downloading the result)."""
        if (live := self._live.get(source)) is not None and live.stage != stage:
            live.stage = stage
            self._changed(source, announce=True)

    def finished(self, outcome: Outcome) -> None:
        self._live.pop(outcome.source, None)
        self.outcomes.append(outcome)
        self._clear()
        self.out.write(_outcome_line(outcome) + "\n")
        self.out.flush()
        self._draw()

    def _changed(self, source: Path, announce: bool) -> None:
        if self.tty:
            self._clear()
            self._draw()
        elif announce:
            live = self._live[source]
            self.err.write(f"[{len(self.outcomes) + 1}/{self.total}] {source}: {live.percent}% {live.stage}\n")
            self.err.flush()

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.err.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the region's first line, erase below
            self.err.flush()  # before stdout writes there
            self._drawn = 0

    def _draw(self) -> None:
        if not self.tty:
            return
        columns, rows = self._terminal_size()
        width = max(40, columns - 1)  # a line that wrapped would break the redraw's arithmetic
        shown = list(self._live.items())[:max(1, rows - 3)]  # the region must fit on the screen
        lines = [_bar_line(str(source), live.percent, live.stage, width) for source, live in shown]
        if len(shown) < len(self._live):
            lines.append(f"… and {len(self._live) - len(shown)} more in flight"[:width])
        done = len(self.outcomes)
        overall = (done + sum(live.percent for live in self._live.values()) / 100) / max(1, self.total)
        failed = sum(1 for o in self.outcomes if o.error)
        lines.append(_bar_line("overall", int(overall * 100), f"{done}/{self.total} files"
                               + (f", {failed} failed" if failed else ""), width))
        self.err.write("".join(line + "\n" for line in lines))
        self.err.flush()
        self._drawn = len(lines)

    def _terminal_size(self) -> tuple[int, int]:
        """$COLUMNS/$LINES, else stderr's terminal (stdout may be a file), else 80×24."""
        try:
            size = os.get_terminal_size(self.err.fileno())
        except (OSError, ValueError):
            size = os.terminal_size((0, 0))
        return _env_int("COLUMNS") or size.columns or 80, _env_int("LINES") or size.lines or 24

    def summary(self, tool: str) -> None:
        self._clear()
        failures = sorted((o for o in self.outcomes if o.error), key=lambda o: self._order[o.source])
        seconds = time.monotonic() - self._started
        self.out.write(f"{tool}: {len(self.outcomes) - len(failures)} of {self.total} file(s) done, "
                       f"{len(failures)} failed, in {seconds:.1f} s\n")
        for outcome in failures:
            self.out.write(f"  {outcome.source}: {_error_text(outcome.error)}\n")
        self.out.flush()


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else 0


def _bar_line(label: str, percent: int, stage: str, width: int) -> str:
    percent = max(0, min(100, percent))
    filled = _BAR * percent // 100
    label = label if len(label) <= 28 else "…" + label[-27:]
    line = f"{label:<28} [{'#' * filled}{'.' * (_BAR - filled)}] {percent:>3}% {stage}"
    return line[:width]


def _outcome_line(outcome: Outcome) -> str:
    if outcome.error is not None:
        return f"failed  {outcome.source}: {_error_text(outcome.error)}"
    return f"done    {outcome.source} -> {', '.join(map(str, outcome.outputs))}"


def _error_text(error: RestoraError | None) -> str:
    assert error is not None
    status = f" ({error.status})" if error.status else ""
    return f"{error.code}{status}: {error.message}"
