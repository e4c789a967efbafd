"""Tracing, assembled from a TracingConfig: ids, sinks, fan-out, the capture layer's record
callback, task trackers and read access. Built with the app, opened and closed by its lifespan:

    tracing = Tracing(TracingConfig.from_env(os.environ))
    async with tracing:            # or lifespan=tracing.lifespan
        ...

Everything here is wiring; the decisions live in the pure modules it calls
(core/: build, redact, encodings) and the shells it composes (sinks/, db/).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec

from log.core.build import build_api_log, build_exception_row, redactor
from log.core.captured import Captured
from log.sinks.csv_sink import CsvSink
from log.sinks.fanout import FanOut
from log.db.errors import LogDatabaseError
from log.core.ids import SnowflakeIds
from log.core.redact import RedactionPolicy
from log.sinks.replay import AutoReplay
from log.core.rows import ApiLog, LogRow, TaskProgressLog
from log.sinks.base import Sink
from log.sinks.stdout_sink import StdoutSink
from log.tasks import TaskTracker
from log.db.database import LogDatabase, open_log_database
from log.db.schema import apply_schema
from log.sinks.turso_sink import TursoSink
from log.sinks.wal import WriteAhead, claim, csv_ids, read_records, wal_files
from log.db.interrupted import close_interrupted
from log.db.lease import (
    WorkerLease, acquire_worker_id, keep_renewed, live_leases, release_worker_id, worker_leases,
)
from log.config import TracingConfig
from log.core.retention import keep_from
from log.explorer.reader import LogReader
from log.tools.prune import Pruner, holder_name

logger = logging.getLogger("log.tracing")

FALLBACK_WORKER_ID = 1023  # used only when no lease can be taken; said loudly at start-up
LEASE_TTL, LEASE_RENEW = 60.0, 15.0
# Seconds between two looks at the worker-id leases for one that expired or was let go since the
# last look (a worker process that ended while the others ran): then its open task steps are closed.
LEASE_WATCH = LEASE_TTL
# Request rows are built in small batches (see Tracing.record): at most this many requests
# or this many seconds after the first of them, well inside the sinks' 200 ms batching.
BUILD_BATCH, BUILD_DELAY = 64, 0.05
WAL_CHECKPOINT = 0.25  # seconds between write-ahead checkpoints (seal a segment, delete written ones)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _gone(holder: str, host: str) -> bool:
    """A lease holder ("host:pid:uuid") that was a process of this host which no longer runs."""
    parts = holder.split(":")
    if len(parts) < 3 or parts[0] != host or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return int(parts[1]) == os.getpid()  # our own pid: a leftover of an earlier process with the same pid


class Tracing:
    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        self.enabled = config.enabled
        self.policy = RedactionPolicy().with_extra(config.redact_extra)
        self.ids = SnowflakeIds(0, _now_ms)
        self.fanout: FanOut | None = None
        self.log_db: LogDatabase | None = None
        self.lease: WorkerLease | None = None
        self._leased_at = 0.0
        self.interrupted_closed = 0  # task steps of ended processes closed at start
        self._redact = redactor(self.policy)
        self._owned_http: httpx.AsyncClient | None = None
        self.record_errors = 0
        self._built: list[Sink] = []
        self._renewal: asyncio.Task[None] | None = None
        self._lease_watch: asyncio.Task[None] | None = None
        self.replay: AutoReplay | None = None
        self._replaying: asyncio.Task[None] | None = None
        self.pruner: Pruner | None = None
        self._pruning: asyncio.Task[None] | None = None
        self._prune_db: LogDatabase | None = None
        self._captured: list[tuple[int, Captured]] = []  # recorded, rows not built yet
        self._build_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._schema_ready = False
        self.wal: WriteAhead | None = None
        self._wal_failing = False
        self._checkpoints: asyncio.Task[None] | None = None
        self.recovered: dict[str, int] = {}
        # The capture layer calls `ahead` only where a local disk keeps the record (the CSV sink).
        self.writes_ahead = config.enabled and config.write_ahead and "csv" in config.sinks

    # called from the request path: must be cheap and never raise ------------------------
    def next_id(self) -> int:
        return self.ids.next()

    def emit(self, row: LogRow) -> None:
        if self.fanout is not None:
            self.fanout.emit(row)

    def ahead(self, captured: Captured) -> None:
        """The capture layer's write-ahead hook, called just before the final response message
        is passed on: the row ids are taken now and the request's record is written to disk
        (one frame copied into a mapped file, no fsync: log/sinks/wal.py). Called again with
        the same ids when the outcome changes afterwards; the last record of an id wins."""
        wal = self.wal
        if wal is None:
            return
        try:
            if not captured.row_id:
                captured.row_id = self.next_id()
            if captured.exception is not None and not captured.crash_id:
                captured.crash_id = self.next_id()
            wal.append_answered(captured)
        except Exception as exc:  # a logging failure must never fail the request
            self._wal_failed(exc)
        else:
            self._wal_failing = False

    def _emit_task(self, row: LogRow) -> None:
        """A task row: into the write-ahead record, then to the sinks."""
        wal = self.wal
        if wal is None or not isinstance(row, TaskProgressLog):
            self.emit(row)
            return
        try:
            wal.append_task(row, self.emit)
        except Exception as exc:
            self._wal_failed(exc)
            self.emit(row)
        else:
            self._wal_failing = False

    def _wal_failed(self, exc: Exception) -> None:
        """Counted each time, said once per failure streak (a full disk fails every request)."""
        self.record_errors += 1
        if not self._wal_failing:
            self._wal_failing = True
            logger.error("could not write the write-ahead record (%s: %s); rows still go to the sinks, "
                         "but a crash now would lose the ones in memory", type(exc).__name__, exc)

    def record(self, captured: Captured) -> None:
        """The capture layer's callback: one ApiLog (+ a FAILED task row for a crash).

        Only the id is taken here, unless `ahead` took it when the response completed (so ids
        follow request order and time); the rows are built a
        few dozen at a time, BUILD_DELAY later or as soon as BUILD_BATCH requests are waiting:
        built one per request, between two responses, the builder's code and data would be
        cold in the CPU caches every time (BENCHMARKS.md has the numbers).
        """
        if self.fanout is None:
            return
        try:
            self._captured.append((captured.row_id or self.next_id(), captured))
            if len(self._captured) >= BUILD_BATCH or self._closing:
                self.build_pending()
            elif self._build_timer is None and self.config.flush != "request":
                self._build_timer = asyncio.get_running_loop().call_later(BUILD_DELAY, self.build_pending)
        except Exception:  # a logging bug must never fail the request
            self.record_errors += 1
            logger.exception("could not queue a log row")

    def build_pending(self) -> None:
        """Build and emit the rows of every request recorded so far (on the event loop)."""
        if self._build_timer is not None:
            self._build_timer.cancel()
            self._build_timer = None
        pending, self._captured = self._captured, []
        rows: list[LogRow] = []
        rows_of = self._rows_of
        for row_id, captured in pending:
            try:
                rows += rows_of(row_id, captured)
            except Exception:  # one bad row must not cost the others theirs
                self.record_errors += 1
                logger.exception("could not build a log row")
        if self.fanout is not None:
            self.fanout.emit_many(rows)
        wal = self.wal
        if wal is not None:  # handed to the fan-out: their records may go once written
            for _, captured in pending:
                if captured.row_id:
                    wal.release(captured.row_id)

    def _rows_of(self, row_id: int, captured: Captured) -> list[LogRow]:
        """The ApiLog row of a request, and the FAILED task row of its crash if it had one."""
        c = self.config
        if c.no_response_body_prefixes and captured.path.startswith(c.no_response_body_prefixes):
            captured = msgspec.structs.replace(captured, response_body=b"", response_body_size=0)
        rows: list[LogRow] = [
            build_api_log(
                captured, row_id=row_id, policy=self.policy,
                body_cap=c.body_max_bytes, html_mode=c.html_bodies,  # type: ignore[arg-type]
                headers_cap=c.headers_max_bytes,
            )
        ]
        if captured.exception is not None:  # an id only when there is a crash row to give it
            crash = build_exception_row(captured, row_id=captured.crash_id or self.next_id(), policy=self.policy)
            if crash is not None:
                rows.append(crash)
        return rows

    # lifespan ------------------------------------------------------------------------------
    async def open(self, http: httpx.AsyncClient | None = None) -> None:
        """Prepare the log database, lease a worker id, start the sinks. `http` carries the
        calls to a remote log database (a client of the host's, or one made and closed here)."""
        c = self.config
        if http is None:
            http = self._owned_http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))
        self.log_db = open_log_database(c.log_database_url, c.auth_token or None, http)
        usable = await self._prepare_database()
        self._schema_ready = usable
        if not self.enabled:
            return
        if usable:
            await self._lease_worker_id()
        else:
            self.ids = SnowflakeIds(FALLBACK_WORKER_ID, _now_ms)
        self._built = self._sinks()
        self.fanout = FanOut(
            self._built,
            # Only the CSV files are a durable first copy: the sync command can replay them into
            # Turso. stdout is not (Cloud Logging cannot be read back from here), so with CSV
            # off (Cloud Run's default "stdout,turso") no lane is durable and a row a full Turso
            # lane cannot take is counted as dropped there, even though Cloud Logging has it.
            durable="csv",
            report=lambda message: logger.warning("%s", message),
        )
        if self.writes_ahead:
            await self._open_write_ahead()
        if c.flush != "request":
            await self.fanout.start()
            self._start_replay()
            if self.wal is not None:
                self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="log-wal-checkpoint")
        if self.lease is not None and "turso" in c.sinks:
            live = await self._live_leases()  # before the close: one ending meanwhile is seen later
            closed = await self._close_interrupted()
            self._lease_watch = asyncio.create_task(
                self._watch_leases(live if closed else None), name="log-lease-watch"
            )
        self._start_pruner(http)

    # the write-ahead record -----------------------------------------------------------------
    async def _open_write_ahead(self) -> None:
        """Recover the records of processes that ended (log/sinks/wal.py), then start this
        process's own. Rows the CSV files lack go to every sink; rows they hold, to the others
        (the log database ignores ids it has)."""
        assert self.fanout is not None
        directory = self.config.logs_path
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # Its lock first: then nobody claims its files (it may wait a moment for a claim).
            wal = await anyio.to_thread.run_sync(WriteAhead, directory, self.ids.worker_id)
            ended = await self._ended_by_lease(directory)
            paths = await anyio.to_thread.run_sync(claim, directory, self.ids.worker_id, ended.__contains__)
        except OSError as exc:
            logger.error("write-ahead record off: %s (rows still go to the sinks, in batches)", exc)
            return
        if paths:
            found = await anyio.to_thread.run_sync(read_records, paths)
            ids = found.ids()
            in_csv = await anyio.to_thread.run_sync(csv_ids, directory, ids)
            new = old = 0
            others = frozenset(s.name for s in self._built if s.name not in ("csv", "stdout"))
            for row_id, captured in found.answered.items():
                try:
                    rows = self._rows_of(row_id, captured)
                except Exception:
                    self.record_errors += 1
                    logger.exception("could not rebuild a recovered log row")
                    continue
                for row in rows:
                    new, old = self._emit_recovered(row, in_csv, others, new, old)
            for row in found.tasks.values():
                new, old = self._emit_recovered(row, in_csv, others, new, old)
            wal.adopt(paths, self.fanout.write_mark())
            self.recovered = {"files": len(paths), "rows_new": new, "rows_in_csv": old,
                              "torn_bytes": found.torn_bytes, "unreadable": found.unreadable}
            logger.warning(
                "recovered %d log row(s) from the write-ahead record of a process that ended "
                "(%d more were already in the CSV files)", new, old,
            )
        self.wal = wal

    def _emit_recovered(
        self, row: LogRow, in_csv: dict[str, set[int]], others: frozenset[str], new: int, old: int
    ) -> tuple[int, int]:
        assert self.fanout is not None
        table = "api_logs" if isinstance(row, ApiLog) else "task_progress_logs"
        if row.id in in_csv.get(table, ()):
            self.fanout.emit_to(row, others)
            return new, old + 1
        self.fanout.emit(row)
        return new + 1, old

    async def _ended_by_lease(self, directory: Path) -> set[int]:
        """Worker ids whose files this process may recover where LOG_DIR has no file locks (with
        locks, a free lock says so at once: log/sinks/wal.py): with one worker every file in
        LOG_DIR is of an earlier run; with several, those whose lease expired, or whose holder
        ran on this host and is gone (a process killed a moment ago holds its lease until ttl)."""
        owners = {owner for _, owner, _ in await anyio.to_thread.run_sync(wal_files, directory)}
        owners.discard(self.ids.worker_id)
        if self.config.workers <= 1 or not owners:
            return owners
        if self.log_db is None or self.lease is None:
            return set()  # without the leases nobody can tell a live worker from an ended one
        try:
            with anyio.fail_after(10):
                leases = await worker_leases(self.log_db)
        except (LogDatabaseError, TimeoutError):
            return set()
        now, host = time.time(), socket.gethostname()
        ended = set()
        for owner in owners:
            lease = leases.get(owner)
            if lease is None or lease[1] < now or _gone(lease[0], host):
                ended.add(owner)
        return ended

    async def _checkpoint_loop(self) -> None:
        while True:
            await anyio.sleep(WAL_CHECKPOINT)
            self.checkpoint()

    def checkpoint(self) -> None:
        """Seal the write-ahead segment in use when due; delete those whose rows every sink wrote."""
        if self.wal is None or self.fanout is None:
            return
        try:
            self.wal.checkpoint(self.fanout.write_mark, self.fanout.written_up_to)
        except Exception:
            logger.exception("write-ahead checkpoint failed")

    async def _prepare_database(self) -> bool:
        """Log tables, the explorer's rollups and indexes, in one transaction (idempotent).

        A wrong URL or token is said here once, clearly; requests are still served, rows stay in
        the other sinks (CSV) and the Turso lane holds them until the database answers.
        """
        assert self.log_db is not None
        try:
            with anyio.fail_after(15):
                await apply_schema(self.log_db)
        except (LogDatabaseError, TimeoutError) as exc:
            message = getattr(exc, "message", None) or "no answer within 15 s"
            logger.error(
                "log database %r is not usable (%s); requests are still served, log rows stay in CSV "
                "and pending for it (`logs sync` replays them); log worker id %d",
                self.log_db, message, FALLBACK_WORKER_ID,
            )
            return False
        return True

    async def _close_interrupted(self) -> bool:
        """FAILED rows for the task steps processes that ended left open (log/db/interrupted.py);
        they go to every sink (the log database has them already: counted `already_present`).
        False if the log database did not answer."""
        assert self.log_db is not None and self.lease is not None
        try:
            with anyio.fail_after(10):
                rows = await close_interrupted(
                    self.log_db, worker_id=self.lease.worker_id, leased_at=self._leased_at,
                    now=time.time(), next_id=self.next_id,
                )
        except (LogDatabaseError, TimeoutError) as exc:
            logger.warning("could not close the task runs of ended processes (%s); tried again later",
                           getattr(exc, "message", None) or "no answer within 10 s")
            return False
        for row in rows:
            self.emit(row)
        self.interrupted_closed += len(rows)
        if rows:
            logger.warning("closed %d task step(s) left open by processes that ended", len(rows))
        return True

    async def _live_leases(self) -> set[tuple[int, str]] | None:
        """(worker id, holder) of every live worker-id lease; None if they cannot be read."""
        assert self.log_db is not None
        try:
            with anyio.fail_after(10):
                return await live_leases(self.log_db, now=time.time())
        except (LogDatabaseError, TimeoutError):
            return None

    async def _watch_leases(self, seen: set[tuple[int, str]] | None) -> None:
        """A worker process that ends while the others run (killed, out of memory) is replaced
        at once (uvicorn --workers), and that start comes while the ended one's lease still runs
        (up to LEASE_TTL): its steps are not closed then. So the leases are read every
        LEASE_WATCH seconds (a small table; the task rows only when needed), and when one that
        was live at the last look has expired or was let go, the open steps are closed again.
        `seen` None: the start's close failed, so the first look closes (and so on until one
        succeeds)."""
        while True:
            await anyio.sleep(LEASE_WATCH)
            live = await self._live_leases()
            if live is None:
                continue
            if (seen is None or seen - live) and not await self._close_interrupted():
                continue  # the next look tries again
            seen = live

    def _start_replay(self) -> None:
        """Rows the Turso lane deferred to CSV (it was full) go to Turso once it writes again."""
        assert self.fanout is not None
        sinks = {sink.name: sink for sink in self._built}
        if "csv" in sinks and "turso" in sinks:
            csv = sinks["csv"]
            self.replay = AutoReplay(
                self.fanout, sinks["turso"], self.config.logs_path,
                rotations=lambda: getattr(csv, "files_rotated", 0),
                # Rows past the retention window are not replayed: the prune may have deleted them.
                keep_from=lambda: keep_from(dt.datetime.now(dt.UTC), self.config.retention_days),
            )
            self._replaying = asyncio.create_task(self.replay.run(), name="log-replay-turso")

    def _start_pruner(self, http: httpx.AsyncClient) -> None:
        """Retention, in the background, where this process writes the log database; it also
        deletes this process's own expired rotated CSV files (log/tools/prune.py). Its own
        connection: on `file:` the explorer's reads do not queue behind a delete batch (WAL)."""
        c = self.config
        if "turso" not in c.sinks or not (c.retention_days or c.rollup_retention_days):
            return
        self._prune_db = open_log_database(c.log_database_url, c.auth_token or None, http)
        csv = next((sink for sink in self._built if isinstance(sink, CsvSink)), None)
        self.pruner = Pruner(
            self._prune_db, retention_days=c.retention_days, rollup_days=c.rollup_retention_days,
            csv=csv, holder=holder_name(f"w{self.ids.worker_id}"),
        )
        self._pruning = asyncio.create_task(self.pruner.run(), name="log-prune")

    def _sinks(self) -> list[Sink]:
        c, sinks = self.config, []
        for name in c.sinks:
            if name == "csv":
                # Several worker processes each write their own files (a worker suffix).
                suffix = f".w{self.ids.worker_id}" if c.workers > 1 else ""
                sinks.append(
                    CsvSink(
                        c.logs_path, suffix=suffix, max_bytes=c.csv_max_bytes, keep=c.csv_keep,
                        can_delete=lambda table, max_id: self.fanout is None or self.fanout.csv_can_delete(table, max_id),
                    )
                )
            elif name == "stdout":
                # Worker processes share one stdout pipe: a lock file serialises their writes.
                lock = c.data_dir / "stdout.lock" if c.workers > 1 else None
                sinks.append(StdoutSink(project=c.cloud_project, lock_path=lock))
            elif name == "turso":
                assert self.log_db is not None
                sinks.append(TursoSink(self.log_db, schema_ready=self._schema_ready))
            else:
                logger.error("unknown log sink %r in LOG_SINKS; ignored", name)
        return sinks

    async def _lease_worker_id(self) -> None:
        assert self.log_db is not None
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"
        self._leased_at = time.time()
        try:
            with anyio.fail_after(10):
                self.lease = await acquire_worker_id(self.log_db, holder, now=self._leased_at, ttl=LEASE_TTL)
        except Exception as exc:
            logger.error(
                "could not lease a log worker id from the log database (%s); using %d: ids are unique "
                "only while no other instance does the same", exc, FALLBACK_WORKER_ID,
            )
            self.ids = SnowflakeIds(FALLBACK_WORKER_ID, _now_ms)
            return
        self.ids = SnowflakeIds(self.lease.worker_id, _now_ms)
        self._renewal = asyncio.create_task(
            keep_renewed(
                self.log_db, self.lease, ttl=LEASE_TTL, interval=LEASE_RENEW, clock=time.time,
                sleep=anyio.sleep, on_lost=lambda lease: logger.error("log worker id lease lost"),
            )
        )

    async def flush_due(self) -> None:
        """LOG_FLUSH=request: write due batches inside the request (no background CPU needed)."""
        if self.fanout is not None:
            self.build_pending()
            await self.fanout.flush_due()
            self.checkpoint()

    async def aclose(self, deadline: float | None = None) -> dict[str, Any]:
        """Write what is queued within `deadline` seconds (config.flush_deadline), release the
        worker id, close the log database. What cannot be written stays in the CSV files."""
        deadline = self.config.flush_deadline if deadline is None else deadline
        summary: dict[str, Any] = {}
        if self._replaying is not None:  # what it did not replay stays in CSV for `logs sync`
            self._replaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replaying
        if self._pruning is not None:  # batches done stay done; the next round carries on
            self._pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruning
        if self._prune_db is not None:
            await self._prune_db.aclose()
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
        if self._lease_watch is not None:
            self._lease_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_watch
        self._closing = True  # from now on rows are built as they are recorded
        self.build_pending()
        if self.fanout is not None:
            summary = await self.fanout.aclose(deadline=deadline)
            if self.wal is not None:  # everything written: no file left; else the next start recovers
                self.wal.close(everything_written=self.fanout.all_written())
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        if self.lease is not None and self.log_db is not None:
            with contextlib.suppress(Exception), anyio.fail_after(1):  # within a 10 s SIGTERM window
                await release_worker_id(self.log_db, self.lease)
        if self.log_db is not None:
            await self.log_db.aclose()
        if self._owned_http is not None:
            await self._owned_http.aclose()
            self._owned_http = None
        return summary

    async def __aenter__(self) -> Tracing:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[dict[str, Any]]:
        """A Starlette/FastAPI lifespan: open, then `request.state.tracing`, then close."""
        async with self:
            yield {"tracing": self}

    # tasks and reads ------------------------------------------------------------------------
    def task(self, trace_id: str, task_name: str, *, clock: Callable[[], float] = time.time) -> TaskTracker:
        """A tracker for one run of a multi-step task, its rows under `trace_id`."""
        return TaskTracker(
            trace_id, task_name, emit=self._emit_task, next_id=self.next_id, clock=clock, redact=self._redact
        )

    @property
    def reader(self) -> LogReader:
        """Read access to the log database (the explorer, progress bars). Task and request rows
        are there only when the "turso" sink writes them; `reader.written` says so."""
        return LogReader(self.log_db, written="turso" in self.config.sinks)

    def stats(self) -> dict[str, Any]:
        if self.fanout is None:
            return {"enabled": False}
        self.build_pending()  # so the counts include every request recorded so far
        return {
            "enabled": True,
            "worker_id": self.ids.worker_id,
            "record_errors": self.record_errors,
            "interrupted_closed": self.interrupted_closed,
            **self.fanout.stats(),
            **({"replay": self.replay.stats()} if self.replay is not None else {}),
            **({"prune": self.pruner.stats()} if self.pruner is not None else {}),
            **({"wal": {**self.wal.stats(), **self.recovered}} if self.wal is not None else {}),
        }
