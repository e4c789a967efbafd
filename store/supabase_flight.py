"""Single-flight with a short memory: concurrent callers asking for the same key share one
run of the work, and callers arriving shortly after it finished get the same result.

Used for refreshing Supabase sessions: refresh tokens rotate, so two requests of one user that
both refresh with the same token would race, and the loser's token reuse can get the whole
session revoked. One process refreshes once; its result is handed to every request that
arrives with the old token during the next few seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    finished_at: float | None = None


class SingleFlight(Generic[T]):
    def __init__(self, memory_seconds: float, clock: Callable[[], float]) -> None:
        self._memory = memory_seconds
        self._clock = clock
        self._flights: dict[str, _Flight[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def _forget_stale(self, now: float) -> None:
        stale = [key for key, f in self._flights.items()
                 if f.finished_at is not None and now - f.finished_at > self._memory]
        for key in stale:
            del self._flights[key]

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        self._forget_stale(self._clock())
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight(asyncio.ensure_future(work()))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda task, key=key: self._landed(key, task))
        # shield: one caller going away (client disconnect) must not cancel the refresh the
        # other callers are waiting for.
        return await asyncio.shield(flight.task)

    def remembered(self, key: str) -> T | None:
        """The result of a finished, successful run for `key` still in memory, else None."""
        self._forget_stale(self._clock())
        flight = self._flights.get(key)
        if flight is None or flight.finished_at is None:
            return None
        return flight.task.result()

    def _landed(self, key: str, task: asyncio.Task[T]) -> None:
        flight = self._flights.get(key)
        if flight is None or flight.task is not task:
            return
        if task.cancelled() or task.exception() is not None:
            # Failures (service unreachable) are not remembered: the next request tries again.
            del self._flights[key]
        else:
            flight.finished_at = self._clock()

    def clear(self) -> None:
        self._flights.clear()
