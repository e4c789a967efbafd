"""Random (version 4) UUID text for trace ids, cheaply: one getrandom() call per 128 ids.

uuid.uuid4() costs a system call and a UUID object per id, and every request needs an id. Here
4 KiB from os.urandom (the same CSPRNG) are hex-encoded in one go and cut into ids. A forked child starts with an empty pool, so parent and
child never hand out the same ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

_POOL_BYTES = 4096
_HEX_PER_ID = 32
# RFC 4122 variant: the top two bits of clock_seq_hi are 10, so its hex digit is one of 8, 9, a, b.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class UuidPool:
    def __init__(self, pool_bytes: int = _POOL_BYTES) -> None:
        if pool_bytes < 16 or pool_bytes % 16:
            raise ValueError("pool_bytes must be a positive multiple of 16")
        self.pool_bytes = pool_bytes
        self._hex = ""
        self._offsets: Iterator[int] = iter(())
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
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


uuid4_text = UuidPool()
