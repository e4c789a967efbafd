"""Retention decisions, without I/O: which rows, rollup rows and CSV files have expired, and the
batched statements that delete them (log/tools/prune.py runs them).

A row expires when its `created_at` (UTC text, which sorts as time does) is older than the
window. The pruner deletes a little later than sync and replay start skipping (PRUNE_GRACE), so a
`logs sync` on a machine whose clock is somewhat behind the pruner's still skips every row the
pruner deleted: a deleted row is never inserted again, and the rollups never count it twice.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

import msgspec

PRUNE_GRACE = dt.timedelta(minutes=10)
BATCH_ROWS = 5_000  # rows per DELETE transaction: short write locks, bounded WAL growth
LOG_TABLES = ("api_logs", "task_progress_logs")
# Rollup table -> (time key column, seconds per key, primary key columns); see rollups.sql.
ROLLUPS: dict[str, tuple[str, int, str]] = {
    "api_status_minute": ("minute", 60, "minute, status_class"),
    "api_latency_hour": ("hour", 3600, "hour, endpoint, status_class, bucket"),
    "api_latency_day": ("day", 86400, "day, endpoint, status_class, bucket"),
}
STAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def stamp(when: dt.datetime) -> str:
    """A datetime as created_at text ('YYYY-MM-DD HH:MM:SS.fff', UTC)."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when.strftime(STAMP_FORMAT)[:-3]


def keep_from(now: dt.datetime, days: int) -> str | None:
    """Rows created before this have expired: sync and replay skip them. None: keep everything."""
    return stamp(now - dt.timedelta(days=days)) if days > 0 else None


def prune_before(now: dt.datetime, days: int) -> str | None:
    """The pruner deletes rows created before this (PRUNE_GRACE after keep_from)."""
    return keep_from(now - PRUNE_GRACE, days)


class Step(msgspec.Struct, frozen=True):
    """One table's share of a prune: run `delete_sql` until it deletes fewer than `limit` rows."""

    table: str
    count_sql: str  # how many rows would go (dry run, progress)
    delete_sql: str  # at most `limit` of them, oldest first
    args: tuple[Any, ...]
    limit: int


def plan(now: dt.datetime, *, retention_days: int, rollup_days: int, limit: int = BATCH_ROWS) -> list[Step]:
    """The prune's steps: the log tables (raw rows) by created_at, the rollups by their time key.

    Each DELETE picks its batch through an index (created_at, or the rollup's primary key, which
    starts with the time key), so a batch costs the same however many rows are left to delete.
    """
    steps: list[Step] = []
    before = prune_before(now, retention_days)
    if before is not None:
        for table in LOG_TABLES:
            steps.append(Step(
                table,
                f"SELECT count(*) AS n FROM {table} WHERE created_at < ?",
                f"DELETE FROM {table} WHERE id IN "
                f"(SELECT id FROM {table} WHERE created_at < ? ORDER BY created_at LIMIT {int(limit)})",
                (before,), limit,
            ))  # fmt: skip
    if rollup_days > 0:
        unix = _unix(now - PRUNE_GRACE - dt.timedelta(days=rollup_days))
        for table, (key, seconds, pk) in ROLLUPS.items():
            # A rollup row covers [key * seconds, (key + 1) * seconds): it goes once all of that
            # period is older than the window, so the period holding the cutoff stays whole.
            steps.append(Step(
                table,
                f"SELECT count(*) AS n FROM {table} WHERE {key} < ?",
                f"DELETE FROM {table} WHERE ({pk}) IN "
                f"(SELECT {pk} FROM {table} WHERE {key} < ? ORDER BY {key} LIMIT {int(limit)})",
                (unix // seconds,), limit,
            ))  # fmt: skip
    return steps


def _unix(when: dt.datetime) -> int:
    """Seconds since 1970 of a datetime; a naive one is UTC (as created_at is)."""
    return int((when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)).timestamp())


def pause_after(batch_seconds: float, minimum: float) -> float:
    """The pause after a batch: twice as long as the batch took (at least `minimum`), so a long
    prune (a backlog of expired rows) takes at most about a third of the time of one core, and
    its share of the database's writer lock likewise."""
    return max(minimum, 2 * batch_seconds)


def step_done(deleted: int, limit: int) -> bool:
    """A batch that deleted fewer rows than it could was the table's last."""
    return deleted < limit


# -- CSV files -----------------------------------------------------------------------------------

_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}")


def file_extent(lines: Iterable[str]) -> tuple[int, str] | None:
    """(highest id, newest created_at) of a CSV file's lines (its header first), or None when it
    holds no readable row. Columns are found by name in the header, so files written before a
    column was appended read the same; each physical line is one row, parsed on its own, and a
    torn or foreign line is skipped."""
    top_id: int | None = None
    newest = ""
    id_at = created_at = -1
    for i, line in enumerate(lines):
        try:
            cells = next(csv.reader([line]))
        except (csv.Error, StopIteration):
            continue
        if i == 0:
            if "id" not in cells or "created_at" not in cells:
                return None
            id_at, created_at = cells.index("id"), cells.index("created_at")
            continue
        if len(cells) <= max(id_at, created_at) or not _STAMP.fullmatch(cells[created_at]):
            continue
        try:
            row_id = int(cells[id_at])
        except ValueError:
            continue
        top_id = row_id if top_id is None else max(top_id, row_id)
        newest = max(newest, cells[created_at])
    return None if top_id is None else (top_id, newest)


def csv_file_expired(number: int, extent: tuple[int, str] | None, before: str | None) -> bool:
    """May a CSV file go for retention? Only a rotated one (number >= 1, never the current file),
    holding rows, whose newest row was created before `before`. (The caller also asks whether
    every remote sink has its rows: FanOut.csv_can_delete.)"""
    return before is not None and number >= 1 and extent is not None and extent[1] < before

