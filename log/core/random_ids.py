"""Trace ids for requests that arrive without one: time-ordered UUID text (RFC 9562 version 7),
cheaply, with one getrandom() call per 128 ids.

Version 7: the first 48 bits are the Unix time in milliseconds, the other 74 (of 122 free bits)
random. New ids therefore sort by time, so the log database's `trace_id` index grows at its end:
a batch of rows dirties a few index pages instead of about one page per row, which made a
random (version 4) id the most expensive part of writing a row (BENCHMARKS.md, "Time-ordered
trace ids"). The random part is as unguessable as it needs to be (74 bits per millisecond); a
trace id grants nothing by itself (the explorer is for admins, an import's progress is bound to
its owner). Ids a client sends (X-Trace-ID, traceparent) are kept as they are, whatever version.

uuid.uuid4() costs a system call and a UUID object per id, and every request needs an id. Here
4 KiB from os.urandom (the same CSPRNG) are hex-encoded in one go and cut into ids. A forked
child starts with an empty pool, so parent and child never hand out the same ids.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

_POOL_BYTES = 4096
_HEX_PER_ID = 32
# RFC 9562 variant: the top two bits of the variant octet are 10, so its hex digit is one of 8, 9, a, b.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _unix_ms() -> int:
    return time.time_ns() // 1_000_000


class UuidPool:
    """Version 7 UUID text: `clock()` (Unix milliseconds) in the first 12 hex digits, the rest
    from a pool of random bytes."""

    def __init__(self, pool_bytes: int = _POOL_BYTES, clock: Callable[[], int] = _unix_ms) -> None:
        if pool_bytes < 16 or pool_bytes % 16:
            raise ValueError("pool_bytes must be a positive multiple of 16")
        self.pool_bytes = pool_bytes
        self.clock = clock
        self._hex = ""
        self._offsets: Iterator[int] = iter(())
        self._stamp: tuple[int, str] = (-1, "")  # (ms, its text "tttttttt-tttt-7"): one tuple, swapped whole
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._hex, self._offsets = "", iter(())

    def __call__(self) -> str:
        # next() on a shared iterator is atomic under the GIL: two threads never get one offset.
        hexes, offsets = self._hex, self._offsets
        i = next(offsets, None)
        if i is None:
            hexes = os.urandom(self.pool_bytes).hex()
            offsets = iter(range(_HEX_PER_ID, len(hexes), _HEX_PER_ID))
            self._hex, self._offsets, i = hexes, offsets, 0
        h = hexes[i : i + _HEX_PER_ID]
        ms = self.clock()
        last, stamp = self._stamp
        if ms != last:  # a few requests share a millisecond under load: format it once
            t = "%012x" % ms
            stamp = f"{t[:8]}-{t[8:]}-7"
            self._stamp = (ms, stamp)
        return f"{stamp}{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


new_trace_id = UuidPool()
