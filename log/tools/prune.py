"""Retention: delete expired log rows, rollup rows and rotated CSV files, in bounded batches.

The decisions (what has expired, the batched statements) are log/core/retention.py's; two shells
run them here:

* `Pruner`: the background task Tracing.open() starts when it writes the log database. A first
  round a minute after start, then one an hour. Rounds start at most once an hour across every
  instance sharing the log database, one instance at a time: a job lease in the log database
  (log/db/lease.py). Each batch is its own transaction, which also renews the lease, with a short
  pause between batches; a round that is cut off (shutdown, crash) leaves only whole batches
  done, and the next round carries on from there. Errors are logged and retried next round; they
  never reach a request. Each process also deletes its own expired rotated CSV files.
* `prune_logs`: `python -m cli logs prune [--dry-run]`, the same on demand, with a progress line
  and a summary; it respects a running prune's lease, not the hourly spacing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

import anyio
import anyio.to_thread

from log.config import TracingConfig
from log.core.retention import BATCH_ROWS, Step, pause_after, plan, prune_before, step_done
from log.core.rows import TABLES
from log.db.database import LogDatabase
from log.db.errors import LogDatabaseError
from log.db.lease import JobLease, acquire_job_lease, job_holder, job_renewal, release_job_lease
from log.sinks.csv_sink import expired_files
from log.tools.progress import ProgressBar
from log.tools.sync import with_log_database

logger = logging.getLogger("log.prune")

JOB = "retention"
LEASE_TTL = 300.0  # seconds; every batch renews it, so only a stalled or dead pruner loses it
EVERY = 3600.0  # at most one round an hour, whichever instance runs it
FIRST_DELAY = 60.0  # after start: start-up and the first requests come first
PAUSE = 0.1  # seconds at least between two batches (pause_after): the sinks get the writer lock

Progress = Callable[[str, int], None]  # (table, rows deleted so far)


class LeaseLost(Exception):
    """Another instance took the job's lease (this one stalled past LEASE_TTL): stop."""


def _utc(unix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix, dt.UTC)


def holder_name(kind: str) -> str:
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"


async def count_expired(db: LogDatabase, steps: Sequence[Step]) -> dict[str, int]:
    """How many rows each step would delete (the dry run, and the progress line's totals)."""
    return {step.table: int((await db.select(step.count_sql, step.args))[0]["n"]) for step in steps}


async def run_steps(
    db: LogDatabase,
    steps: Sequence[Step],
    *,
    lease: JobLease | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    pause: float = PAUSE,
    progress: Progress | None = None,
    timer: Callable[[], float] = time.monotonic,
) -> dict[str, int]:
    """Run each step's DELETE until it comes back short; returns rows deleted per table.

    Every batch is one transaction that also renews `lease`; a renewal that changes nothing
    means the lease was lost: LeaseLost (that batch's rows are gone all the same, harmlessly:
    they had expired). LogDatabaseError propagates; the batches done so far stay done.
    """
    counts: dict[str, int] = {}
    for step in steps:
        counts[step.table] = 0
        while True:
            statements: list[tuple[str, Sequence[Any]]] = []
            if lease is not None:
                statements.append(job_renewal(lease, now=clock(), ttl=LEASE_TTL))
            statements.append((step.delete_sql, step.args))
            began = timer()
            outcomes = await db.transaction(statements)
            took = timer() - began
            deleted = outcomes[-1].affected_row_count
            counts[step.table] += deleted
            if progress is not None:
                progress(step.table, counts[step.table])
            if lease is not None and outcomes[0].affected_row_count != 1:
                raise LeaseLost(f"the {lease.job} lease was taken over; stopped after {counts}")
            if step_done(deleted, step.limit):
                break
            await sleep(pause_after(took, pause))
    return counts


class _ExpiringCsv(Protocol):
    def delete_expired(self, before: str | None) -> list[Path]: ...


class Pruner:
    """The background shell: `run()` is the task body (cancel it to stop); `round()` is one round."""

    def __init__(
        self,
        db: LogDatabase,
        *,
        retention_days: int,
        rollup_days: int,
        csv: _ExpiringCsv | None = None,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        first_delay: float = FIRST_DELAY,
        every: float = EVERY,
        batch: int = BATCH_ROWS,
        pause: float = PAUSE,
    ) -> None:
        self.db, self.csv = db, csv
        self.retention_days, self.rollup_days = retention_days, rollup_days
        self.holder = holder or holder_name("app")
        self._clock, self._sleep = clock, sleep
        self.first_delay, self.every, self.batch, self.pause = first_delay, every, batch, pause
        self.rounds = self.skipped = self.errors = self.csv_files_deleted = 0
        self.deleted: dict[str, int] = {}  # totals since start, per table
        self.last_error: str | None = None

    async def run(self) -> None:
        await self._sleep(self.first_delay)
        while True:
            await self.round()
            await self._sleep(self.every)

    async def round(self) -> dict[str, int] | None:
        """Delete what has expired if this instance gets the lease; rows deleted per table, or
        None when another instance has it or ran within the hour. Never raises but for
        cancellation: errors are logged, and the next round tries again."""
        now = self._clock()
        if self.csv is not None:  # this process's own files, whoever prunes the database
            try:
                before = prune_before(_utc(now), self.retention_days)
                gone = await anyio.to_thread.run_sync(self.csv.delete_expired, before)
                self.csv_files_deleted += len(gone)
            except OSError as exc:
                self.errors += 1
                self.last_error = str(exc)
                logger.warning("log retention: could not delete expired CSV files (%s)", exc)
        try:
            lease = await acquire_job_lease(self.db, JOB, self.holder, now=now, ttl=LEASE_TTL, every=self.every)
            if lease is None:
                self.skipped += 1
                return None
            steps = plan(_utc(now), retention_days=self.retention_days, rollup_days=self.rollup_days, limit=self.batch)
            # Released when the round ends or fails; not when it is cancelled (shutdown): no more
            # awaits on the way out, the lease simply expires.
            try:
                counts = await run_steps(
                    self.db, steps, lease=lease, clock=self._clock, sleep=self._sleep, pause=self.pause
                )
            except Exception:
                await self._release(lease)
                raise
            await self._release(lease)
        except (LogDatabaseError, LeaseLost) as exc:
            self.errors += 1
            self.last_error = str(exc)
            logger.warning("log retention: prune failed (%s); the next round tries again", exc)
            return None
        except Exception as exc:  # a bug here must not end retention for good
            self.errors += 1
            self.last_error = repr(exc)
            logger.exception("log retention: prune failed; the next round tries again")
            return None
        self.rounds += 1
        for table, n in counts.items():
            self.deleted[table] = self.deleted.get(table, 0) + n
        if any(counts.values()):
            logger.info("log retention: deleted %s", ", ".join(f"{n} {t}" for t, n in counts.items() if n))
        return counts

    async def _release(self, lease: JobLease) -> None:
        with contextlib.suppress(Exception):
            await release_job_lease(self.db, lease)

    def stats(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds, "skipped": self.skipped, "errors": self.errors, "last_error": self.last_error,
            "deleted": dict(self.deleted), "csv_files_deleted": self.csv_files_deleted,
        }


# -- the command ---------------------------------------------------------------------------------


def prune_logs(
    config: TracingConfig, *, dry_run: bool = False, batch_size: int = BATCH_ROWS, pause: float = PAUSE,
    now: dt.datetime | None = None, out: TextIO | None = None, err: TextIO | None = None,
) -> int:
    """`logs prune`: delete what has expired now; returns a process exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    now = now or dt.datetime.now(dt.UTC)
    steps = plan(now, retention_days=config.retention_days, rollup_days=config.rollup_retention_days, limit=batch_size)
    before = prune_before(now, config.retention_days)
    if not steps:
        print("logs prune: LOG_RETENTION_DAYS and LOG_ROLLUP_RETENTION_DAYS are 0: everything is kept", file=out)
        return 0
    bar = ProgressBar("prune", err)

    def csv_files() -> list[Path]:
        # Every worker's rotated files. Rows in them that the log database lacks are expired,
        # so `logs sync` would skip them anyway: nothing the database could still get is lost.
        return [p for table in TABLES for p in expired_files(config.logs_path, table, before)]

    async def work(db: LogDatabase) -> int:
        try:
            totals = await count_expired(db, steps)
            files = await anyio.to_thread.run_sync(csv_files)
            if dry_run:
                print(f"logs prune --dry-run on {db!r} ({_window(config, before)}):", file=out)
                for table, n in totals.items():
                    print(f"  {table}: would delete {n:,}", file=out)
                print(f"  CSV files: would delete {len(files)}{_names(files)}", file=out)
                return 0
            lease = await acquire_job_lease(db, JOB, holder_name("cli"), now=now.timestamp(), ttl=LEASE_TTL, every=0)
            if lease is None:
                held = await job_holder(db, JOB, now=now.timestamp())
                who = f" ({held[0]}, lease until {_utc(held[1]):%H:%M:%S} UTC)" if held else ""
                print(f"logs prune: another instance is pruning{who}; try again later", file=err)
                return 1
            try:
                counts = await run_steps(
                    db, steps, lease=lease, pause=pause, progress=lambda table, n: bar(table, n, totals[table])
                )
            finally:
                bar.end()
                with contextlib.suppress(LogDatabaseError):
                    await release_job_lease(db, lease)
        except (LogDatabaseError, LeaseLost) as exc:
            print(f"logs prune: {exc}", file=err)
            return 1
        for path in files:
            path.unlink(missing_ok=True)
        print(f"logs prune on {db!r} ({_window(config, before)}):", file=out)
        for table, n in counts.items():
            print(f"  {table}: deleted {n:,}", file=out)
        print(f"  CSV files: deleted {len(files)}{_names(files)}", file=out)
        return 0

    return anyio.run(with_log_database, config, work)


def _window(config: TracingConfig, before: str | None) -> str:
    rows = f"rows created before {before} UTC" if before else "rows kept (LOG_RETENTION_DAYS=0)"
    days = config.rollup_retention_days
    return f"{rows}; rollups older than {days} days" if days else f"{rows}; rollups kept"


def _names(files: list[Path]) -> str:
    return f" ({', '.join(p.name for p in files)})" if files else ""
