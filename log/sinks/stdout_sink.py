"""Log rows to stdout as Cloud Logging structured JSON lines (the "stdout" sink, LOG_SINKS).

On Cloud Run, stdout IS the log shipper: each line becomes a LogEntry (see log/core/cloud_logging.py
for the format). A batch is encoded, then written and flushed in a worker thread, so a slow
reader of the pipe never blocks the event loop, only this sink's lane of the fan-out.

Bytes go to the stream's binary buffer in one write: Python's logging writes whole lines to the
same buffer, so lines never interleave within a process. Several worker processes
(WEB_CONCURRENCY > 1) share one stdout pipe, where a write longer than PIPE_BUF may interleave
with another process's; `lock_path` names a file whose flock serialises the workers' writes.
"""

from __future__ import annotations

import fcntl
import io
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import anyio.to_thread

from log.core.cloud_logging import encode_rows
from log.core.rows import TABLES, LogRow
from log.sinks.base import SinkError, WriteResult


class StdoutSink:
    name = "stdout"

    def __init__(
        self,
        stream: IO[str] | IO[bytes] | None = None,
        *,
        project: str | None = None,
        lock_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._stream = stream  # None: sys.stdout as it is at write time (it may be replaced)
        self.project = project or None
        self.lock_path = Path(lock_path) if lock_path is not None else None
        self._lock = threading.Lock()
        self.lines_written = 0

    async def open(self) -> None:
        if self.lock_path is not None:
            try:
                self.lock_path.parent.mkdir(parents=True, exist_ok=True)
                self.lock_path.touch(exist_ok=True)
            except OSError as exc:
                raise SinkError(f"stdout: cannot create lock file {self.lock_path}: {exc}", retryable=True) from exc

    async def write(self, table: str, rows: Sequence[LogRow]) -> WriteResult:
        if table not in TABLES:
            raise SinkError(f"unknown table {table!r}", retryable=False)
        data = encode_rows(rows, project=self.project)
        try:
            await anyio.to_thread.run_sync(self._write_sync, data)
        except (OSError, ValueError) as exc:  # ValueError: write to a closed file
            raise SinkError(f"stdout: {exc}", retryable=True) from exc
        self.lines_written += len(rows)
        return WriteResult(inserted=len(rows))

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._flush_sync)

    def stats(self) -> dict[str, int]:
        return {"lines_written": self.lines_written}

    # -- blocking parts, run in a worker thread ------------------------------------------------

    def _target(self) -> IO[str] | IO[bytes]:
        return self._stream if self._stream is not None else sys.stdout

    def _write_sync(self, data: bytes) -> None:
        stream = self._target()
        with self._lock:
            if self.lock_path is None:
                _write_all(stream, data)
                return
            with self.lock_path.open("rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    _write_all(stream, data)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def _flush_sync(self) -> None:
        stream = self._target()
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _write_all(stream: IO[str] | IO[bytes], data: bytes) -> None:
    binary = getattr(stream, "buffer", None)
    if binary is not None:
        stream.flush()  # text still pending in the text layer goes first, in order
        binary.write(data)
        binary.flush()
    elif isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
        stream.write(data)
        stream.flush()
    else:
        stream.write(data.decode("utf-8"))  # type: ignore[arg-type]
        stream.flush()
