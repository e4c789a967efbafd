"""Retention on both backends (a `file:` database and the strict Hrana stand-in): expired rows go,
newer ones stay, rollups keep their own window, one instance prunes at a time, a prune cut off
mid-way resumes, and nothing pruned comes back through sync or replay."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from cli import main
from log import ConfigError, Tracing, TracingConfig, prune_logs, sync_logs
from log.core.retention import file_extent, keep_from, prune_before, stamp
from log.core.rows import ApiLog, LogRow, TaskProgressLog
from log.db.database import FileLogDatabase, HttpLogDatabase, LogDatabase
from log.db.lease import acquire_job_lease
from log.sinks.csv_sink import CsvSink, csv_files
from log.sinks.replay import replay_ranges
from log.sinks.turso_sink import TursoSink
from log.tools.prune import JOB, Pruner
from settings import Settings
from tests.support.app import make_settings
from tests.support.hrana_server import HranaServer, running

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
T0 = NOW.timestamp()
ROLLUP_TABLES = ("api_status_minute", "api_latency_hour", "api_latency_day")


def ago(days: float, seconds: int = 0) -> str:
    return stamp(NOW - dt.timedelta(days=days, seconds=seconds))


def api(i: int, days: float, endpoint: str = "/items") -> ApiLog:
    return ApiLog(
        id=i, trace_id=f"t{i}", method="GET", endpoint=f"{endpoint}/{i}", request_header=None, request_body=None,
        response_status=200 if i % 3 else 500, response_body=None, duration_ms=i % 40, ip_address=None,
        user_id=None, created_at=ago(days, i),
    )  # fmt: skip


def task(i: int, days: float) -> TaskProgressLog:
    return TaskProgressLog(
        id=i, trace_id=f"t{i}", task_name="import", step_name="parse", status="SUCCESS", input_data=None,
        output_data=None, error_message=None, stack_trace=None, execution_order=1, created_at=ago(days, i),
    )  # fmt: skip


# 30-day window for rows, 400 days for rollups.
OLD_API = [api(i, 40) for i in range(1, 13)]  # rows expired, their rollups kept
NEW_API = [api(i, 10) for i in range(101, 108)]
ANCIENT_API = [api(i, 500, "/ancient") for i in range(201, 204)]  # rows and rollups expired
OLD_TASKS = [task(i, 40) for i in range(301, 310)]
NEW_TASKS = [task(i, 1) for i in range(401, 405)]


@pytest.fixture(params=["file", "http"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "file":
        yield f"file:{tmp_path / 'logs.db'}"
    else:
        with running(HranaServer(str(tmp_path / "remote.db"))) as r:
            yield r.url


@pytest.fixture
async def make_db(db_url: str, anyio_backend: str) -> AsyncIterator[Callable[[], LogDatabase]]:
    """Each call: another 'instance' with its own connection to the same log database."""
    opened: list[FileLogDatabase] = []
    async with httpx.AsyncClient() as client:
        def make() -> LogDatabase:
            if db_url.startswith("http"):
                return HttpLogDatabase(client, db_url)
            db = FileLogDatabase(db_url[len("file:"):])
            opened.append(db)
            return db

        yield make
    for db in opened:
        db.close()


async def fill(db: LogDatabase, rows: list[LogRow]) -> None:
    """Rows in through the sink, so the rollup triggers count them as in production."""
    sink = TursoSink(db)
    await sink.open()
    await sink.write("api_logs", [r for r in rows if isinstance(r, ApiLog)])
    await sink.write("task_progress_logs", [r for r in rows if isinstance(r, TaskProgressLog)])


async def ids(db: LogDatabase, table: str) -> list[int]:
    return [r["id"] for r in await db.select(f"SELECT id FROM {table} ORDER BY id")]


async def rollups(db: LogDatabase) -> dict[str, list[dict[str, Any]]]:
    return {t: await db.select(f"SELECT * FROM {t} ORDER BY 1, 2, 3") for t in ROLLUP_TABLES}


def without_ancient(snapshot: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The rollup rows of periods inside the 400-day window: those of OLD_API and NEW_API."""
    cutoff = int((NOW - dt.timedelta(days=400)).timestamp())
    keys = {"api_status_minute": ("minute", 60), "api_latency_hour": ("hour", 3600), "api_latency_day": ("day", 86400)}
    return {t: [r for r in rows if r[keys[t][0]] >= cutoff // keys[t][1]] for t, rows in snapshot.items()}


def pruner(db: LogDatabase, *, at: float = 0.0, sleep: Any = None, batch: int = 4, **kw: Any) -> Pruner:
    return Pruner(
        db, retention_days=30, rollup_days=400, clock=lambda: T0 + at, sleep=sleep or no_pause,
        batch=batch, pause=0, first_delay=0, **kw,
    )


async def no_pause(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


class Gate:
    """A pause that stops the pruner between two batches until let go."""

    def __init__(self) -> None:
        self.paused, self.go = anyio.Event(), anyio.Event()

    async def __call__(self, seconds: float) -> None:
        self.paused.set()
        await self.go.wait()


ALL = [*OLD_API, *NEW_API, *ANCIENT_API, *OLD_TASKS, *NEW_TASKS]


@pytest.mark.anyio
async def test_expired_rows_go_newer_stay_and_rollups_keep_their_own_window(make_db) -> None:
    db = make_db()
    await fill(db, ALL)
    before = await rollups(db)
    assert sum(r["n"] for r in before["api_status_minute"]) == len(OLD_API + NEW_API + ANCIENT_API)

    counts = await pruner(db).round()

    assert await ids(db, "api_logs") == [r.id for r in NEW_API]
    assert await ids(db, "task_progress_logs") == [r.id for r in NEW_TASKS]
    assert counts is not None
    assert counts["api_logs"] == len(OLD_API + ANCIENT_API) and counts["task_progress_logs"] == len(OLD_TASKS)
    after = await rollups(db)
    assert after == without_ancient(before)  # deleted rows stay counted, inside the rollup window
    assert all(r["endpoint"] != "/ancient/201" for r in after["api_latency_hour"] + after["api_latency_day"])
    assert sum(r["n"] for r in after["api_status_minute"]) == len(OLD_API + NEW_API)


@pytest.mark.anyio
async def test_a_second_instance_does_not_prune_at_the_same_time_nor_within_the_hour(make_db) -> None:
    await fill(make_db(), ALL)
    gate = Gate()
    first = pruner(make_db(), sleep=gate)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.round)
        with anyio.fail_after(10):
            await gate.paused.wait()  # first has deleted one batch and holds the lease
        second = pruner(make_db(), at=30)
        assert await second.round() is None and second.skipped == 1
        left = await ids(make_db(), "api_logs")
        assert len(left) == len(OLD_API + NEW_API + ANCIENT_API) - 4  # only first's batch of 4 went
        gate.go.set()
    assert first.rounds == 1 and await ids(make_db(), "api_logs") == [r.id for r in NEW_API]
    # A round started less than an hour ago, by whichever instance: the next waits.
    assert await pruner(make_db(), at=3000).round() is None
    assert await pruner(make_db(), at=3601).round() == {
        "api_logs": 0, "task_progress_logs": 0, **{t: 0 for t in ROLLUP_TABLES}}


@pytest.mark.anyio
async def test_a_prune_cut_off_mid_way_resumes_safely(make_db) -> None:
    db = make_db()
    await fill(db, ALL)
    before = await rollups(db)
    gate = Gate()
    async with anyio.create_task_group() as tg:
        tg.start_soon(pruner(make_db(), sleep=gate).round)
        with anyio.fail_after(10):
            await gate.paused.wait()
        tg.cancel_scope.cancel()  # shutdown between two batches
    assert len(await ids(db, "api_logs")) == len(OLD_API + NEW_API + ANCIENT_API) - 4  # one whole batch

    # Its lease was not released: nobody else starts before it expires and the hour is over.
    assert await pruner(make_db(), at=60).round() is None
    resumed = await pruner(make_db(), at=3601).round()
    assert resumed is not None and resumed["api_logs"] == len(OLD_API + ANCIENT_API) - 4
    assert await ids(db, "api_logs") == [r.id for r in NEW_API]
    assert await ids(db, "task_progress_logs") == [r.id for r in NEW_TASKS]
    assert await rollups(db) == without_ancient(before)


@pytest.mark.anyio
async def test_the_pruner_renews_its_lease_with_each_batch_and_stops_when_it_is_lost(make_db) -> None:
    await fill(make_db(), ALL)
    gate = Gate()
    slow = pruner(make_db(), sleep=gate)
    async with anyio.create_task_group() as tg:
        tg.start_soon(slow.round)
        with anyio.fail_after(10):
            await gate.paused.wait()
        # Stalled past the lease's 300 s and the hour: another instance takes the job over.
        taker = await acquire_job_lease(make_db(), JOB, "other", now=T0 + 4000, ttl=300, every=3600)
        assert taker is not None
        gate.go.set()
    assert slow.errors == 1 and "taken over" in (slow.last_error or "")
    assert slow.rounds == 0


@pytest.mark.anyio
async def test_a_sync_or_replay_after_a_prune_inserts_nothing_old(db_url: str, tmp_path: Path, make_db) -> None:
    config = TracingConfig(data_dir=tmp_path, database_url=db_url, retention_days=30)
    sink = CsvSink(config.logs_path, max_bytes=1_000, keep=100)
    await sink.open()
    rows = [*OLD_API, *NEW_API, *ANCIENT_API]
    await sink.write("api_logs", rows)
    db = make_db()
    await fill(db, rows)  # the live path wrote them to the database too
    await pruner(db).round()
    pruned = await rollups(db)

    out = io.StringIO()
    code = await anyio.to_thread.run_sync(lambda: sync_logs(config, full=True, out=out, err=io.StringIO(), now=NOW))
    assert code == 0
    line = next(line for line in out.getvalue().splitlines() if "api_logs:" in line)
    assert "inserted 0" in line and f"skipped as expired {len(OLD_API + ANCIENT_API)}" in line
    assert f"already present {len(NEW_API)}" in line
    assert await ids(db, "api_logs") == [r.id for r in NEW_API]
    assert await rollups(db) == pruned  # nothing counted twice

    everything = {"api_logs": (0, 10**6)}
    counts = await replay_ranges(config.logs_path, TursoSink(db), everything, keep_from=keep_from(NOW, 30))
    assert (counts.inserted, counts.expired, counts.already_present) == (0, len(OLD_API + ANCIENT_API), len(NEW_API))
    assert await rollups(db) == pruned


@pytest.mark.anyio
async def test_without_the_skip_a_sync_would_count_pruned_rows_again(db_url: str, tmp_path: Path, make_db) -> None:
    """The hazard the skip prevents: rows pruned from the database, then sent again from CSV."""
    config = TracingConfig(data_dir=tmp_path, database_url=db_url, retention_days=0)  # no skip
    sink = CsvSink(config.logs_path)
    await sink.open()
    await sink.write("api_logs", OLD_API)
    db = make_db()
    await fill(db, OLD_API)
    await pruner(db).round()
    pruned = await rollups(db)
    await anyio.to_thread.run_sync(lambda: sync_logs(config, full=True, out=io.StringIO(), err=io.StringIO(), now=NOW))
    again = await rollups(db)
    assert sum(r["n"] for r in again["api_status_minute"]) == 2 * sum(r["n"] for r in pruned["api_status_minute"])


# -- CSV files -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_rotated_csv_files_whose_rows_all_expired_are_deleted(tmp_path: Path) -> None:
    held: list[int] = []
    sink = CsvSink(tmp_path, max_bytes=600, keep=100, can_delete=lambda table, max_id: max_id not in held)
    await sink.open()
    for row in [*ANCIENT_API, *OLD_API, *NEW_API[:3]]:
        await sink.write("api_logs", [row])
    await sink.write("api_logs", [api(999, 45)])  # the current file: an expired row, but it stays
    files = csv_files(tmp_path, "api_logs")[""]
    extents = {path: extent_of(path) for path in files}
    before = prune_before(NOW, 30)
    held.append(OLD_API[-1].id)  # a row some remote sink has not acknowledged yet

    deleted = await anyio.to_thread.run_sync(sink.delete_expired, before)

    left = csv_files(tmp_path, "api_logs")[""]
    assert sorted(deleted + left) == sorted(files) and sink.path("api_logs") in left
    for path in deleted:
        assert extents[path][1] < before and extents[path][0] not in held
    for path in left:
        if path != sink.path("api_logs"):
            assert extents[path][1] >= before or extents[path][0] in held
    assert len(deleted) >= 2 and any(extents[p][1] >= before for p in left)
    assert await anyio.to_thread.run_sync(sink.delete_expired, None) == []  # retention off


def extent_of(path: Path) -> tuple[int, str]:
    with path.open(encoding="utf-8", newline="") as f:
        extent = file_extent(f)
    assert extent is not None
    return extent


# -- the command -----------------------------------------------------------------------------------


def test_logs_prune_dry_run_counts_and_the_real_run_deletes_with_progress(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path, turso_database_url=db_url, log_retention_days=30)

    async def setup() -> None:
        async with httpx.AsyncClient() as client:
            db = HttpLogDatabase(client, db_url) if db_url.startswith("http") else FileLogDatabase(db_url[5:])
            await fill(db, ALL)
            await db.aclose()

    anyio.run(setup)
    assert main(["logs", "prune", "--dry-run"], settings=settings) == 0
    out = capsys.readouterr().out
    assert f"api_logs: would delete {len(OLD_API + ANCIENT_API)}" in out
    assert f"task_progress_logs: would delete {len(OLD_TASKS)}" in out and "CSV files: would delete 0" in out

    assert main(["logs", "prune", "--batch", "5"], settings=settings) == 0
    captured = capsys.readouterr()
    expired = len(OLD_API + ANCIENT_API)
    assert "\rprune api_logs" in captured.err and f"{expired}/{expired}" in captured.err
    assert f"api_logs: deleted {len(OLD_API + ANCIENT_API)}" in captured.out
    assert "api_status_minute: deleted" in captured.out and "api_status_minute: deleted 0" not in captured.out

    assert main(["logs", "prune"], settings=settings) == 0  # nothing left: deletes nothing
    assert "api_logs: deleted 0" in capsys.readouterr().out


def test_logs_prune_stops_while_another_instance_prunes(db_url: str, tmp_path: Path, capsys) -> None:
    settings = Settings(data_dir=tmp_path, turso_database_url=db_url)

    async def someone_else_prunes() -> None:
        async with httpx.AsyncClient() as client:
            db = HttpLogDatabase(client, db_url) if db_url.startswith("http") else FileLogDatabase(db_url[5:])
            await fill(db, ALL)
            assert await acquire_job_lease(db, JOB, "app:host-b:7", now=dt.datetime.now(dt.UTC).timestamp(),
                                           ttl=300, every=3600)
            await db.aclose()

    anyio.run(someone_else_prunes)
    assert main(["logs", "prune"], settings=settings) == 1
    assert "another instance is pruning (app:host-b:7" in capsys.readouterr().err


def test_logs_prune_with_everything_kept_does_nothing(tmp_path: Path) -> None:
    config = TracingConfig(data_dir=tmp_path, retention_days=0, rollup_retention_days=0)
    out = io.StringIO()
    assert prune_logs(config, out=out) == 0 and "everything is kept" in out.getvalue()
    assert not (tmp_path / "logs.db").exists()


# -- settings and wiring ---------------------------------------------------------------------------


def test_retention_settings_are_read_and_checked() -> None:
    assert (TracingConfig.from_env({}).retention_days, TracingConfig.from_env({}).rollup_retention_days) == (30, 400)
    config = TracingConfig.from_env({"LOG_RETENTION_DAYS": "7", "LOG_ROLLUP_RETENTION_DAYS": "0"})
    assert (config.retention_days, config.rollup_retention_days) == (7, 0)
    for name in ("LOG_RETENTION_DAYS", "LOG_ROLLUP_RETENTION_DAYS"):
        for bad in ("-1", "30d", "1.5"):
            with pytest.raises(ConfigError, match=name):
                TracingConfig.from_env({name: bad})
    settings = Settings.from_env({"LOG_RETENTION_DAYS": "9", "LOG_ROLLUP_RETENTION_DAYS": "90"}, env_file=None)
    assert (settings.tracing.retention_days, settings.tracing.rollup_retention_days) == (9, 90)


@pytest.mark.anyio
async def test_tracing_runs_the_pruner_where_it_writes_the_log_database(tmp_path: Path) -> None:
    tracing = Tracing(make_settings(tmp_path, log_sinks=("csv", "turso")).tracing)
    await tracing.open()
    try:
        assert tracing.pruner is not None and tracing._pruning is not None and not tracing._pruning.done()
        assert tracing.pruner.csv is not None  # this process's own CSV files too
        assert tracing.stats()["prune"]["rounds"] == 0
    finally:
        await tracing.aclose()
    assert tracing._pruning.done()

    for sinks, days in ((("csv",), 30), (("csv", "turso"), 0)):
        other = Tracing(make_settings(tmp_path / str(len(sinks)), log_sinks=sinks, log_retention_days=days,
                                      log_rollup_retention_days=days).tracing)
        await other.open()
        assert other.pruner is None
        await other.aclose()
