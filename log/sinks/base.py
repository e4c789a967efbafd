"""What a log sink is: a named thing that durably writes a batch of rows of one table.

The fan-out (log/sinks/fanout.py) owns queues, batching, retries and pending rows; a sink only writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from log.core.rows import LogRow


class WriteResult(msgspec.Struct, frozen=True):
    inserted: int  # rows that were new
    already_present: int = 0  # same id, same content: a replay, harmless
    conflicts: int = 0  # same id, DIFFERENT content: counted and reported, never silently dropped


class SinkError(Exception):
    """A batch was not written. retryable=False for errors a retry cannot fix (401, 403, bad SQL)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Sink(Protocol):
    name: str

    async def open(self) -> None:
        """Prepare (create files/tables). May raise SinkError; the app keeps serving."""

    async def write(self, table: str, rows: Sequence[LogRow]) -> WriteResult:
        """Write all rows of one table atomically (all or nothing), or raise SinkError."""

    async def close(self) -> None: ...
