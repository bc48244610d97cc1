"""Per-key (or per-address when auth is off) request limits over a sliding window."""
from __future__ import annotations

import math
import time
from collections import deque


class SlidingWindow:
    """At most ``limit`` hits per ``window_s`` for each identity; memory is one deque per identity
    seen within the last window (idle ones are dropped once a window)."""

    def __init__(self, limit: int, window_s: float = 3600.0, clock=time.monotonic):
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._hits: dict[str, deque[float]] = {}
        self._next_sweep = clock() + window_s

    def hit(self, identity: str) -> float | None:
        """Record a hit; None when allowed, else the seconds until the next hit would be allowed."""
        now = self._clock()
        self._forget_idle(now)
        hits = self._hits.setdefault(identity, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(1.0, math.ceil(hits[0] + self.window_s - now))
        hits.append(now)
        return None

    def tracked(self) -> int:
        return len(self._hits)

    def _forget_idle(self, now: float) -> None:
        # With auth off every client address is an identity: without this the dict only grows.
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window_s
        self._hits = {key: hits for key, hits in self._hits.items() if hits and hits[-1] > now - self.window_s}
