"""Route templates in the explorer's queries: rollups and raw edges keyed alike (the template,
else the path), and the list page's `route` filter."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import sqlite3

import pytest

from log.core.rows import UNMATCHED
from log.db.schema import COUNT_STAGED, ROLLUP_BATCH_PATH, ROLLUPS_PATH, STAGE_SQL, STATEMENTS
from log.explorer.queries import (
    SNOWFLAKE_EPOCH_MS,
    UTC,
    FilterError,
    build_list_query,
    build_overview,
    bucket_of,
    endpoint_stats,
    parse_filters,
    path_sql,
    route_key_sql,
    stamp,
)

NOW = dt.datetime(2026, 3, 10, 12, 30, 15, 500_000, tzinfo=UTC)
# (route, literal path): templated routes, unmatched probes, and rows with no template (None).
REQUESTS = [
    ("/items/{item_id:int}", "/items/{n}"),
    ("/items/{item_id:int}/edit", "/items/{n}/edit"),
    ("/items", "/items?q={n}"),
    (UNMATCHED, "/wp-admin/{n}.php"),
    (None, "/legacy/{n}?x=1"),
]


def make_rows(n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        received = NOW - dt.timedelta(days=3) * rnd.random()
        route, path = rnd.choice(REQUESTS)
        duration = rnd.choice([1, 5, 30, 200, 1500])
        ms = math.floor(received.timestamp() * 1000)
        rows.append({
            "id": ((ms + duration - SNOWFLAKE_EPOCH_MS) << 22) | (i & 0x3FFFFF),
            "trace_id": "t", "method": rnd.choice(["GET", "POST"]), "endpoint": path.format(n=rnd.randint(1, 500)),
            "response_status": rnd.choice([200, 404, 500]), "duration_ms": duration, "created_at": stamp(received),
            "route": route,
        })
    return rows


ROWS = make_rows(600, seed=3)


@pytest.fixture(scope="module")
def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("BEGIN")
    for statement in STATEMENTS:
        conn.execute(statement)
    cols = list(ROWS[0])
    conn.execute(STAGE_SQL, [json.dumps([r["id"] for r in ROWS])])  # one write batch, as the sink writes it
    conn.executemany(
        f"INSERT INTO api_logs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", [list(r.values()) for r in ROWS]
    )
    for statement in COUNT_STAGED:
        conn.execute(statement)
    conn.execute("COMMIT")
    return conn


def key_of(row: dict) -> str:
    return row["route"] if row["route"] is not None else row["endpoint"].split("?", 1)[0]


@pytest.mark.parametrize("range_", ["15m", "1h", "24h", "7d"])
def test_overview_keys_by_route_exactly_like_a_direct_count(db, range_: str) -> None:
    plan = build_overview(parse_filters({"range": range_}), now=NOW)
    rows = [dict(r) for part in plan.endpoint_parts for r in db.execute(*part)]
    got = {s.endpoint: (s.total, s.by_class, s.p95) for s in endpoint_stats(rows)}
    inside = [r for r in ROWS if stamp(plan.start) <= r["created_at"] < stamp(plan.end)]
    direct = [{"endpoint": key_of(r), "status_class": r["response_status"] // 100,
               "bucket": bucket_of(r["duration_ms"]), "n": 1} for r in inside]
    assert got == {s.endpoint: (s.total, s.by_class, s.p95) for s in endpoint_stats(direct)}
    if range_ == "7d":  # every request of a templated route is one key, whatever its id
        assert "/items/{item_id:int}" in got and not any(k.startswith("/items/") and k[7:8].isdigit() for k in got)
        assert UNMATCHED in got and not any(k.startswith("/wp-admin/") for k in got)
        assert any(k.startswith("/legacy/") for k in got)  # no template: the path, as before


def test_batch_rollups_and_backfill_use_the_same_key_expression() -> None:
    for path, n in ((ROLLUPS_PATH, 2), (ROLLUP_BATCH_PATH, 1)):  # the backfill: hour and day
        text = " ".join(path.read_text().split())
        assert text.count(" ".join(route_key_sql("route", "endpoint").split())) == n
        assert text.count(path_sql("endpoint")) == n  # each inside the key expression


def test_the_route_filter_is_exact_and_uses_its_index(db) -> None:
    for route in ("/items/{item_id:int}", UNMATCHED):
        f = parse_filters({"range": "all", "route": route})
        sql, args = build_list_query(f, now=NOW, limit=1000, before_id=None)
        got = [r["id"] for r in db.execute(sql, args)]
        assert got == sorted((r["id"] for r in ROWS if r["route"] == route), reverse=True) and got
        plan = " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "idx_api_logs_route" in plan, plan
    f = parse_filters({"range": "all", "route": "/items"})  # not a prefix test: "/items/{...}" is not "/items"
    sql, args = build_list_query(f, now=NOW, limit=1000, before_id=None)
    assert {r["endpoint"].split("?")[0] for r in db.execute(sql, args)} == {"/items"}
    with pytest.raises(FilterError):
        parse_filters({"route": "/x\x01y"})
