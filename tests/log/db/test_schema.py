import sqlite3

from log.core.rows import TABLES, columns
from log.db.schema import ROLLUPS_SQL, SCHEMA_SQL, STATEMENTS, split_statements


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA_SQL)
    return conn


def test_columns_match_row_structs_in_order():
    conn = _db()
    for table, row_type in TABLES.items():
        cols = tuple(r[1] for r in conn.execute(f"PRAGMA table_info({table})"))
        assert cols == columns(row_type)


def test_schema_is_idempotent_and_statements_run_one_by_one():
    conn = _db()
    conn.executescript(SCHEMA_SQL)
    for stmt in STATEMENTS:
        conn.execute(stmt)
    assert len(split_statements(SCHEMA_SQL)) == 7
    assert len(STATEMENTS) == 7 + len(split_statements(ROLLUPS_SQL))
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {
        "idx_api_logs_trace_id",
        "idx_api_logs_created_at",
        "idx_api_logs_status",
        "idx_task_progress_trace_id",
        "idx_task_progress_created_at",
    } <= indexes


def test_user_id_is_text_and_created_at_defaults_to_ms_utc():
    conn = _db()
    types = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(api_logs)")}
    assert types["user_id"] == "TEXT"
    conn.execute("INSERT INTO api_logs (id, trace_id, method, endpoint) VALUES (1, 't', 'GET', '/')")
    (created,) = conn.execute("SELECT created_at FROM api_logs").fetchone()
    assert len(created) == len("2025-01-01 00:00:00.000")
    conn.execute(
        "INSERT INTO task_progress_logs (id, trace_id, task_name, step_name, status) VALUES (1, 't', 'a', 'b', 'START')"
    )
    assert conn.execute("SELECT execution_order FROM task_progress_logs").fetchone() == (0,)
