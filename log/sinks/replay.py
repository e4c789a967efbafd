"""Replay the CSV files (the durable first copy) into a sink: the `logs sync` command, and the
fan-out's automatic catch-up after rows were deferred to CSV (AutoReplay).

Both rely on the sink being idempotent (TursoSink: INSERT ... ON CONFLICT(id) DO NOTHING, and a
same-content replay counts as already_present), so sending a row twice is harmless and a sync can
always start over. The checkpoint only saves work: it records, per table, an id below which
every row is known to be in the database, for the database URL it was made against. Rows older
than the retention window (`keep_from`) are skipped: the prune may have deleted them from the
database, and inserting one again would count it twice in the rollups.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
import msgspec

from log.sinks.csv_sink import csv_files, read_rows
from log.core.ids import SEQUENCE_BITS, WORKER_BITS
from log.core.rows import TABLES, LogRow
from log.sinks.base import Sink, SinkError

logger = logging.getLogger("log.replay")

# A resumed sync re-reads the last minute of ids before its checkpoint: rows still in flight
# when the checkpoint was taken (another worker's, or a batch the app had not appended yet) may
# land in the CSV files with an id just below it. They are sent again, harmlessly.
RESUME_MARGIN_IDS = 60_000 << (WORKER_BITS + SEQUENCE_BITS)
MAX_FAILED_BATCHES_IN_A_ROW = 3  # the database is clearly down: stop, keep the checkpoint


class SyncCounts(msgspec.Struct):
    read: int = 0
    already_present: int = 0
    inserted: int = 0
    failed: int = 0
    conflicts: int = 0
    expired: int = 0  # older than the retention window: skipped, never sent (not in `read`)

    def add(self, other: SyncCounts) -> None:
        for field in self.__struct_fields__:
            setattr(self, field, getattr(self, field) + getattr(other, field))

    def summary(self) -> str:
        text = (
            f"read {self.read}, already present {self.already_present}, inserted {self.inserted}, "
            f"failed {self.failed}, conflicts {self.conflicts}"
        )
        return text + (f", skipped as expired {self.expired}" if self.expired else "")


Progress = Callable[[str, int, int], None]  # (table, rows read so far, rows expected)


def progress_line(label: str, done: int, total: int, width: int = 30) -> str:
    """'\\r'-led text progress bar; total may be an estimate, so done is capped for the bar only."""
    frac = min(done / total, 1.0) if total > 0 else 1.0
    filled = int(frac * width)
    return f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} ({frac:4.0%})"


def count_csv_lines(log_dir: str | os.PathLike[str], table: str) -> int:
    """Rows in a table's CSV files, from line counts (one physical line per row): for progress."""
    if not Path(log_dir).is_dir():
        return 0
    total = 0
    for files in csv_files(log_dir, table).values():
        for path in files:
            with path.open("rb") as f:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            total += max(lines - 1, 0)  # the header
    return total


# -- checkpoint ---------------------------------------------------------------------------------


class Checkpoint(msgspec.Struct):
    database: str  # the URL it is valid for (never the token)
    synced_upto: dict[str, int] = {}


def load_checkpoint(path: Path, database: str) -> dict[str, int]:
    try:
        cp = msgspec.json.decode(path.read_bytes(), type=Checkpoint)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return {}
    return dict(cp.synced_upto) if cp.database == database else {}


def save_checkpoint(path: Path, database: str, synced_upto: Mapping[str, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(msgspec.json.encode(Checkpoint(database, dict(synced_upto))))
    os.replace(tmp, path)  # a crash leaves the old checkpoint or the new one, never half of one


def resume_after(synced_upto: int | None) -> int | None:
    """Rows with id <= this are skipped on resume (see RESUME_MARGIN_IDS)."""
    return None if synced_upto is None else synced_upto - RESUME_MARGIN_IDS


class Frontier:
    """Per table: the highest id read, and the lowest id that failed. Everything at or below
    synced_upto() is in the database, given that rows arrive roughly in id order and the
    resume margin covers the stragglers."""

    def __init__(self) -> None:
        self.max_read: int | None = None
        self.min_failed: int | None = None

    def read(self, rows: list[LogRow]) -> None:
        top = max(r.id for r in rows)
        self.max_read = top if self.max_read is None else max(self.max_read, top)

    def failed(self, rows: list[LogRow]) -> None:
        low = min(r.id for r in rows)
        self.min_failed = low if self.min_failed is None else min(self.min_failed, low)

    def synced_upto(self) -> int | None:
        if self.max_read is None:
            return None
        return self.max_read if self.min_failed is None else min(self.max_read, self.min_failed - 1)


# -- the replay loop ----------------------------------------------------------------------------


class _Writer(Protocol):
    async def write(self, table: str, rows: Any) -> Any: ...


async def _batches(rows: Iterator[LogRow], size: int) -> Any:
    """Batches of rows, each read from disk in a worker thread (the event loop never blocks)."""
    while True:
        batch = await anyio.to_thread.run_sync(lambda: list(itertools.islice(rows, size)))
        if not batch:
            return
        yield batch


async def write_batch(sink: Sink | _Writer, table: str, batch: list[LogRow], counts: SyncCounts) -> SinkError | None:
    counts.read += len(batch)
    try:
        result = await sink.write(table, batch)
    except SinkError as exc:
        counts.failed += len(batch)
        return exc
    counts.inserted += result.inserted
    counts.already_present += result.already_present
    counts.conflicts += result.conflicts
    return None


def _rows_in_range(
    log_dir: Path, table: str, lo: int | None, hi: int | None, keep_from: str | None, counts: SyncCounts
) -> Iterator[LogRow]:
    """Rows with lo < id <= hi; those created before `keep_from` (expired: the retention prune
    may have deleted them, and inserting one again would count it twice in the rollups) are
    counted and skipped."""
    for row in read_rows(log_dir, table, on_error=_report_unreadable):
        if (lo is None or row.id > lo) and (hi is None or row.id <= hi):
            if keep_from is not None and row.created_at < keep_from:
                counts.expired += 1
            else:
                yield row


def _report_unreadable(path: Path, exc: Exception) -> None:
    logger.warning("skipping an unreadable CSV line or file in %s: %s", path.name, exc)


async def sync_csv(
    log_dir: str | os.PathLike[str],
    sink: Sink | _Writer,
    *,
    synced_upto: Mapping[str, int] | None = None,
    batch_size: int = 500,
    progress: Progress | None = None,
    on_checkpoint: Callable[[dict[str, int]], None] | None = None,
    keep_from: str | None = None,
) -> dict[str, SyncCounts]:
    """Send every CSV row (all rotated files, all worker suffixes) not covered by `synced_upto`
    and not created before `keep_from` (log/core/retention.py keep_from: expired rows are skipped).

    Never raises for a failed batch (it is counted, and the checkpoint stops before it), except
    a non-retryable one (bad token, wrong URL): then SinkError, as nothing would get through.
    """
    log_dir, synced_upto = Path(log_dir), dict(synced_upto or {})
    results: dict[str, SyncCounts] = {}
    for table in TABLES:
        counts, frontier = results.setdefault(table, SyncCounts()), Frontier()
        total = await anyio.to_thread.run_sync(count_csv_lines, log_dir, table)
        skip_upto = resume_after(synced_upto.get(table))
        failed_in_a_row = 0
        async for batch in _batches(_rows_in_range(log_dir, table, skip_upto, None, keep_from, counts), batch_size):
            frontier.read(batch)
            error = await write_batch(sink, table, batch, counts)
            if error is not None:
                frontier.failed(batch)
                if not error.retryable:
                    raise error
                failed_in_a_row += 1
            else:
                failed_in_a_row = 0
            upto = frontier.synced_upto()
            if upto is not None and upto > synced_upto.get(table, upto - 1):
                synced_upto[table] = upto
            if progress is not None:
                progress(table, counts.read + counts.expired, max(total, counts.read + counts.expired))
            if failed_in_a_row >= MAX_FAILED_BATCHES_IN_A_ROW:
                logger.error("sync of %s stopped after %d failed batches: %s", table, failed_in_a_row, error)
                break
        if on_checkpoint is not None:
            on_checkpoint(dict(synced_upto))
    return results


async def replay_ranges(
    log_dir: str | os.PathLike[str], sink: Sink | _Writer, ranges: Mapping[str, tuple[int, int]], *,
    batch_size: int = 500, keep_from: str | None = None,
) -> SyncCounts:
    """Send the CSV rows with lo <= id <= hi per table, but for expired ones (see sync_csv); raise
    the first SinkError (the caller keeps the ranges deferred and tries again later)."""
    counts = SyncCounts()
    for table, (lo, hi) in ranges.items():
        async for batch in _batches(_rows_in_range(Path(log_dir), table, lo - 1, hi, keep_from, counts), batch_size):
            error = await write_batch(sink, table, batch, counts)
            if error is not None:
                raise error
    return counts


class _Deferring(Protocol):
    def replay_ready(self, name: str) -> bool: ...
    def take_deferred(self, name: str) -> tuple[dict[str, tuple[int, int]], int]: ...
    def finish_replay(self, name: str, ranges: dict[str, tuple[int, int]], ok: bool) -> None: ...
    def durable_reached(self, mark: int) -> bool: ...


class AutoReplay:
    """Background catch-up: rows a remote lane deferred to CSV (it was full) are sent once the
    lane writes again. One round: take the deferred id ranges, wait until the CSV lane has
    written every row accepted so far (the deferred ones among them), replay the ranges."""

    def __init__(
        self,
        fanout: _Deferring,
        sink: Sink | _Writer,
        log_dir: str | os.PathLike[str],
        *,
        name: str = "turso",
        interval: float = 1.0,
        csv_wait: float = 30.0,
        batch_size: int = 500,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        report: Callable[[str], None] = logger.warning,
        rotations: Callable[[], int] = lambda: 0,
        keep_from: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.fanout, self.sink, self.log_dir, self.name = fanout, sink, Path(log_dir), name
        self._rotations = rotations  # the CSV sink's files_rotated: a rotation mid-read may hide rows
        self._keep_from = keep_from  # rows created before it have expired: not replayed
        self.interval, self.csv_wait, self.batch_size = interval, csv_wait, batch_size
        self._sleep, self._report = sleep, report
        self.rounds = self.failed_rounds = 0
        self.counts = SyncCounts()

    async def run(self) -> None:
        while True:
            await self._sleep(self.interval)
            try:
                await self.tick()
            except Exception as exc:  # a bug here must not end catch-up for good
                self._report(f"log replay into {self.name}: {exc!r}")

    async def tick(self) -> bool:
        """One round if one is due; True if it replayed everything it took."""
        if not self.fanout.replay_ready(self.name):
            return False
        ranges, mark = self.fanout.take_deferred(self.name)
        ok = False
        try:  # whatever happens (failure, cancellation at shutdown), unfinished ranges stay deferred
            waited = 0.0
            while not self.fanout.durable_reached(mark):
                if waited >= self.csv_wait:
                    return False
                await self._sleep(0.05)
                waited += 0.05
            try:
                counts = SyncCounts()
                for _ in range(3):  # files renamed under the reader: read again (idempotent)
                    before = self._rotations()
                    counts.add(await replay_ranges(
                        self.log_dir, self.sink, ranges, batch_size=self.batch_size, keep_from=self._keep_from()
                    ))
                    if self._rotations() == before:
                        ok = True
                        break
            except SinkError as exc:
                self.failed_rounds += 1
                self._report(f"log replay into {self.name} failed, will retry: {exc}")
                return False
            if not ok:
                return False
        finally:
            self.fanout.finish_replay(self.name, ranges, ok=ok)
        self.rounds += 1
        self.counts.add(counts)
        if counts.conflicts:
            self._report(f"log replay into {self.name}: {counts.conflicts} ids already held other content")
        logger.info("log replay into %s: %s", self.name, counts.summary())
        return True

    def stats(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "failed_rounds": self.failed_rounds, **msgspec.structs.asdict(self.counts)}
