"""A terminal progress bar for installs: bytes, speed, ETA. Plain lines when not on a TTY."""
from __future__ import annotations

import time
from typing import TextIO

from server.bundles.installer import Progress

_WIDTH = 24


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Speedometer:
    """Bytes per second over a sliding estimate, and the ETA that follows from it."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._first = 0

    def reset(self, done: int) -> None:
        self._start, self._first = time.monotonic(), done

    def speed(self, done: int) -> float:
        elapsed = time.monotonic() - self._start
        return (done - self._first) / elapsed if elapsed > 0.2 else 0.0

    def eta(self, done: int, total: int | None) -> float | None:
        rate = self.speed(done)
        return (total - done) / rate if total and rate > 0 else None


def describe(p: Progress, speed: Speedometer) -> str:
    """One line for people: what, how far, how fast, how long still."""
    head = f"{p.file} ({p.index}/{p.count}) {p.stage}"
    if p.stage not in ("downloading", "copying") or not p.done:
        return head
    amount = f"{human_bytes(p.done)}" + (f" of {human_bytes(p.total)}" if p.total else "")
    rate = speed.speed(p.done)
    eta = speed.eta(p.done, p.total)
    tail = f", {human_bytes(rate)}/s" if rate else ""
    tail += f", ETA {eta:.0f}s" if eta is not None else ""
    return f"{head}: {amount}{tail}"


class TerminalProgress:
    def __init__(self, stream: TextIO):
        self.stream = stream
        self.tty = stream.isatty()
        self._current: tuple[str, str] | None = None
        self._speed = Speedometer()
        self._last_draw = 0.0
        self._last_decile = -1

    def __call__(self, p: Progress) -> None:
        if (p.model, p.stage) != self._current:
            if self._current and self.tty:
                self.stream.write("\n")
            self._current, self._last_decile = (p.model, p.stage), -1
            self._speed.reset(p.done)
        fraction = p.done / p.total if p.total else None
        if self.tty:
            self._draw(p, fraction)
        else:
            decile = int(fraction * 10) if fraction is not None else 0
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(describe(p, self._speed) + "\n")
        self.stream.flush()

    def _draw(self, p: Progress, fraction: float | None) -> None:
        now = time.monotonic()
        if now - self._last_draw < 0.1 and fraction not in (None, 1.0):
            return
        self._last_draw = now
        filled = int(_WIDTH * fraction) if fraction is not None else 0
        bar = f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {fraction * 100:5.1f}% " if fraction is not None else ""
        self.stream.write(f"\r{bar}{describe(p, self._speed)}\033[K")

    def finish(self) -> None:
        if self._current and self.tty:
            self.stream.write("\n")
