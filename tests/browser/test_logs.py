"""The explorer in Debian's Chromium: an admin narrows to 5xx, opens the trace, sees the failure."""

from __future__ import annotations

import datetime as dt
import math
import re
import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from log.db.schema import COUNT_STAGED, ROLLUPS_PATH, STAGE_SQL, SCHEMA_SQL as SCHEMA, split_statements as sql_statements
from log.explorer.queries import SNOWFLAKE_EPOCH_MS, UTC, stamp
from tests.support.app import start_server, stop_server

pytestmark = pytest.mark.browser

FAILED_TRACE = "dddddddd-0000-4000-8000-00000000000f"


def seed_log_db(path: Path) -> None:
    """The server's log database (DATA_DIR/logs.db) before it starts: a few good requests and
    one 500 whose trace has a FAILED step."""
    now = dt.datetime.now(UTC)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for statement in sql_statements(SCHEMA + ROLLUPS_PATH.read_text()):
        conn.execute(statement)
    ids = []
    for i in range(6):
        at = now - dt.timedelta(minutes=30 - i)
        trace = FAILED_TRACE if i == 2 else f"eeeeeeee-0000-4000-8000-{i:012d}"
        row_id = ((math.floor(at.timestamp() * 1000) - SNOWFLAKE_EPOCH_MS) << 22) | i
        ids.append(row_id)
        conn.execute(STAGE_SQL, [f"[{row_id}]"])  # as the sink writes a batch: staged, inserted, counted
        conn.execute(
            "INSERT INTO api_logs (id, trace_id, method, endpoint, request_header, response_status, duration_ms,"
            " user_id, created_at) VALUES (?, ?, ?, ?, '{\"accept\":\"*/*\"}', ?, ?, '42', ?)",
            (row_id, trace, "POST" if i == 2 else "GET", "/items/import" if i == 2 else "/items",
             500 if i == 2 else 200, 40 + i, stamp(at)),
        )
        if i == 2:
            conn.execute(
                "INSERT INTO task_progress_logs (id, trace_id, task_name, step_name, status, input_data,"
                " error_message, stack_trace, execution_order, created_at)"
                " VALUES (?, ?, 'import_items', 'save', 'FAILED', '{\"rows\":3}', ?, ?, 1, ?)",
                (row_id + 1, trace, "IntegrityError: UNIQUE constraint failed",
                 "Traceback (most recent call last):\n  File \"store.py\"", stamp(at)),
            )
    for statement in COUNT_STAGED:
        conn.execute(statement)
    conn.execute("COMMIT")
    conn.close()


@pytest.fixture
def log_server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("logs-live")
    seed_log_db(data_dir / "logs.db")
    server = start_server(data_dir)
    yield server
    stop_server(server)


def test_admin_filters_to_5xx_and_opens_the_failed_trace(page: Page, log_server, artifacts) -> None:
    url = log_server.url
    page.goto(f"{url}/signup")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password", exact=True).fill("correct horse battery")
    page.get_by_label("Confirm password").fill("correct horse battery")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("current-user")).to_have_text("admin@example.com")

    page.get_by_role("link", name="Logs").click()
    rows = page.locator('[data-testid="log-table"] tbody tr[data-id]')
    # The seeded rows, plus whatever the app logged about this session's own requests.
    expect(rows.filter(has_text="/items/import")).to_have_count(1)
    expect(rows.filter(has_text=re.compile(r"(eeeeeeee|dddddddd)-0000-4000-8000-0000000000"))).to_have_count(6)

    page.locator("#log-filters").get_by_label("Status").select_option("5xx")  # active search: no submit needed
    expect(page).to_have_url(re.compile(r"status=5xx"))
    expect(rows).to_have_count(1)
    page.screenshot(path=artifacts / "logs-5xx.png", full_page=True)

    page.get_by_test_id("trace-link").click()
    expect(page).to_have_url(f"{url}/logs/traces/{FAILED_TRACE}")
    failure = page.get_by_test_id("failed-step")
    expect(failure).to_be_visible()
    expect(failure).to_contain_text("IntegrityError: UNIQUE constraint failed")
    page.screenshot(path=artifacts / "logs-trace.png", full_page=True)

    page.go_back()  # the filtered list comes back from the URL
    expect(page).to_have_url(re.compile(r"status=5xx"))
    expect(rows).to_have_count(1)
    expect(page.locator("#log-filters").get_by_label("Status")).to_have_value("5xx")

    page.goto(f"{url}/logs/overview?range=1h")
    expect(page.get_by_role("img", name="Requests over time by status class")).to_be_visible()
    expect(page.locator('[data-testid="latency-table"] tr[data-endpoint="/items/import"]')).to_contain_text("100.0%")
