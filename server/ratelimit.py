"""Per-key (or per-address when auth is off) request limits over a sliding window."""
from __future__ import annotations

import math
import time
from collections import deque


class SlidingWindow:
    """At most ``limit`` hits per ``window_s`` for each identity; memory is one deque per identity."""

    def __init__(self, limit: int, window_s: float = 3600.0, clock=time.monotonic):
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._hits: dict[str, deque[float]] = {}

    def hit(self, identity: str) -> float | None:
        """Record a hit; None when allowed, else the seconds until the next hit would be allowed."""
        now = self._clock()
        hits = self._hits.setdefault(identity, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(1.0, math.ceil(hits[0] + self.window_s - now))
        hits.append(now)
        return None
