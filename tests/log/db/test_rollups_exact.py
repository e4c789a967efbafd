"""The explorer's rollups stay exact when each write batch counts the rows it inserted: after a
random workload of inserts, replays, duplicates within a batch, conflicting ids and `logs sync`
runs of the CSV files (no pruning), every rollup table equals a GROUP BY over the raw rows,
computed here in Python from what api_logs holds."""

from __future__ import annotations

import calendar
import datetime as dt
import sqlite3
from collections import Counter
from pathlib import Path

import anyio
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from log.core.rows import ApiLog
from log.db.database import FileLogDatabase
from log.db.schema import COUNT_STAGED, STAGE_SQL
from log.explorer.queries import bucket_of
from log.sinks.csv_sink import CsvSink
from log.sinks.replay import sync_csv
from log.sinks.turso_sink import TursoSink

BASE = dt.datetime(2026, 3, 1, 23, 50, tzinfo=dt.UTC)  # hour and day boundaries inside the range

rows = st.builds(
    ApiLog,
    id=st.integers(1, 60),  # few ids: replays and conflicts are frequent
    trace_id=st.just("t"),
    method=st.sampled_from(["GET", "POST"]),
    endpoint=st.sampled_from(["/a", "/a?q=1", "/b/7", "/b/8?x=y"]),
    request_header=st.none(),
    request_body=st.none(),
    response_status=st.one_of(st.none(), st.sampled_from([200, 302, 404, 500])),
    response_body=st.none(),
    duration_ms=st.one_of(st.none(), st.integers(-1, 70_000)),
    ip_address=st.none(),
    user_id=st.none(),
    created_at=st.one_of(
        st.integers(0, 3 * 3600).map(lambda s: (BASE + dt.timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S.000")),
        st.just("not a time"),  # never counted, as the backfill skips it
    ),
    route=st.one_of(st.none(), st.just("/b/{n:int}")),
)
# ("write", batch): straight into the log DB; ("csv", batch): to the CSV file, sent by every later
# ("sync", batch size) run; ("replay", k): the last batch written again, k times over.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.lists(rows, max_size=12)),
        st.tuples(st.just("csv"), st.lists(rows, max_size=12)),
        st.tuples(st.just("sync"), st.integers(1, 7)),
        st.tuples(st.just("replay"), st.integers(1, 2)),
    ),
    max_size=8,
)


def expected(path: Path) -> dict[str, Counter]:
    """GROUP BY over the raw rows: the rollups as they must be."""
    with sqlite3.connect(path) as conn:
        raw = conn.execute("SELECT created_at, response_status, duration_ms, route, endpoint FROM api_logs").fetchall()
    out: dict[str, Counter] = {"minute": Counter(), "hour": Counter(), "day": Counter(), "status_hour": Counter(),
                               "total": Counter()}
    for created_at, status, duration, route, endpoint in raw:
        try:
            at = calendar.timegm(dt.datetime.strptime(created_at, "%Y-%m-%d %H:%M:%S.%f").timetuple())
        except ValueError:
            continue
        cls = status // 100 if status is not None else 0
        key = route if route is not None else endpoint.split("?", 1)[0]
        out["minute"][(at // 60, cls)] += 1
        out["hour"][(at // 3600, key, cls, bucket_of(duration))] += 1
        out["day"][(at // 86400, key, cls, bucket_of(duration))] += 1
        out["status_hour"][(at // 3600, cls)] += 1
        out["total"][(key, cls, bucket_of(duration))] += 1
    return out


def stored(path: Path) -> dict[str, Counter]:
    with sqlite3.connect(path) as conn:
        return {
            "minute": Counter({tuple(r[:-1]): r[-1] for r in conn.execute("SELECT * FROM api_status_minute")}),
            "hour": Counter({tuple(r[:-1]): r[-1] for r in conn.execute("SELECT * FROM api_latency_hour")}),
            "day": Counter({tuple(r[:-1]): r[-1] for r in conn.execute("SELECT * FROM api_latency_day")}),
            "status_hour": Counter({tuple(r[:-1]): r[-1] for r in conn.execute("SELECT * FROM api_status_hour")}),
            "total": Counter({tuple(r[:-1]): r[-1] for r in conn.execute("SELECT * FROM api_latency_total")}),
        }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_rollups_equal_a_group_by_over_the_raw_rows(tmp_path_factory, ops) -> None:
    tmp = tmp_path_factory.mktemp("rollups")
    path, log_dir = tmp / "logs.db", tmp / "logs"

    async def run() -> None:
        db = FileLogDatabase(str(path))
        sink, csv = TursoSink(db), CsvSink(log_dir)
        await sink.open()
        await csv.open()
        last: list[ApiLog] = []
        try:
            for op, arg in ops:
                if op == "write":
                    await sink.write("api_logs", arg)
                    last = arg
                elif op == "csv":
                    await csv.write("api_logs", arg)
                elif op == "sync":
                    await sync_csv(log_dir, sink, batch_size=arg)  # every CSV row, again each time
                else:
                    await sink.write("api_logs", last * arg)
        finally:
            await csv.close()
            await db.aclose()

    anyio.run(run)
    want, got = expected(path), stored(path)
    assert got == want
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM api_rollup_pending").fetchone()[0] == 0


def test_a_database_with_the_old_trigger_loses_it_and_counts_each_row_once(tmp_path: Path) -> None:
    """An existing database kept its rollups by trigger: the next start drops it; rows written by
    an older instance (trigger still there) and by this one (batch counts) are each counted once."""
    path = tmp_path / "logs.db"
    old_trigger = (
        "CREATE TRIGGER api_logs_rollup AFTER INSERT ON api_logs BEGIN "
        "INSERT INTO api_status_minute (minute, status_class, n) "
        "VALUES (CAST(strftime('%s', NEW.created_at) AS INTEGER) / 60, COALESCE(NEW.response_status / 100, 0), 1) "
        "ON CONFLICT (minute, status_class) DO UPDATE SET n = n + 1; END"
    )
    row = ApiLog(id=1, trace_id="t", method="GET", endpoint="/a", request_header=None, request_body=None,
                 response_status=200, response_body=None, duration_ms=3, ip_address=None, user_id=None,
                 created_at="2026-03-01 10:00:00.000")

    async def run() -> None:
        db = FileLogDatabase(str(path))
        try:
            sink = TursoSink(db)
            await sink.open()
            await db.transaction([(old_trigger, ())])  # an older instance started after this one
            await sink.write("api_logs", [row])  # counted by the trigger, not staged
            await TursoSink(db).open()  # the next start of this version
            await sink.write("api_logs", [msgspec.structs.replace(row, id=2)])  # counted by the batch
        finally:
            await db.aclose()

    anyio.run(run)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name = 'api_logs_rollup'").fetchall() == []
        assert conn.execute("SELECT SUM(n) FROM api_status_minute").fetchone()[0] == 2
        # The hourly copy follows the minutes whoever writes them (here the old trigger, then a batch).
        assert conn.execute("SELECT hour, status_class, n FROM api_status_hour").fetchall() == [(1772359200 // 3600, 2, 2)]


def test_an_older_versions_batches_reach_the_hourly_and_all_time_rollups(tmp_path: Path) -> None:
    """During a rolling deploy an instance of the previous version keeps writing batches that
    know only the minute, hour and day rollups: the coarser copies count its rows all the same."""
    path = tmp_path / "logs.db"
    row = ApiLog(id=1, trace_id="t", method="GET", endpoint="/a?x=1", request_header=None, request_body=None,
                 response_status=500, response_body=None, duration_ms=40, ip_address=None, user_id=None,
                 created_at="2026-03-01 10:00:00.000", route="/a")

    async def run() -> None:
        db = FileLogDatabase(str(path))
        try:
            await TursoSink(db).open()
            old_batch = COUNT_STAGED  # the batch itself names only the minute, hour and day rollups
            assert not any("api_status_hour" in s or "api_latency_total" in s for s in old_batch)
            await db.transaction([(STAGE_SQL, ("[1]",)),
                                  ("INSERT INTO api_logs (id, trace_id, method, endpoint, response_status, duration_ms,"
                                   " created_at, route) VALUES (1, 't', 'GET', '/a?x=1', 500, 40, ?, '/a')", (row.created_at,)),
                                  *[(s, ()) for s in old_batch]])
            await TursoSink(db).write("api_logs", [msgspec.structs.replace(row, id=2)])  # this version
        finally:
            await db.aclose()

    anyio.run(run)
    assert stored(path) == expected(path)
