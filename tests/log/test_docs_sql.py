"""The SQL recipes in docs/tracing.md run, and answer what their captions promise.

Each ```sql block is taken from the page as written, run against a small log database built
with the package's own DDL (tables, indexes, rollup triggers), and checked row by row. A recipe
added to the page without a check here fails `test_every_recipe_is_checked`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from log.db.schema import COUNT_STAGED, STAGE_SQL, STATEMENTS

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
DOC = ROOT / "docs" / "tracing.md"

FAILED_TRACE = "5f0c2a9e-0000-4000-8000-000000000001"
OK_TRACE = "5f0c2a9e-0000-4000-8000-000000000002"
PARAMS = {"trace_id": FAILED_TRACE, "user_id": "user-1"}


def recipes() -> dict[str, str]:
    """{caption: sql}: each ```sql block with the paragraph line just above it."""
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"([^\n]+)\n\n```sql\n(.*?)```", text, flags=re.S)
    return {caption.strip(): sql for caption, sql in found}


def stamp(ago: dt.timedelta) -> str:
    when = dt.datetime.now(dt.UTC) - ago
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "logs.db")
    for sql in STATEMENTS:
        conn.execute(sql)
    hour, day = dt.timedelta(hours=1), dt.timedelta(days=1)
    api = [
        # id, trace_id, method, endpoint, status, duration_ms, user_id, received
        (1, "t-old", "GET", "/old", 503, 40, "user-2", stamp(2 * day)),
        (2, "t-old-ok", "GET", "/items", 200, 5, "user-2", stamp(3 * day)),
        (3, FAILED_TRACE, "POST", "/items/import", 500, 900, "user-1", stamp(2 * hour)),
    ]
    # Ten fast /items requests in the last hour, 10..100 ms, one of them with a query string.
    for i in range(10):
        endpoint = "/items?q=lamp" if i == 0 else "/items"
        trace = OK_TRACE if i == 9 else f"t-{i}"
        api.append((10 + i, trace, "GET", endpoint, 200, 10 * (i + 1), "user-1", stamp(hour - i * dt.timedelta(minutes=1))))
    conn.execute(STAGE_SQL, [json.dumps([a[0] for a in api])])  # one write batch, as the sink writes it
    conn.executemany(
        "INSERT INTO api_logs (id, trace_id, method, endpoint, request_header, request_body, response_status,"
        " response_body, duration_ms, ip_address, user_id, created_at)"
        " VALUES (?, ?, ?, ?, '{}', NULL, ?, NULL, ?, '127.0.0.1', ?, ?)",
        api,
    )
    for sql in COUNT_STAGED:
        conn.execute(sql)
    steps = [
        # id, trace_id, task, step, status, error, order, created_at
        (100, FAILED_TRACE, "Bulk_Import", "Validation", "START", None, 1, stamp(2 * hour - dt.timedelta(seconds=1))),
        (101, FAILED_TRACE, "Bulk_Import", "Validation", "FAILED", "row 7: price is not a number", 2,
         stamp(2 * hour - dt.timedelta(seconds=2))),
        (102, OK_TRACE, "Bulk_Import", "Validation", "SUCCESS", None, 2, stamp(hour - dt.timedelta(minutes=9))),
    ]
    conn.executemany(
        "INSERT INTO task_progress_logs (id, trace_id, task_name, step_name, status, input_data, output_data,"
        " error_message, stack_trace, execution_order, created_at) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, NULL, ?, ?)",
        steps,
    )
    conn.commit()
    return conn


def run(db: sqlite3.Connection, sql: str) -> list[tuple[object, ...]]:
    return db.execute(sql, PARAMS).fetchall()


def check_5xx(rows: list[tuple[object, ...]]) -> None:
    # The 503 from two days ago is outside the window; the 500 comes with its failed step.
    assert [(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows] == [
        ("POST", "/items/import", 500, 900, FAILED_TRACE, "Bulk_Import", "Validation", "row 7: price is not a number")
    ]


def check_trace(rows: list[tuple[object, ...]]) -> None:
    assert [(r[0], r[2], r[3], r[5]) for r in rows] == [
        ("request", "POST /items/import", 500, None),
        ("step", "Bulk_Import > Validation", "START", None),
        ("step", "Bulk_Import > Validation", "FAILED", "row 7: price is not a number"),
    ]
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)


def check_slowest(rows: list[tuple[object, ...]]) -> None:
    # Query strings are cut off, so /items?q=lamp counts as /items; the 3-day-old one is out.
    assert rows == [("/items/import", 1, 900, 900, 900), ("/items", 10, 50, 100, 100)]


def check_rollups(rows: list[tuple[object, ...]]) -> None:
    assert sorted(rows, key=lambda r: str(r[0])) == [("/items", 11, 0), ("/items/import", 1, 1), ("/old", 1, 1)]
    assert rows[-1] == ("/items", 11, 0)  # most 5xx first


def check_user(rows: list[tuple[object, ...]]) -> None:
    assert len(rows) == 11  # user-1's requests only, newest (highest id) first
    assert [r[2] for r in rows[:2]] == ["/items", "/items"]
    failed = [r for r in rows if r[6] is not None]
    assert [(r[2], r[5], r[6]) for r in failed] == [
        ("/items/import", FAILED_TRACE, "Validation: row 7: price is not a number")
    ]
    assert rows[-1][2] == "/items/import"


CHECKS: dict[str, Callable[[list[tuple[object, ...]]], None]] = {
    "5xx responses in the last 24 hours": check_5xx,
    "Everything that happened in one trace": check_trace,
    "Slowest endpoints in the last 24 hours": check_slowest,
    "Requests and 5xx per endpoint over 7 days": check_rollups,
    "One user's recent activity": check_user,
}


def check_for(caption: str) -> Callable[[list[tuple[object, ...]]], None]:
    matches = [check for start, check in CHECKS.items() if caption.startswith(start)]
    assert len(matches) == 1, f"no check (or several) for the recipe {caption!r}"
    return matches[0]


def test_every_recipe_is_checked() -> None:
    found = recipes()
    assert len(found) == len(CHECKS)
    for caption in found:
        check_for(caption)


@pytest.mark.parametrize("caption", list(recipes()))
def test_recipe_answers_its_question(db: sqlite3.Connection, caption: str) -> None:
    rows = run(db, recipes()[caption])
    assert rows, f"{caption!r} returned nothing"
    check_for(caption)(rows)
