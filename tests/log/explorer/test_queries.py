"""log/queries.py against a real SQLite database: every filter, pagination, injection, rollups."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import sqlite3
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from log.db.schema import COUNT_STAGED, ROLLUP_BATCH_PATH, ROLLUPS_PATH, STAGE_SQL, SCHEMA_SQL as SCHEMA
from log.db.schema import split_statements as sql_statements
from log.explorer.queries import (
    chart_window,
    build_tail_query,
    exception_type,
    exception_type_sql,
    new_errors_query,
    LIST_COLUMNS,
    OVERFLOW_BUCKET,
    SNOWFLAKE_EPOCH_MS,
    UTC,
    ID_FLOOR_SLACK,
    FilterError,
    LogFilters,
    bucket_bounds,
    bucket_of,
    bucket_sql,
    build_list_query,
    build_overview,
    cover,
    endpoint_stats,
    id_floor,
    parse_filters,
    percentile,
    status_class_count,
    stamp,
    time_window,
)
from log.core.ids import SnowflakeIds
from log.core.rows import ApiLog
from log.core.trace import canonical_uuid
from log.db.database import FileLogDatabase, HttpLogDatabase, LogDatabase
from log.sinks.turso_sink import TursoSink
from tests.support.hrana_server import HranaServer, running

NOW = dt.datetime(2026, 3, 10, 12, 30, 15, 500_000, tzinfo=UTC)
ENDPOINTS = ["/items", "/items?q=a%b", "/items_x", "/items/1", "/login", "/ité'm", "/a\"b;--", "/"]
USERS = [None, "1", "2", "o'brien", "x\"; DROP TABLE api_logs; --", "ü"]
TRACES = [
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "33333333-3333-4333-8333-333333333333",
]
STATUSES = [200, 201, 302, 404, 422, 500, 503, None]
METHODS = ["GET", "POST", "DELETE"]


def connect() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("BEGIN")
    for s in sql_statements(SCHEMA + ROLLUPS_PATH.read_text()):
        conn.execute(s)
    conn.execute("COMMIT")
    return conn


def snowflake(ms: int, seq: int) -> int:
    return ((ms - SNOWFLAKE_EPOCH_MS) << 22) | (3 << 12) | (seq & 0xFFF)


def make_rows(n: int, seed: int, span: dt.timedelta = dt.timedelta(days=9), first_seq: int = 0) -> list[dict]:
    """Requests spread over `span` before NOW; the id is issued when the request ends."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        received = NOW - span * rnd.random()
        duration = rnd.choice([None, 0, 3, 15, 16, 40, 99, 100, 250, 1200, 70_000])
        ms = math.floor(received.timestamp() * 1000)
        rows.append({
            "id": snowflake(ms + (duration or 0), first_seq + i),
            "trace_id": rnd.choice(TRACES),
            "method": rnd.choice(METHODS),
            "endpoint": rnd.choice(ENDPOINTS),
            "response_status": rnd.choice(STATUSES),
            "duration_ms": duration,
            "ip_address": "127.0.0.1",
            "user_id": rnd.choice(USERS),
            "created_at": stamp(received),
        })
    return rows


def insert(conn: sqlite3.Connection, rows: list[dict], replay: bool = False) -> None:
    """One write batch as the sink writes it: stage the new ids, insert, count them in the rollups."""
    cols = ["id", "trace_id", "method", "endpoint", "response_status", "duration_ms", "ip_address", "user_id", "created_at"]
    tail = " ON CONFLICT(id) DO NOTHING" if replay else ""
    conn.execute("BEGIN")
    conn.execute(STAGE_SQL, [json.dumps([r["id"] for r in rows])])
    conn.executemany(
        f"INSERT INTO api_logs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))}){tail}",
        [[r[c] for c in cols] for r in rows],
    )
    for s in COUNT_STAGED:
        conn.execute(s)
    conn.execute("COMMIT")


ROWS = make_rows(400, seed=7) + make_rows(40, seed=8, span=dt.timedelta(minutes=14), first_seq=1000)


@pytest.fixture(scope="module")
def db() -> sqlite3.Connection:
    conn = connect()
    insert(conn, ROWS)
    return conn


def matches(row: dict, f: LogFilters, now: dt.datetime) -> bool:
    """The filters' meaning, in Python: the reference the SQL must agree with."""
    start, end = time_window(f, now)
    status = row["response_status"]
    return (
        (start is None or row["created_at"] >= stamp(start))
        and (end is None or row["created_at"] < stamp(end))
        and (f.code is None or status == f.code)
        and (not f.status or (status is not None and (
            400 <= status <= 599 if f.status == "errors" else status // 100 == int(f.status[0]))))
        and (not f.method or row["method"] == f.method)
        and row["endpoint"].startswith(f.endpoint)
        and (not f.user or row["user_id"] == f.user)
        and (not f.trace or row["trace_id"] == canonical_uuid(f.trace))
        and (f.min_ms is None or (row["duration_ms"] is not None and row["duration_ms"] >= f.min_ms))
    )


def expected(f: LogFilters, now: dt.datetime = NOW) -> list[int]:
    return sorted((r["id"] for r in ROWS if matches(r, f, now)), reverse=True)


def run_list(conn, f: LogFilters, limit: int = 10_000, before: int | None = None) -> list[int]:
    """The rows, checked to be the same with either plan (rare_status on or off)."""
    results = []
    for rare in (False, True):
        sql, args = build_list_query(f, now=NOW, limit=limit, before_id=before, rare_status=rare)
        results.append([r["id"] for r in conn.execute(sql, args)])
    assert results[0] == results[1]
    return results[0]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"range": "15m"}, {"range": "1h"}, {"range": "24h"}, {"range": "7d"}, {"range": "all"},
        {"from": "2026-03-05T00:00", "to": "2026-03-07T12:00"},
        {"from": "2026-03-08T10:00"},
        {"to": "2026-03-04T00:00:00"},
        {"range": "all", "status": "5xx"}, {"range": "all", "status": "2xx"}, {"range": "all", "status": "4xx"},
        {"range": "all", "status": "errors"}, {"range": "24h", "status": "errors", "method": "GET"},
        {"range": "all", "code": "404"}, {"range": "all", "code": "503", "status": "5xx"},
        {"range": "all", "method": "post"},
        {"range": "all", "endpoint": "/items"}, {"range": "all", "endpoint": "/items_"},
        {"range": "all", "endpoint": "/items?q=a%"}, {"range": "all", "endpoint": "/ité'"},
        {"range": "all", "user": "o'brien"}, {"range": "all", "user": "x\"; DROP TABLE api_logs; --"},
        {"range": "all", "trace": TRACES[1].upper()}, {"range": "all", "trace": TRACES[2].replace("-", "")},
        {"range": "all", "min_ms": "100"}, {"range": "all", "min_ms": "0"},
        {"range": "7d", "status": "5xx", "method": "GET", "endpoint": "/items", "min_ms": "16"},
    ],
)
def test_each_filter_returns_exactly_the_matching_rows(db, params) -> None:
    f = parse_filters(params)
    want = expected(f)
    assert run_list(db, f) == want
    assert want, "fixture should exercise each filter with some rows"


def test_presets_and_custom_ranges_differ_as_expected(db) -> None:
    counts = [len(run_list(db, parse_filters({"range": r}))) for r in ("15m", "1h", "24h", "7d", "all")]
    assert counts == sorted(counts) and counts[-1] == len(ROWS) and counts[2] < counts[3] < counts[4]


@pytest.mark.parametrize(
    "params, name",
    [
        ({"range": "2d"}, "range"), ({"status": "6xx"}, "status"), ({"code": "99"}, "code"),
        ({"code": "abc"}, "code"), ({"method": "BREW"}, "method"), ({"min_ms": "-1"}, "min_ms"),
        ({"from": "yesterday"}, "from"), ({"to": "2026-13-01T00:00"}, "to"),
        ({"from": "2026-03-02T00:00", "to": "2026-03-01T00:00"}, "from"),
        ({"trace": "not-a-uuid"}, "trace"), ({"endpoint": "/a\x00b"}, "endpoint"),
        ({"user": "x" * 201}, "user"), ({"endpoint": "\ud800"}, "endpoint"),
    ],
)
def test_invalid_filters_raise_a_message_naming_the_parameter(params, name) -> None:
    with pytest.raises(FilterError) as info:
        parse_filters(params)
    assert name in str(info.value)


def test_pagination_has_no_gaps_or_repeats(db) -> None:
    for params in ({"range": "all"}, {"range": "7d", "status": "2xx"}, {"range": "all", "endpoint": "/items"}):
        f = parse_filters(params)
        seen: list[int] = []
        before = None
        while True:
            page = run_list(db, f, limit=7, before=before)
            seen += page
            if len(page) < 7:
                break
            before = page[-1]
        assert seen == expected(f)
        assert len(seen) == len(set(seen))


def test_rare_status_reads_the_status_index(db) -> None:
    f = parse_filters({"range": "all", "status": "5xx"})
    sql, args = build_list_query(f, now=NOW, limit=5, before_id=None, rare_status=True)
    plan = " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, args))
    assert "idx_api_logs_status" in plan
    sql, args = build_list_query(f, now=NOW, limit=5, before_id=None)
    plan = " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, args))
    assert "idx_api_logs_status" not in plan
    count_sql, count_args = status_class_count(f)
    assert db.execute(count_sql, count_args).fetchone()[0] == sum(
        1 for r in ROWS if r["response_status"] is not None and r["response_status"] // 100 == 5
    )


@given(st.integers(min_value=SNOWFLAKE_EPOCH_MS, max_value=SNOWFLAKE_EPOCH_MS + 60 * 365 * 86_400_000),
       st.integers(min_value=0, max_value=1023))
def test_real_snowflake_ids_are_never_below_the_id_floor_of_their_time(ms, worker) -> None:
    """The id floor's premise: an id issued at (or after) a request's receipt is >= id_floor."""
    row_id = SnowflakeIds(worker, now_ms=lambda: ms).next()
    received = dt.datetime.fromtimestamp(ms / 1000, UTC)
    assert row_id >= id_floor(received)
    assert id_floor(received + ID_FLOOR_SLACK + dt.timedelta(milliseconds=2)) > row_id  # and it is tight


def test_list_sql_is_a_parameterised_select_and_never_uses_offset() -> None:
    f = parse_filters({"range": "all", "endpoint": "'; DROP TABLE x; --", "user": "u'", "code": "500"})
    sql, args = build_list_query(f, now=NOW, limit=51, before_id=99)
    assert sql.startswith("SELECT ") and "OFFSET" not in sql.upper()
    assert "DROP" not in sql and "'; " not in sql
    assert args[-2:] == [99, 51]
    assert sql.count("?") == len(args)


FILTER_VALUES = {
    "range": st.sampled_from(["15m", "1h", "24h", "7d", "all", "custom"]),
    "from": st.sampled_from(["2026-03-05T00:00", "2026-03-09T23:59:59", "2026-03-10T12:00"]),
    "to": st.sampled_from(["2026-03-06T00:00", "2026-03-10T12:29", "2026-04-01T00:00"]),
    "status": st.sampled_from(["1xx", "2xx", "3xx", "4xx", "5xx"]),
    "code": st.sampled_from(["200", "302", "404", "500", "503"]),
    "method": st.sampled_from(["get", "POST", "DELETE", "PUT"]),
    "endpoint": st.sampled_from(["/", "/items", "/items_", "/items?q=a%", "/ité'", "/a\"b;"]),
    "user": st.sampled_from([u for u in USERS if u] + ["nobody"]),
    "trace": st.sampled_from(TRACES + [TRACES[0].upper()]),
    "min_ms": st.sampled_from(["0", "16", "100", "5000"]),
}


@given(
    params=st.dictionaries(
        st.sampled_from(sorted(FILTER_VALUES)),
        st.one_of(st.text(max_size=30), st.sampled_from(["'", "%", "_", "' OR 1=1 --", "1; DROP TABLE api_logs"])),
        max_size=4,
    ),
    valid=st.fixed_dictionaries({}, optional=FILTER_VALUES),
)
def test_arbitrary_filter_strings_never_raise_and_never_widen(db, params, valid) -> None:
    """Any mix of arbitrary and valid values: either a FilterError, or exactly the rows the
    parsed filters describe (so an injection attempt is just a value that matches nothing)."""
    merged = {**valid, **params}
    try:
        f = parse_filters(merged)
    except FilterError:
        return
    assert run_list(db, f) == expected(f)
    assert db.execute("SELECT COUNT(*) FROM api_logs").fetchone()[0] == len(ROWS)


# Histogram buckets ---------------------------------------------------------------------


@given(st.integers(min_value=-5, max_value=2**34))
def test_bucket_contains_its_value_and_sql_agrees(value) -> None:
    b = bucket_of(value)
    conn = sqlite3.connect(":memory:")
    assert conn.execute(f"SELECT {bucket_sql('?1')}", [value]).fetchone()[0] == b
    if value < 0:
        assert b == -1
        return
    lo, hi = bucket_bounds(b)
    assert lo <= value and (hi == -1 or value <= hi)
    if b != OVERFLOW_BUCKET and value >= 16:
        assert (hi - lo + 1) / lo <= 0.125 + 1e-9


def test_buckets_are_ordered_and_contiguous() -> None:
    edges = [bucket_bounds(b) for b in range(0, OVERFLOW_BUCKET + 1)]
    for (lo1, hi1), (lo2, _) in zip(edges, edges[1:]):
        assert lo1 <= hi1 and hi1 + 1 == lo2


def test_batch_rollups_and_backfill_use_the_same_bucket_expression() -> None:
    backfill = " ".join(ROLLUPS_PATH.read_text().split())
    batch = " ".join(ROLLUP_BATCH_PATH.read_text().split())
    assert backfill.count(" ".join(bucket_sql("duration_ms").split())) == 2  # hour and day
    assert batch.count(" ".join(bucket_sql("duration_ms").split())) == 1  # once per row, for both


def exact_nearest_rank(values: list[int], p: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


@given(st.lists(st.integers(min_value=0, max_value=200_000), min_size=1, max_size=300))
def test_rollup_percentiles_equal_exact_within_bucket_resolution(durations) -> None:
    conn = connect()
    base = dt.datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    rows = [
        {"id": snowflake(math.floor(base.timestamp() * 1000) + i, i), "trace_id": TRACES[0], "method": "GET",
         "endpoint": "/x?page=2" if i % 2 else "/x", "response_status": 200, "duration_ms": d,
         "ip_address": None, "user_id": None, "created_at": stamp(base + dt.timedelta(seconds=i))}
        for i, d in enumerate(durations)
    ]
    insert(conn, rows)
    hist = {r["bucket"]: r["n"] for r in conn.execute("SELECT bucket, n FROM api_latency_hour WHERE endpoint = '/x'")}
    for p in (50, 95, 99):
        exact = exact_nearest_rank(durations, p)
        got = percentile(hist, p)
        assert bucket_of(got) == bucket_of(exact)  # same bucket: exact to the bucket's width
        assert exact <= got


def test_replayed_inserts_are_not_counted_twice_and_backfill_matches_the_trigger() -> None:
    rows = make_rows(300, seed=3)
    live = connect()
    insert(live, rows)
    insert(live, rows[:100], replay=True)  # a retried batch: ON CONFLICT(id) DO NOTHING
    later = sqlite3.connect(":memory:", isolation_level=None)
    for s in sql_statements(SCHEMA):
        later.execute(s)
    cols = list(rows[0])
    later.executemany(f"INSERT INTO api_logs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                      [[r[c] for c in cols] for r in rows])
    later.execute("BEGIN")
    for s in sql_statements(ROLLUPS_PATH.read_text()):  # rollups added to a database with rows
        later.execute(s)
    later.execute("COMMIT")
    for table in ("api_status_minute", "api_latency_hour", "api_latency_day", "api_status_hour", "api_latency_total"):
        q = f"SELECT * FROM {table} ORDER BY 1, 2, 3"
        assert [tuple(r) for r in live.execute(q)] == [tuple(r) for r in later.execute(q)]
    assert live.execute("SELECT SUM(n) FROM api_status_minute").fetchone()[0] == len(rows)
    # Applying the rollups again (every start-up) changes nothing.
    later.execute("BEGIN")
    for s in sql_statements(ROLLUPS_PATH.read_text()):
        later.execute(s)
    later.execute("COMMIT")
    assert later.execute("SELECT SUM(n) FROM api_latency_hour").fetchone()[0] == len(rows)


def path_of(endpoint: str) -> str:
    return endpoint.split("?", 1)[0]


@given(
    params=st.one_of(
        st.fixed_dictionaries({"range": st.sampled_from(["15m", "1h", "24h", "7d"])}),
        st.builds(
            lambda a, b: {"from": f"{min(a, b):%Y-%m-%dT%H:%M}", "to": f"{max(a, b) + dt.timedelta(minutes=1):%Y-%m-%dT%H:%M}"},
            st.datetimes(min_value=dt.datetime(2026, 3, 1), max_value=dt.datetime(2026, 3, 10, 12)),
            st.datetimes(min_value=dt.datetime(2026, 3, 1), max_value=dt.datetime(2026, 3, 10, 12)),
        ),
    )
)
def test_overview_endpoint_stats_equal_a_direct_count(db, params) -> None:
    """Rollup hours + raw edges add up to exactly the rows in the window."""
    f = parse_filters(params)
    plan = build_overview(f, now=NOW)
    rows = [dict(r) for part in plan.endpoint_parts for r in db.execute(*part)]
    got = {s.endpoint: (s.total, s.by_class, s.p50, s.p95, s.p99) for s in endpoint_stats(rows)}
    inside = [r for r in ROWS if stamp(plan.start) <= r["created_at"] < stamp(plan.end)]
    direct = [
        {"endpoint": path_of(r["endpoint"]), "status_class": (r["response_status"] or 0) // 100,
         "bucket": bucket_of(r["duration_ms"]), "n": 1}
        for r in inside
    ]
    want = {s.endpoint: (s.total, s.by_class, s.p50, s.p95, s.p99) for s in endpoint_stats(direct)}
    assert got == want
    series_total = sum(r["n"] for r in db.execute(*plan.series))
    assert series_total >= len(inside)  # minute resolution: the first bar may start early


def direct_stats(rows: list[dict]) -> dict:
    direct = [{"endpoint": path_of(r["endpoint"]), "status_class": (r["response_status"] or 0) // 100,
               "bucket": bucket_of(r["duration_ms"]), "n": 1} for r in rows]
    return {s.endpoint: (s.total, s.by_class, s.p50, s.p95, s.p99) for s in endpoint_stats(direct)}


@pytest.mark.parametrize("ahead", [dt.timedelta(0), dt.timedelta(minutes=3), dt.timedelta(days=2)])
def test_all_time_reads_the_all_time_rollup_and_leaves_out_rows_stamped_after_now(ahead) -> None:
    """"All" = every counted row stamped before now: the all-time rollup minus the rows after
    now (a clock that ran ahead), exactly what a count over api_logs gives."""
    conn = connect()
    future = make_rows(30, seed=11, span=dt.timedelta(minutes=1), first_seq=3000)
    for r in future:  # stamped `ahead` after NOW (ahead=0: at NOW, still not before it)
        at = dt.datetime.strptime(r["created_at"], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC) + dt.timedelta(minutes=1) + ahead
        r["created_at"], r["id"] = stamp(at), snowflake(math.floor(at.timestamp() * 1000), r["id"] & 0xFFF)
    insert(conn, ROWS)
    insert(conn, future)
    oldest = dt.datetime.fromtimestamp(conn.execute("SELECT MIN(minute) FROM api_status_minute").fetchone()[0] * 60, UTC)
    plan = build_overview(parse_filters({"range": "all"}), now=NOW, oldest=oldest)
    assert [p[0].split(" FROM ")[1].split()[0] for p in plan.endpoint_parts] == ["api_latency_total", "api_logs"]
    rows = [dict(r) for part in plan.endpoint_parts for r in conn.execute(*part)]
    assert len(rows) > 50  # the rollup holds every key, not just the rows after now
    got = {s.endpoint: (s.total, s.by_class, s.p50, s.p95, s.p99) for s in endpoint_stats(rows)}
    assert got == direct_stats([r for r in ROWS + future if r["created_at"] < stamp(NOW)]) == direct_stats(ROWS)
    # Without the rollups' first minute (no rows yet) the range is the last 7 days, read as before.
    assert "api_latency_total" not in str(build_overview(parse_filters({"range": "all"}), now=NOW).endpoint_parts)


@pytest.mark.parametrize("keep_days", [1, 4, 20])
def test_the_coarse_rollups_lose_what_the_pruner_deletes_from_the_fine_ones(keep_days) -> None:
    from log.core.retention import PRUNE_GRACE, plan

    conn = connect()
    insert(conn, ROWS)
    for step in plan(NOW + PRUNE_GRACE, retention_days=0, rollup_days=keep_days, limit=50):
        while conn.execute(step.delete_sql, step.args).rowcount:  # in batches, as the pruner does
            pass
    hours = {tuple(r[:2]): r[2] for r in conn.execute(
        "SELECT minute / 60, status_class, SUM(n) FROM api_status_minute GROUP BY 1, 2")}
    assert {tuple(r[:2]): r[2] for r in conn.execute("SELECT * FROM api_status_hour")} == hours
    totals = {tuple(r[:3]): r[3] for r in conn.execute(
        "SELECT endpoint, status_class, bucket, SUM(n) FROM api_latency_day GROUP BY 1, 2, 3")}
    assert {tuple(r[:3]): r[3] for r in conn.execute("SELECT * FROM api_latency_total")} == totals
    assert 0 < sum(totals.values()) < len(ROWS) if keep_days < 9 else sum(totals.values()) == len(ROWS)


@given(st.sampled_from(["15m", "1h", "24h", "7d", "all"]), st.integers(0, 3 * 86_400))
def test_the_series_from_whole_hours_and_edge_minutes_equals_the_minutes_alone(db, range_, shift_s) -> None:
    now = NOW - dt.timedelta(seconds=shift_s)
    plan = build_overview(parse_filters({"range": range_}), now=now, oldest=NOW - dt.timedelta(days=9, minutes=7))
    lo, hi = math.floor(plan.start.timestamp() / 60), math.floor(plan.end.timestamp() / 60) + 1
    m = plan.bucket_minutes
    minutes_only = ("SELECT (minute / ?) * ? AS bucket, status_class, SUM(n) AS n FROM api_status_minute"
                    " WHERE minute >= ? AND minute < ? GROUP BY 1, 2 ORDER BY 1", [m, m, lo, hi])
    got = [tuple(r) for r in db.execute(*plan.series)]
    assert got == [tuple(r) for r in db.execute(*minutes_only)]
    if m % 60 == 0 and hi - lo >= 120:
        assert "api_status_hour" in plan.series[0]


def test_overview_uses_rollups_for_whole_hours() -> None:
    plan = build_overview(parse_filters({"range": "7d"}), now=NOW)
    tables = [part[0].split(" FROM ")[1].split()[0] for part in plan.endpoint_parts]
    # 6 whole days; the partial days' whole hours; the partial hours' rows at both edges.
    assert tables == ["api_latency_day", "api_latency_hour", "api_logs", "api_latency_hour", "api_logs"]
    assert plan.endpoint_parts[0][1][1] - plan.endpoint_parts[0][1][0] == 6
    assert plan.bucket_minutes == 60
    short = build_overview(parse_filters({"range": "15m"}), now=NOW)
    assert len(short.endpoint_parts) == 1 and "FROM api_logs" in short.endpoint_parts[0][0]
    assert short.bucket_minutes == 1


@given(st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2026, 3, 1)),
       st.integers(min_value=0, max_value=40 * 86_400_000))
def test_cover_tiles_the_range_exactly(start, span_ms) -> None:
    start = start.replace(tzinfo=UTC)
    end = start + dt.timedelta(milliseconds=span_ms)
    pieces = []
    for kind, lo, hi in cover(start, end):
        if kind == "raw":
            pieces.append((lo, hi))
            assert hi - lo < dt.timedelta(hours=2)  # no whole aligned hour inside it
        else:
            seconds = {"api_latency_day": 86_400, "api_latency_hour": 3_600}[kind]
            pieces.append((dt.datetime.fromtimestamp(lo * seconds, UTC), dt.datetime.fromtimestamp(hi * seconds, UTC)))
    pieces.sort()
    if start == end:
        assert pieces == []
        return
    assert pieces[0][0] == start and pieces[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))


def test_far_past_and_future_custom_ranges() -> None:
    assert stamp(dt.datetime(500, 1, 2, tzinfo=UTC)) == "0500-01-02 00:00:00.000"
    f = parse_filters({"from": "0001-01-01T00:00", "to": "0500-01-01T00:00"})
    assert expected(f) == []
    conn = connect()
    insert(conn, ROWS[:20])
    assert run_list(conn, f) == []
    wide = parse_filters({"from": "0001-01-01T00:00", "to": "9999-12-31T23:59"})
    assert run_list(conn, wide) == sorted((r["id"] for r in ROWS[:20]), reverse=True)
    plan = build_overview(wide, now=NOW, oldest=NOW - dt.timedelta(days=30))
    assert plan.start == NOW - dt.timedelta(days=30) and plan.end == NOW
    years = build_overview(wide, now=NOW)
    past = build_overview(parse_filters({"to": "0001-01-01T00:00"}), now=NOW, oldest=NOW)
    assert past.start < past.end
    assert (years.end - years.start) / dt.timedelta(minutes=years.bucket_minutes) <= 180


@given(st.one_of(st.none(), st.datetimes()), st.one_of(st.none(), st.datetimes()), st.booleans())
def test_any_custom_range_builds_queries_without_raising(a, b, with_oldest) -> None:
    params = {k: f"{v:%Y-%m-%dT%H:%M}" if v.year >= 1000 else v.isoformat() for k, v in (("from", a), ("to", b)) if v}
    try:
        f = parse_filters(params)
    except FilterError:
        return
    build_list_query(f, now=NOW, limit=51, before_id=None)
    plan = build_overview(f, now=NOW, oldest=NOW - dt.timedelta(days=3) if with_oldest else None)
    assert plan.start < plan.end
    assert (plan.end - plan.start) / dt.timedelta(minutes=plan.bucket_minutes) <= 181


def test_sql_statements_keeps_trigger_bodies_whole() -> None:
    script = "CREATE TABLE t (x);\nCREATE TRIGGER r AFTER INSERT ON t BEGIN\n  SELECT 1;\n  SELECT 2;\nEND;\n"
    statements = sql_statements(script + ROLLUPS_PATH.read_text())
    trigger = [s for s in statements if s.startswith("CREATE TRIGGER")]
    assert len(trigger) == 9 and all(t.rstrip().endswith("END") for t in trigger)
    assert all(sqlite3.complete_statement(s + ";") for s in statements)
    # The rollups are kept per batch; only the error signatures (5xx and FAILED rows) keep triggers
    # on the log tables; the coarse rollups follow the fine ones by triggers on those.
    names = sorted(s.split()[2] for s in sql_statements(ROLLUPS_PATH.read_text()) if s.startswith("CREATE TRIGGER"))
    ons = {s.split()[2]: s.split(" ON ")[1].split()[0] for s in sql_statements(ROLLUPS_PATH.read_text())
           if s.startswith("CREATE TRIGGER")}
    assert sorted(n for n, table in ons.items() if table in ("api_logs", "task_progress_logs")) == [
        "api_logs_error_signature", "task_progress_error_signature"]
    assert sorted(set(ons.values()) - {"api_logs", "task_progress_logs"}) == ["api_latency_day", "api_status_minute"]


def test_the_live_tail_returns_matching_rows_newer_than_the_newest_shown(db) -> None:
    f = parse_filters({"range": "all", "status": "errors"})
    everything = expected(f)
    newest_shown = everything[len(everything) // 2]
    sql, args = build_tail_query(f, now=NOW, after_id=newest_shown, limit=1000)
    assert sql.count("id >= ?") == 1  # one lower bound on id: the newest shown, not the range's start
    assert [r["id"] for r in db.execute(sql, args)] == [i for i in everything if i > newest_shown]
    sql, args = build_tail_query(f, now=NOW, after_id=everything[0], limit=1000)
    assert db.execute(sql, args).fetchall() == []


def test_path_field_is_a_route_when_it_looks_like_a_template() -> None:
    assert parse_filters({"path": "/items/{item_id:int}"}).route == "/items/{item_id:int}"
    assert parse_filters({"path": "(unmatched)"}).route == "(unmatched)"
    assert parse_filters({"path": "/items"}).endpoint == "/items"
    assert parse_filters({"path": "/items"}).route == ""


@pytest.mark.parametrize("message", [
    None, "", "ValueError: boom", "IntegrityError: UNIQUE constraint failed: items.name", ": no type",
    "no colon at all", "x" * 100 + ": long prefix", "ü: one letter", "a:b", "Error:", "ÄÖÜError: x",
])
def test_exception_type_sql_matches_python(message) -> None:
    conn = sqlite3.connect(":memory:")
    (got,) = conn.execute("SELECT COALESCE(" + exception_type_sql("m") + ", '') FROM (SELECT ? AS m)", [message]).fetchone()
    assert got == exception_type(message)
    assert exception_type_sql("NEW.error_message") in ROLLUPS_PATH.read_text()  # the trigger uses the same CASE


def _request(conn, row_id: int, trace: str, status: int, at: dt.datetime, route: str = "/items/{item_id:int}") -> None:
    conn.execute("INSERT INTO api_logs (id, trace_id, method, endpoint, response_status, created_at, route)"
                 " VALUES (?, ?, 'GET', '/items/3?x=1', ?, ?, ?)", [row_id, trace, status, stamp(at), route])


def _failed(conn, row_id: int, trace: str, message: str, at: dt.datetime) -> None:
    conn.execute("INSERT INTO task_progress_logs (id, trace_id, task_name, step_name, status, error_message,"
                 " execution_order, created_at) VALUES (?, ?, 'http_request', 'unhandled_exception', 'FAILED', ?, 0, ?)",
                 [row_id, trace, message, stamp(at)])


def test_error_signatures_whichever_row_arrives_first() -> None:
    conn = connect()
    t0 = NOW - dt.timedelta(days=3)
    _request(conn, 10, TRACES[0], 500, t0)  # the request row first, then its crash row
    _failed(conn, 11, TRACES[0], "KeyError: 'x'", t0)
    _failed(conn, 21, TRACES[1], "ValueError: bad", NOW - dt.timedelta(minutes=30))  # the crash row first
    _request(conn, 20, TRACES[1], 500, NOW - dt.timedelta(minutes=30))
    _request(conn, 30, TRACES[2], 503, NOW - dt.timedelta(minutes=10))  # no FAILED row at all
    _request(conn, 40, TRACES[0], 500, NOW - dt.timedelta(minutes=5))  # KeyError again: not new
    _request(conn, 50, TRACES[2], 200, NOW - dt.timedelta(minutes=5))  # not an error
    sigs = {(r["route"], r["status"], r["exception"]): (r["first_id"], r["first_trace"], r["n"])
            for r in conn.execute("SELECT * FROM api_error_signatures")}
    route = "/items/{item_id:int}"
    assert sigs == {(route, 500, "KeyError"): (10, TRACES[0], 2), (route, 500, "ValueError"): (20, TRACES[1], 1),
                    (route, 503, ""): (30, TRACES[2], 1)}
    new = [(r["status"], r["exception"], r["trace_id"]) for r in conn.execute(*new_errors_query(NOW - dt.timedelta(hours=1), NOW))]
    assert new == [(503, "", TRACES[2]), (500, "ValueError", TRACES[1])]  # newest first; KeyError is older
    # The backfill of a database made before the rollup gives the same table.
    rows = conn.execute("SELECT * FROM api_error_signatures ORDER BY 1, 2, 3").fetchall()
    conn.execute("DELETE FROM api_error_signatures")
    backfill = next(s for s in sql_statements(ROLLUPS_PATH.read_text()) if s.startswith("INSERT INTO api_error_signatures"))
    conn.execute(backfill)
    assert [tuple(r)[:6] for r in conn.execute("SELECT * FROM api_error_signatures ORDER BY 1, 2, 3")] == [
        tuple(r)[:6] for r in rows]


# Both backends: the rollup DDL and the explorer's queries through a LogDatabase ----------

TOKEN = "explorer-test-token"


@pytest.fixture(params=["http", "file"])
async def log_db(request, tmp_path: Path, anyio_backend: str):
    async with httpx.AsyncClient() as client:
        if request.param == "http":
            with running(HranaServer(str(tmp_path / "remote.db"), token=TOKEN)) as server:
                yield HttpLogDatabase(client, server.url, TOKEN)
        else:
            db = FileLogDatabase(str(tmp_path / "logs.db"))
            yield db
            db.close()


@pytest.mark.anyio
async def test_rollups_and_queries_work_through_both_backends(log_db: LogDatabase) -> None:
    await log_db.transaction([(s, ()) for s in sql_statements(SCHEMA + ROLLUPS_PATH.read_text())])
    await log_db.transaction([(s, ()) for s in sql_statements(SCHEMA + ROLLUPS_PATH.read_text())])  # idempotent
    rows = [ApiLog(**{**r, "request_header": None, "request_body": None, "response_body": None}) for r in ROWS]
    sink = TursoSink(log_db)  # the app's real write path
    first = await sink.write("api_logs", rows)
    replay = await sink.write("api_logs", rows[:50])  # a retried batch
    assert first.inserted == len(rows) and replay.inserted == 0
    totals = await log_db.select("SELECT SUM(n) AS n FROM api_status_minute")
    assert totals[0]["n"] == len(rows)
    f = parse_filters({"range": "7d", "status": "4xx", "endpoint": "/items"})
    sql, args = build_list_query(f, now=NOW, limit=1000, before_id=None)
    assert [r["id"] for r in await log_db.select(sql, args)] == expected(f)
    plan = build_overview(parse_filters({"range": "7d"}), now=NOW)
    got = endpoint_stats([r for part in plan.endpoint_parts for r in await log_db.select(*part)])
    inside = [r for r in ROWS if stamp(plan.start) <= r["created_at"] < stamp(plan.end)]
    assert sum(s.total for s in got) == len(inside)


def test_the_time_chart_fits_the_data_present() -> None:
    plan = build_overview(parse_filters({"range": "7d"}), now=NOW)
    assert plan.bucket_minutes == 60  # 168 bars for the whole week
    hi = math.floor(NOW.timestamp() / 60)
    fitted = chart_window(plan, hi - 180, hi)  # three hours of data at the end of the week
    assert fitted.chart_start == dt.datetime.fromtimestamp((hi - 180) * 60, UTC)
    assert fitted.chart_end == min(plan.end, dt.datetime.fromtimestamp((hi + 1) * 60, UTC))
    assert fitted.bucket_minutes == 5  # 37 bars of 5 minutes for those hours, not three 1-hour bars
    assert fitted.series[1][2] == hi - 180  # the series query reads only the data's minutes
    assert fitted.endpoint_parts == plan.endpoint_parts  # per-route numbers still cover the week
    assert chart_window(plan, None, None) == plan  # no data: the whole range
    whole = math.floor(plan.start.timestamp() / 60)
    assert chart_window(plan, whole + 60, hi) == plan  # under a tenth empty: left as it is
