"""The imports running (or just finished) in this process: their progress and rejected rows.

The upload request updates its run as it goes and the progress polls read it, so the bar
does not depend on which log sinks are configured. Each run belongs to the user who started
it: another user asking for it gets nothing (the handler answers 404).

In-process memory, bounded: finished runs are kept for RETAIN_S (so the last poll and the
rejected-rows download find them), at most MAX_RUNS runs and MAX_REJECTED_BYTES of rejected
rows CSV in all, oldest dropped first. With several worker processes or instances, a poll or
a download that lands on another process than the import's finds nothing (docs/deploy.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

RETAIN_S = 30 * 60
MAX_RUNS = 256
MAX_REJECTED_BYTES = 64 * 1024 * 1024


class ImportRun:
    """One import's state. Mutated by the import as it moves through its steps."""

    __slots__ = ("owner", "step", "status", "done", "total", "finished_at", "rejected_csv")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.step: str | None = None  # None: the upload is still being received
        self.status = "START"  # the log vocabulary: START | IN_PROGRESS | SUCCESS | FAILED
        self.done = 0
        self.total = 0
        self.finished_at: float | None = None
        self.rejected_csv: bytes | None = None

    def begin(self, step: str) -> None:
        self.step, self.status, self.done, self.total = step, "START", 0, 0

    def progress(self, done: int, total: int) -> None:
        self.status, self.done, self.total = "IN_PROGRESS", done, total

    def end(self, ok: bool) -> None:
        self.status = "SUCCESS" if ok else "FAILED"


class ImportRuns:
    def __init__(self, *, clock: Callable[[], float]) -> None:
        self.clock = clock
        # (trace id, owner) → run, oldest first.
        self.runs: OrderedDict[tuple[str, str], ImportRun] = OrderedDict()

    def start(self, trace_id: str, owner: str) -> ImportRun:
        run = ImportRun(owner)
        self.runs.pop((trace_id, owner), None)
        self.runs[(trace_id, owner)] = run
        self._evict()
        return run

    def finish(self, run: ImportRun, rejected_csv: bytes | None = None) -> None:
        run.finished_at = self.clock()
        run.rejected_csv = rejected_csv
        self._evict()

    def find(self, trace_id: str, owner: str) -> ImportRun | None:
        return self.runs.get((trace_id, owner))

    def owned_by_another(self, trace_id: str, owner: str) -> bool:
        """True when this process knows the trace as someone else's import (and not as theirs)."""
        return (trace_id, owner) not in self.runs and any(t == trace_id for t, _ in self.runs)

    def _evict(self) -> None:
        now = self.clock()
        for key, run in list(self.runs.items()):
            if run.finished_at is not None and now - run.finished_at > RETAIN_S:
                del self.runs[key]
        while len(self.runs) > MAX_RUNS:
            self.runs.popitem(last=False)
        # Oldest first, drop the downloads (the run's progress stays) until the total fits.
        total = sum(len(r.rejected_csv or b"") for r in self.runs.values())
        for run in self.runs.values():
            if total <= MAX_REJECTED_BYTES:
                break
            if run.rejected_csv:
                total -= len(run.rejected_csv)
                run.rejected_csv = None
