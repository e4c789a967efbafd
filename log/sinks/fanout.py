"""Fan log rows out to every sink, without ever making a request wait for a sink.

emit(row) is synchronous, O(1) and never raises: it appends the row to one bounded queue per sink
("lane") and at most sets an event. One asyncio task per lane batches rows (batch_size rows, or
whatever is queued once the oldest row is flush_interval old), groups a batch by table and calls
sink.write. Lanes are independent: a slow or failing sink only ever holds up its own lane.

Failures: a retryable SinkError (or any unexpected exception) keeps the batch pending and retries
it with exponential backoff and jitter; a non-retryable one is reported once and blocks the lane
(rows stay queued and counted) until resume(name). Nothing is retried into a different order.

Overload: a lane holds at most max_queue rows. Past that, a row is dropped for that lane only.
The durable sink (name "csv", always first) is the first copy: when a remote lane is full, a row
the CSV lane accepted is counted as deferred_to_csv, not dropped; the lowest deferred id per table
is kept so the sync command can replay from the CSV files, and so CSV rotation (csv_can_delete)
never deletes a file holding rows some remote sink has not acknowledged.

Modes: background (`async with fanout:` or start()/aclose()), or LOG_FLUSH=request: never start
it, await flush_due() at the end of each request, and aclose() at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from log.core.rows import ApiLog, LogRow, TaskProgressLog, table_of
from log.sinks.base import Sink, SinkError

_report_to_log = logging.getLogger("log.fanout").warning


class _Lane:
    def __init__(self, sink: Sink, durable: bool) -> None:
        self.sink, self.durable = sink, durable
        self.queue: deque[LogRow] = deque()
        self.pending: list[tuple[str, list[LogRow]]] = []  # the batch being written, by table
        self.pending_rows = 0
        self.first_at: float | None = None  # clock() when the oldest queued row arrived
        self.event = asyncio.Event()
        self.lock = asyncio.Lock()
        self.opened = False
        self.attempt, self.retry_at = 0, 0.0
        self.blocked: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.min_deferred: dict[str, int] = {}
        self.max_deferred: dict[str, int] = {}
        self.replaying: dict[str, int] = {}  # min ids taken by take_deferred, until finish_replay
        self.c = dict.fromkeys(
            ("written", "already_present", "conflicts", "failed_batches", "dropped", "deferred_to_csv", "unflushed"), 0
        )
        self.last_error: str | None = None
        # Rows ever queued, and rows whose batch was written: a lane is FIFO, so "settled >= a
        # past value of enqueued" means every row queued before then is written (write_mark).
        self.enqueued = self.settled = 0

    def size(self) -> int:
        return len(self.queue) + self.pending_rows


class FanOut:
    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_queue: int = 50_000,
        durable: str = "csv",
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        report: Callable[[str], None] = _report_to_log,
    ) -> None:
        lanes = [_Lane(s, s.name == durable) for s in sinks]
        self._lanes = sorted(lanes, key=lambda lane: not lane.durable)  # durable first: see emit
        self.batch_size, self.flush_interval, self.max_queue = batch_size, flush_interval, max_queue
        self._clock, self._jitter, self._report = clock, jitter, report
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._closing = self._closed = False
        self.rejected_after_close = self.emit_errors = 0

    # -- producer side ---------------------------------------------------------------------------

    def emit(self, row: LogRow) -> None:
        try:
            if self._closed:
                self.rejected_after_close += 1
                return
            if not isinstance(row, (ApiLog, TaskProgressLog)):
                raise TypeError(f"not a log row: {type(row).__name__}")
            in_csv = False
            for lane in self._lanes:
                if lane.size() >= self.max_queue:
                    if in_csv:
                        lane.c["deferred_to_csv"] += 1
                        table = table_of(row)
                        lane.min_deferred[table] = min(lane.min_deferred.get(table, row.id), row.id)
                        lane.max_deferred[table] = max(lane.max_deferred.get(table, row.id), row.id)
                    else:
                        lane.c["dropped"] += 1
                    continue
                lane.queue.append(row)
                lane.enqueued += 1
                in_csv = in_csv or lane.durable
                n = len(lane.queue)
                if n == 1:
                    lane.first_at = self._clock()
                    self._wake(lane)
                elif n == self.batch_size:
                    self._wake(lane)
        except Exception:  # a log call must never break the request that made it
            self.emit_errors += 1

    def emit_many(self, rows: Sequence[LogRow]) -> None:
        """emit() of each row, in order: one extend per lane when every lane has room for all
        of them (the usual case: a batch of freshly built rows); otherwise row by row."""
        if not rows:
            return
        try:
            n = len(rows)
            if (
                self._closed
                or any(lane.size() + n > self.max_queue for lane in self._lanes)
                or not all(row.__class__ is ApiLog or row.__class__ is TaskProgressLog for row in rows)
            ):
                for row in rows:
                    self.emit(row)
                return
            for lane in self._lanes:
                before = len(lane.queue)
                lane.queue.extend(rows)
                lane.enqueued += n
                if before == 0:  # as emit: the first row queued starts the lane's clock and wakes it
                    lane.first_at = self._clock()
                    self._wake(lane)
                elif before < self.batch_size <= before + n:
                    self._wake(lane)
        except Exception:  # a log call must never break the request that made it
            self.emit_errors += 1

    def _wake(self, lane: _Lane) -> None:
        if self._loop is None:
            return
        if threading.get_ident() == self._thread:
            lane.event.set()
        else:  # emitted from a worker thread: asyncio.Event is not thread-safe
            try:
                self._loop.call_soon_threadsafe(lane.event.set)
            except RuntimeError:  # loop already closed
                pass

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop is not None:
            return
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()
        for lane in self._lanes:
            lane.task = asyncio.create_task(self._run(lane), name=f"log-sink-{lane.sink.name}")

    async def __aenter__(self) -> FanOut:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self, deadline: float = 8.0) -> dict[str, Any]:
        """Write every accepted row within `deadline` seconds; what is left is counted unflushed."""
        if self._closed:
            return self.stats()
        await self.start()  # LOG_FLUSH=request mode never started: drain with the same code
        self._closing = True
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        for lane in self._lanes:
            lane.event.set()
        started = time.monotonic()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=deadline)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._closed = True
        for lane in self._lanes:
            left = lane.size()
            if left:
                lane.c["unflushed"] += left
                self._report(f"log sink {lane.sink.name}: {left} rows not written at shutdown ({lane.last_error})")
            try:
                await asyncio.wait_for(lane.sink.close(), max(0.5, deadline - (time.monotonic() - started)))
            except Exception as exc:
                self._report(f"log sink {lane.sink.name}: close failed: {exc!r}")
        return self.stats()

    # -- draining --------------------------------------------------------------------------------

    def _due(self, lane: _Lane, now: float) -> bool:
        if lane.blocked is not None:
            return False
        if lane.pending or not lane.opened:
            return now >= lane.retry_at and (bool(lane.pending) or bool(lane.queue) or not lane.opened)
        if not lane.queue:
            return False
        assert lane.first_at is not None
        return self._closing or len(lane.queue) >= self.batch_size or now - lane.first_at >= self.flush_interval

    def _next_wake(self, lane: _Lane) -> float | None:
        if lane.blocked is not None:
            return None
        if lane.pending or (not lane.opened and lane.queue):
            return lane.retry_at
        if lane.queue and lane.first_at is not None:
            return lane.first_at + self.flush_interval
        return None

    def _drained(self, lane: _Lane) -> bool:
        return lane.size() == 0 or lane.blocked is not None

    async def _run(self, lane: _Lane) -> None:
        while not (self._closing and self._drained(lane)):
            if self._due(lane, self._clock()):
                async with lane.lock:
                    await self._step(lane)
                continue
            wake = self._next_wake(lane)
            lane.event.clear()
            timeout = None if wake is None else max(0.0, wake - self._clock())
            try:
                await asyncio.wait_for(lane.event.wait(), timeout)
            except TimeoutError:
                pass

    async def flush_due(self) -> None:
        """Write due batches now, in the caller's task (LOG_FLUSH=request mode)."""
        for lane in self._lanes:
            while not lane.lock.locked() and self._due(lane, self._clock()):
                async with lane.lock:
                    await self._step(lane)
                if lane.pending or not lane.opened:
                    break  # failed: retried after its backoff, not in this request

    async def _step(self, lane: _Lane) -> None:
        if not lane.opened:
            try:
                await lane.sink.open()
                lane.opened = True
            except Exception as exc:
                self._failed(lane, exc)
                return
            if not self._due(lane, self._clock()):
                return  # opened early (at start); rows go out when a batch is due, not now
        if not lane.pending:
            groups: dict[str, list[LogRow]] = {}
            for _ in range(min(self.batch_size, len(lane.queue))):
                row = lane.queue.popleft()
                groups.setdefault(table_of(row), []).append(row)
            lane.pending = list(groups.items())
            lane.pending_rows = sum(len(rows) for rows in groups.values())
        while lane.pending:
            table, rows = lane.pending[0]
            try:
                result = await lane.sink.write(table, rows)
            except Exception as exc:
                self._failed(lane, exc)
                return
            lane.pending.pop(0)
            lane.pending_rows -= len(rows)
            lane.settled += len(rows)
            lane.attempt = 0
            lane.c["written"] += result.inserted
            lane.c["already_present"] += result.already_present
            if result.conflicts:
                lane.c["conflicts"] += result.conflicts
                self._report(f"log sink {lane.sink.name}: {result.conflicts} {table} ids already held other content")

    def _failed(self, lane: _Lane, exc: Exception) -> None:
        lane.c["failed_batches"] += 1
        lane.last_error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, SinkError) and not exc.retryable:
            lane.blocked = lane.last_error
            self._report(f"log sink {lane.sink.name} stopped (not retryable, rows kept): {lane.last_error}")
            return
        lane.attempt += 1
        if lane.attempt == 1:  # once per failure streak, not per retry
            self._report(f"log sink {lane.sink.name} failing, will retry: {lane.last_error}")
        delay = min(self.backoff_max, self.backoff_base * 2 ** (lane.attempt - 1))
        lane.retry_at = self._clock() + delay * (0.5 + 0.5 * self._jitter())

    # -- control and introspection ---------------------------------------------------------------

    def _lane(self, name: str) -> _Lane:
        return next(lane for lane in self._lanes if lane.sink.name == name)

    # Automatic replay (log/sinks/replay.py AutoReplay). take -> replay from the CSV files -> finish.
    # Rows deferred while a replay runs start a new range, so none is forgotten; the taken range
    # keeps guarding CSV rotation until the replay is finished.

    def replay_ready(self, name: str) -> bool:
        """Deferred rows, and the lane writes again (last write succeeded) with room to spare."""
        lane = self._lane(name)
        return (
            bool(lane.min_deferred) and not lane.replaying and lane.opened and lane.blocked is None
            and lane.attempt == 0 and lane.size() < self.max_queue // 2
        )

    def take_deferred(self, name: str) -> tuple[dict[str, tuple[int, int]], int]:
        """({table: (lowest, highest) deferred id}, a durable-lane mark for durable_reached)."""
        lane = self._lane(name)
        ranges = {t: (lo, lane.max_deferred.get(t, lo)) for t, lo in lane.min_deferred.items()}
        for table, (lo, _) in ranges.items():
            lane.replaying[table] = min(lane.replaying.get(table, lo), lo)
        lane.min_deferred.clear()
        lane.max_deferred.clear()
        return ranges, self.durable_mark()

    def finish_replay(self, name: str, ranges: dict[str, tuple[int, int]], ok: bool) -> None:
        """ok: the ranges are in the sink. Otherwise they are deferred again, for a later try."""
        lane = self._lane(name)
        lane.replaying.clear()
        if not ok:
            for table, (lo, hi) in ranges.items():
                lane.min_deferred[table] = min(lane.min_deferred.get(table, lo), lo)
                lane.max_deferred[table] = max(lane.max_deferred.get(table, hi), hi)

    # The write-ahead record (log/sinks/wal.py) deletes a segment once every sink wrote its rows.

    def emit_to(self, row: LogRow, names: frozenset[str]) -> None:
        """Queue a row for the named lanes only (recovery: a row the CSV files already hold
        still goes to the log database). Dropped, not deferred, when a lane is full."""
        for lane in self._lanes:
            if lane.sink.name not in names:
                continue
            if self._closed or lane.size() >= self.max_queue:
                lane.c["dropped"] += 1
                continue
            lane.queue.append(row)
            lane.enqueued += 1
            if len(lane.queue) == 1:
                lane.first_at = self._clock()
            self._wake(lane)

    def write_mark(self) -> tuple[int, ...]:
        """Per lane, how many rows it has queued so far (see written_up_to)."""
        return tuple(lane.enqueued for lane in self._lanes)

    def written_up_to(self, mark: tuple[int, ...]) -> bool:
        """Has every lane written every row it had queued when `mark` was taken? A remote lane
        stopped for good (not retryable) counts as written: its rows are in the CSV files, where
        `logs sync` replays them from, and the record must not grow without bound meanwhile."""
        return all(
            lane.settled >= m or (lane.blocked is not None and not lane.durable)
            for lane, m in zip(self._lanes, mark)
        )

    def all_written(self) -> bool:
        return all(lane.size() == 0 for lane in self._lanes)

    def durable_mark(self) -> int:
        """How many rows the durable lane will have written once everything accepted so far is."""
        lane = next((lane for lane in self._lanes if lane.durable), None)
        return 0 if lane is None else lane.c["written"] + lane.size()

    def durable_reached(self, mark: int) -> bool:
        lane = next((lane for lane in self._lanes if lane.durable), None)
        return lane is None or lane.c["written"] >= mark

    def csv_can_delete(self, table: str, max_id: int) -> bool:
        """CsvSink's can_delete: may a file whose rows all have id <= max_id go? Thread-safe."""
        for lane in self._lanes:
            if lane.durable:
                continue
            if min(lane.min_deferred.get(table, max_id + 1), lane.replaying.get(table, max_id + 1)) <= max_id:
                return False
            try:
                held = [*lane.queue, *(r for t, rows in list(lane.pending) if t == table for r in rows)]
            except RuntimeError:  # mutated while copying: answer conservatively
                return False
            if any(r.id <= max_id and table_of(r) == table for r in held):
                return False
        return True

    def stats(self) -> dict[str, Any]:
        sinks = {}
        for lane in self._lanes:
            entry: dict[str, Any] = {"queued": lane.size(), **lane.c, "last_error": lane.last_error}
            entry["blocked"] = lane.blocked is not None
            entry["deferred_from_id"] = {
                t: min(lane.min_deferred.get(t, i), i) for t, i in {**lane.min_deferred, **lane.replaying}.items()
            }
            extra = getattr(lane.sink, "stats", None)
            if callable(extra):
                entry.update(extra())
            sinks[lane.sink.name] = entry
        return {"sinks": sinks, "rejected_after_close": self.rejected_after_close, "emit_errors": self.emit_errors}
