"""Places in the job queue, held from the moment a submission is accepted for reading.

The queue limit is checked before the slow part of a submission (reading the upload, probing
it); without a held place, concurrent uploads that all passed the check would together overshoot
the limit once they become jobs. A place is taken in one step (the event loop runs one handler at
a time) and given back when the submission ends, failed or queued.
"""
from __future__ import annotations

import asyncio
from typing import Callable


class QueuePlaces:
    def __init__(self, limit: int, queued: Callable[[], int]):
        self.limit = limit
        self._queued = queued  # jobs waiting in the queue now
        self._held = 0  # submissions being read that will become queued jobs
        self._none_held = asyncio.Event()
        self._none_held.set()

    def take(self) -> "Place | None":
        """A place in the queue, or None when queued jobs and held places fill it."""
        if self._queued() + self._held >= self.limit:
            return None
        self._held += 1
        self._none_held.clear()
        return Place(self)

    async def all_given_back(self) -> None:
        """Until no submission is being read any more (shutdown answers them before it closes)."""
        await self._none_held.wait()

    @property
    def held(self) -> int:
        return self._held

    def _give_back(self) -> None:
        self._held -= 1
        if self._held == 0:
            self._none_held.set()


class Place:
    def __init__(self, places: QueuePlaces):
        self._places: QueuePlaces | None = places

    def release(self) -> None:
        """Give the place back (idempotent): the submission failed, or its job is now queued."""
        if self._places is not None:
            self._places._give_back()
            self._places = None
