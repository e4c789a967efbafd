"""Snowflake ids: time-ordered, app-assigned, so the CSV copy and the database share row ids.

Layout of the positive 63-bit int (fits SQLite INTEGER and int64 everywhere):

    (ms since 2025-01-01T00:00:00Z) << 22 | worker_id (10 bits) << 12 | sequence (12 bits)

41 bits of milliseconds last ~69 years (until 2094). Ids from one worker are strictly increasing;
two workers with different worker_id can never collide because the worker bits differ.
Each process needs its own worker_id (0..1023): it leases one from the log database at start
(log/db/lease.py), so no two live processes share one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z in unix ms
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
MAX_TIMESTAMP = (1 << (63 - WORKER_BITS - SEQUENCE_BITS)) - 1
_SPIN_LIMIT = 1_000_000  # clock reads before giving up on the real clock reaching the next ms


class SnowflakeIds:
    """Issue ids for one worker. `now_ms` returns unix time in ms (e.g. lambda: time.time_ns() // 1_000_000).

    Thread-safe: task steps may be logged from worker threads as well as the event loop.
    """

    def __init__(self, worker_id: int, now_ms: Callable[[], int]) -> None:
        if not 0 <= worker_id <= MAX_WORKER:
            raise ValueError(f"worker_id must be in 0..{MAX_WORKER}, got {worker_id}")
        self.worker_id = worker_id
        self._now_ms = now_ms
        self._last = -1  # ms since EPOCH_MS of the last id issued
        self._seq = 0
        self._lock = threading.Lock()
        self._worker_bits = worker_id << SEQUENCE_BITS

    def _elapsed(self) -> int:
        elapsed = self._now_ms() - EPOCH_MS
        if elapsed < 0:
            raise ValueError("clock is before the id epoch (2025-01-01)")
        return elapsed

    def next(self) -> int:
        with self._lock:
            now = self._now_ms() - EPOCH_MS
            if now > self._last:  # a new ms (the usual case: one branch, no helper calls)
                if now > MAX_TIMESTAMP:
                    raise OverflowError("snowflake timestamp exhausted")
                self._last, self._seq = now, 0
                return (now << (WORKER_BITS + SEQUENCE_BITS)) | self._worker_bits
            if now < 0:
                raise ValueError("clock is before the id epoch (2025-01-01)")
            # The same ms, or a clock that went backwards (ignored: never issue a timestamp
            # below the last one): the next sequence number of the last ms.
            ts = self._last
            self._seq += 1
            if self._seq > MAX_SEQUENCE:
                ts = self._next_ms(now)
                self._seq = 0
                if ts > MAX_TIMESTAMP:
                    raise OverflowError("snowflake timestamp exhausted")
                self._last = ts
            return (ts << (WORKER_BITS + SEQUENCE_BITS)) | self._worker_bits | self._seq

    def _next_ms(self, now: int) -> int:
        # 4096 ids used up in this ms. If the clock is current, wait (spin) for it to tick; if it is
        # behind (went backwards) or stuck, borrow the next ms instead of stalling for the gap.
        if now == self._last:
            for _ in range(_SPIN_LIMIT):
                now = self._elapsed()
                if now > self._last:
                    return now
        return self._last + 1


def decode(snowflake: int) -> tuple[int, int, int]:
    """-> (unix ms, worker_id, sequence)."""
    ts = snowflake >> (WORKER_BITS + SEQUENCE_BITS)
    worker = (snowflake >> SEQUENCE_BITS) & MAX_WORKER
    return ts + EPOCH_MS, worker, snowflake & MAX_SEQUENCE
