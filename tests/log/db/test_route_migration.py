"""A log database made before api_logs.route gets the column at start, on `file:` and over
Hrana alike: idempotently, in the schema's one transaction, and safely when two instances
start at once. Its old rows keep their path keys in the rollups; new rows are keyed by route."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from log.core.rows import ApiLog, columns
from log.db.database import FileLogDatabase, HttpLogDatabase, LogDatabase
from log.db.schema import SCHEMA_SQL, apply_schema, missing_columns, present_columns
from log.sinks.turso_sink import TursoSink
from tests.support.hrana_server import HranaServer, running

pytestmark = pytest.mark.anyio

TOKEN = "migration-token"
# api_logs as it was created before the route column.
OLD_SCHEMA = SCHEMA_SQL.replace(",\n    route TEXT\n", "\n")


def make_old_db(path: Path) -> None:
    assert OLD_SCHEMA != SCHEMA_SQL
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(OLD_SCHEMA)
    for i in (1, 2):
        conn.execute(
            "INSERT INTO api_logs (id, trace_id, method, endpoint, response_status, duration_ms, created_at)"
            " VALUES (?, 't', 'GET', ?, 200, 5, '2026-11-27 10:00:00.000')", (i, f"/items/{i}?q=x"),
        )
    conn.close()


def new_row(i: int, route: str | None) -> ApiLog:
    return ApiLog(
        id=i, trace_id="t", method="GET", endpoint=f"/items/{i}", request_header=None, request_body=None,
        response_status=200, response_body=None, duration_ms=5, ip_address=None, user_id=None,
        created_at="2026-11-27 10:00:01.000", route=route,
    )  # fmt: skip


@pytest.fixture(params=["file", "hrana"])
async def old_db(request, tmp_path: Path) -> AsyncIterator[tuple[LogDatabase, Path]]:
    path = tmp_path / "logs.db"
    make_old_db(path)
    if request.param == "file":
        db = FileLogDatabase(str(path))
        yield db, path
        await db.aclose()
        return
    with running(HranaServer(str(path), token=TOKEN)) as remote:
        async with httpx.AsyncClient() as client:
            yield HttpLogDatabase(client, remote.url, TOKEN), path


def table_columns(path: Path) -> tuple[str, ...]:
    with sqlite3.connect(path) as conn:
        return tuple(r[1] for r in conn.execute("PRAGMA table_info(api_logs)"))


def rollup_keys(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT endpoint, SUM(n) FROM api_latency_hour GROUP BY 1").fetchall())


async def test_an_old_database_gets_the_column_once_and_keeps_its_rows(old_db) -> None:
    db, path = old_db
    assert "route" not in table_columns(path)
    await apply_schema(db)
    assert table_columns(path) == columns(ApiLog)
    await apply_schema(db)  # the next start: nothing to add, nothing fails
    assert table_columns(path) == columns(ApiLog)
    old = await db.fetch_rows(ApiLog, "1 ORDER BY id")
    assert [(r.id, r.endpoint, r.route) for r in old] == [(1, "/items/1?q=x", None), (2, "/items/2?q=x", None)]
    # Old rows were counted by path (they carry no template); new rows count by template.
    sink = TursoSink(db, schema_ready=True)
    await sink.write("api_logs", [new_row(3, "/items/{item_id:int}"), new_row(4, "/items/{item_id:int}")])
    await sink.write("api_logs", [new_row(5, None)])
    assert rollup_keys(path) == {"/items/1": 1, "/items/2": 1, "/items/{item_id:int}": 2, "/items/5": 1}


async def test_a_new_database_is_created_with_the_column(tmp_path: Path) -> None:
    db = FileLogDatabase(str(tmp_path / "fresh.db"))
    try:
        assert await present_columns(db) == {"api_logs": set()}
        await apply_schema(db)
        assert table_columns(tmp_path / "fresh.db") == columns(ApiLog)
    finally:
        await db.aclose()


class OtherInstanceFirst:
    """The log database as seen by an instance that reads the columns just before another
    instance (a second connection) adds the missing one: both saw it missing."""

    def __init__(self, db: FileLogDatabase, path: Path) -> None:
        self.db, self.path, self.raced = db, path, False
        self.transactions = 0

    async def select(self, sql: str, args: Any = ()) -> list[dict[str, Any]]:
        rows = await self.db.select(sql, args)
        if not self.raced:
            self.raced = True
            with sqlite3.connect(self.path) as other:
                other.execute("ALTER TABLE api_logs ADD COLUMN route TEXT")
        return rows

    async def transaction(self, statements):
        self.transactions += 1
        return await self.db.transaction(statements)


async def test_two_instances_starting_together_both_succeed(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    make_old_db(path)
    db = FileLogDatabase(str(path))
    try:
        racing = OtherInstanceFirst(db, path)
        await apply_schema(racing)
        assert racing.transactions == 2  # the first failed on the duplicate column, the retry did not add it
        assert table_columns(path) == columns(ApiLog)
    finally:
        await db.aclose()


def test_missing_columns_only_for_tables_that_exist() -> None:
    assert missing_columns({"api_logs": set()}) == []  # created by schema.sql with every column
    assert missing_columns({"api_logs": {"id", "endpoint"}}) == ["ALTER TABLE api_logs ADD COLUMN route TEXT"]
    assert missing_columns({"api_logs": set(columns(ApiLog))}) == []
