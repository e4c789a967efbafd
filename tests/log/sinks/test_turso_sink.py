"""TursoSink on both backends: the local Hrana server (HTTP) and a plain SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from log.core.rows import ApiLog, TaskProgressLog, columns
from log.sinks.base import SinkError, WriteResult
from log.db.database import FileLogDatabase, HttpLogDatabase, LogDatabase, fetch_rows, open_log_database
from log.sinks.turso_sink import TursoSink, classify, rows_json, write_statements
from log.db.schema import COUNT_STAGED, split_statements
from tests.support.hrana_server import HranaServer, Running, running

TOKEN = "test-token-123"



@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    with running(HranaServer(str(tmp_path / "remote.db"), token=TOKEN)) as r:
        yield r


@pytest.fixture(params=["http", "file"])
async def db(request: pytest.FixtureRequest, server: Running, tmp_path: Path, anyio_backend: str) -> AsyncIterator[LogDatabase]:
    async with httpx.AsyncClient() as client:
        if request.param == "http":
            yield HttpLogDatabase(client, server.url, TOKEN)
        else:
            file_db = open_log_database(f"file:{tmp_path / 'logs.db'}", None, client)
            assert isinstance(file_db, FileLogDatabase)
            yield file_db
            file_db.close()


@pytest.fixture
async def sink(db: LogDatabase) -> TursoSink:
    s = TursoSink(db)
    await s.open()
    return s


texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
i64 = st.integers(-(2**63), 2**63 - 1)
# The contract's format. created_at is a DATETIME column (NUMERIC affinity): SQLite would turn a
# numeric-looking text such as "0" into an integer, so only the real format round-trips.
stamps = st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S.") + f"{d.microsecond // 1000:03d}")


def opt(s: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | s


api_logs = st.builds(
    ApiLog, id=i64, trace_id=texts, method=texts, endpoint=texts, request_header=opt(texts),
    request_body=opt(texts), response_status=opt(i64), response_body=opt(texts),
    duration_ms=opt(i64), ip_address=opt(texts), user_id=opt(texts), created_at=stamps,
)
task_logs = st.builds(
    TaskProgressLog, id=i64, trace_id=texts, task_name=texts, step_name=texts, status=texts,
    input_data=opt(texts), output_data=opt(texts), error_message=opt(texts),
    stack_trace=opt(texts), execution_order=i64, created_at=stamps,
)


def api_log(i: int, **changes: object) -> ApiLog:
    row = ApiLog(id=i, trace_id=f"t{i}", method="GET", endpoint="/x", request_header="{}",
                 request_body=None, response_status=200, response_body='{"ok":true}',
                 duration_ms=3, ip_address="127.0.0.1", user_id=None,
                 created_at="2026-01-01 00:00:00.000")
    return msgspec.structs.replace(row, **changes)


def table(row: ApiLog | TaskProgressLog) -> str:
    return "api_logs" if isinstance(row, ApiLog) else "task_progress_logs"


@pytest.mark.anyio
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.one_of(api_logs, task_logs))
async def test_any_row_round_trips(sink: TursoSink, row: ApiLog | TaskProgressLog) -> None:
    await sink.db.transaction([(f"DELETE FROM {table(row)} WHERE id = ?", [row.id])])
    assert await sink.write(table(row), [row]) == WriteResult(inserted=1)
    assert await fetch_rows(sink.db, type(row), "id = ?", [row.id]) == [row]
    assert await sink.write(table(row), [row]) == WriteResult(inserted=0, already_present=1)


@pytest.mark.anyio
async def test_batch_of_500_in_one_transaction(sink: TursoSink) -> None:
    rows = [api_log(i) for i in range(500)]
    assert await sink.write("api_logs", rows) == WriteResult(inserted=500)
    stored = await sink.db.fetch_rows(ApiLog, "id >= ? ORDER BY id", [0])
    assert stored == rows


@pytest.mark.anyio
async def test_replay_and_conflicts_are_told_apart(sink: TursoSink) -> None:
    await sink.write("api_logs", [api_log(1), api_log(2)])
    again = [api_log(1), api_log(2, endpoint="/changed"), api_log(3)]
    assert await sink.write("api_logs", again) == WriteResult(inserted=1, already_present=1, conflicts=1)
    stored = await sink.db.fetch_rows(ApiLog, "id = ?", [2])
    assert stored[0].endpoint == "/x"  # the first version wins; the conflict is only counted


@pytest.mark.anyio
async def test_duplicate_ids_within_one_batch(sink: TursoSink) -> None:
    result = await sink.write("api_logs", [api_log(5), api_log(5), api_log(5, method="POST")])
    assert result == WriteResult(inserted=1, already_present=1, conflicts=1)


@pytest.mark.anyio
async def test_failing_batch_is_never_half_applied(sink: TursoSink) -> None:
    rows = [api_log(i) for i in range(250)]
    rows[180] = api_log(180, trace_id=None)  # NOT NULL violation in the second INSERT chunk
    with pytest.raises(SinkError) as info:
        await sink.write("api_logs", rows)
    assert not info.value.retryable
    assert "NOT NULL" in str(info.value)
    assert await sink.db.select("SELECT count(*) AS n FROM api_logs") == [{"n": 0}]


@pytest.mark.anyio
async def test_unencodable_row_is_a_non_retryable_error(sink: TursoSink) -> None:
    with pytest.raises(SinkError) as info:
        await sink.write("api_logs", [api_log(1), api_log(2**63)])
    assert not info.value.retryable
    assert await sink.db.select("SELECT count(*) AS n FROM api_logs") == [{"n": 0}]


def test_rows_json_carries_text_integers_and_nulls() -> None:
    rows = [api_log(1), api_log(2**63 - 1, user_id="u", request_body=None, endpoint='a\\u0000"\u00e9')]
    doc = rows_json(rows)
    assert doc is not None
    assert msgspec.json.decode(doc) == [list(msgspec.structs.astuple(r)) for r in rows]


@pytest.mark.parametrize("change", [
    {"endpoint": "/a\x00b"},  # SQLite's JSON functions would cut it at the NUL
    {"id": 2**63},  # read back as a float
    {"id": -(2**63) - 1},
    {"duration_ms": 1.5},  # not a column type a log row has: the per-value path decides
    {"request_body": b"raw"},
])
def test_rows_json_refuses_what_json_would_change(change: dict[str, object]) -> None:
    assert rows_json([api_log(1), api_log(2, **change)]) is None


def test_one_json_argument_per_chunk_and_per_value_only_where_needed() -> None:
    rows = [api_log(i) for i in range(250)]
    rows[120] = api_log(120, endpoint="/nul\x00")
    plan = write_statements("api_logs", rows)
    statements = plan.statements
    args_per_statement = [len(args) for _, args in statements]
    # chunks of 100: the first and last as one JSON text each, the middle one value by value;
    # before each insert the chunk's new ids are staged (one JSON array); the rollups at the end
    assert args_per_statement == [1, 1, 1, 100, 1, 100 * len(columns(ApiLog)), 1, 1, 1] + [0] * len(COUNT_STAGED)
    assert plan.selects == [0, 3, 6] and plan.inserts == [2, 5, 8]
    assert "json_each" in statements[2][0] and "json_each" not in statements[5][0]
    assert [sql for sql, _ in statements[9:]] == list(COUNT_STAGED)
    # task steps have no rollups
    step = TaskProgressLog(id=1, trace_id="t", task_name="T", step_name="s", status="START", input_data=None,
                           output_data=None, error_message=None, stack_trace=None, execution_order=0,
                           created_at="2026-01-01 00:00:00.000")
    assert len(write_statements("task_progress_logs", [step]).statements) == 2


@pytest.mark.anyio
async def test_mixed_chunks_round_trip(sink: TursoSink) -> None:
    rows = [api_log(i, endpoint=f"/p{i}", response_body=f'"\\u0000 {i}"') for i in range(250)]
    rows[120] = api_log(120, endpoint="/nul\x00end")  # this chunk goes value by value
    assert await sink.write("api_logs", rows) == WriteResult(inserted=250)
    assert await sink.db.fetch_rows(ApiLog, "id >= ? ORDER BY id", [0]) == rows
    assert await sink.write("api_logs", rows) == WriteResult(inserted=0, already_present=250)


@pytest.mark.anyio
async def test_unknown_table_and_empty_batch(sink: TursoSink) -> None:
    assert await sink.write("api_logs", []) == WriteResult(inserted=0)
    with pytest.raises(SinkError):
        await sink.write("nope", [api_log(1)])


@pytest.mark.anyio
async def test_open_is_idempotent_and_creates_indexes(sink: TursoSink) -> None:
    await sink.open()
    names = await sink.db.select("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%' ORDER BY name")
    assert {
        "idx_api_logs_created_at", "idx_api_logs_status", "idx_api_logs_trace_id",
        "idx_task_progress_created_at", "idx_task_progress_trace_id",
    } <= {n["name"] for n in names}
    # the sink alone (as `logs sync` uses it) prepares the explorer's rollups too
    tables = await sink.db.select("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'api_status_minute'")
    assert tables == [{"name": "api_status_minute"}]


def test_schema_statements_split() -> None:
    assert split_statements("-- c; x\nCREATE TABLE a (x);\n\nCREATE INDEX i ON a(x);") == [
        "CREATE TABLE a (x)", "CREATE INDEX i ON a(x)"]


def test_classify_counts_new_same_and_conflicts() -> None:
    stored = {1: msgspec.to_builtins(api_log(1)), 2: {**msgspec.to_builtins(api_log(2)), "duration_ms": "x"}}
    result = classify([api_log(1), api_log(2), api_log(3), api_log(3, method="PUT")], stored)
    assert (result.new, result.already_present, result.conflict_ids) == (1, 1, [2, 3])


@pytest.mark.anyio
async def test_file_url_forms_and_a_fresh_data_dir(tmp_path: Path, anyio_backend: str) -> None:
    async with httpx.AsyncClient() as client:
        for url in (f"file:{tmp_path}/a/b/logs.db", f"file://{tmp_path}/c/logs.db"):
            db = open_log_database(url, None, client)
            assert isinstance(db, FileLogDatabase)
            sink = TursoSink(db)
            await sink.open()
            assert await sink.write("api_logs", [api_log(1)]) == WriteResult(inserted=1)
            await db.aclose()
        assert (tmp_path / "a/b/logs.db").exists() and (tmp_path / "c/logs.db").exists()
        assert isinstance(open_log_database("libsql://x.turso.io", "t", client), HttpLogDatabase)


@pytest.mark.anyio
async def test_a_file_database_commits_in_wal_mode_without_fsync_per_commit(tmp_path: Path, anyio_backend: str) -> None:
    """synchronous=NORMAL with WAL (docs/tracing.md): a committed batch is in the WAL, readable by
    another connection at once, as a killed process would leave it."""
    db = FileLogDatabase(str(tmp_path / "logs.db"))
    sink = TursoSink(db)
    await sink.open()
    assert await db.select("PRAGMA journal_mode") == [{"journal_mode": "wal"}]
    assert await db.select("PRAGMA synchronous") == [{"synchronous": 1}]  # 1 = NORMAL (2 = FULL)
    await sink.write("api_logs", [api_log(1), api_log(2)])
    with sqlite3.connect(tmp_path / "logs.db") as other:
        assert other.execute("SELECT id FROM api_logs ORDER BY id").fetchall() == [(1,), (2,)]
    await db.aclose()
