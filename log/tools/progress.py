"""Plain-text progress for the offline tools: one line per table on stderr, redrawn with \\r."""

from __future__ import annotations

from typing import TextIO

from log.sinks.replay import progress_line


class ProgressBar:
    def __init__(self, verb: str, out: TextIO) -> None:
        self.verb, self.out, self.table = verb, out, None

    def __call__(self, table: str, done: int, total: int) -> None:
        if self.table not in (None, table):
            self.out.write("\n")
        self.table = table
        self.out.write(progress_line(f"{self.verb} {table:<18}", done, total))
        self.out.flush()

    def end(self) -> None:
        if self.table is not None:
            self.out.write("\n")
            self.out.flush()
