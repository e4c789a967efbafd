"""In Debian's Chromium against a real uvicorn: the htmx requests a page makes carry that page's
trace id (hx-headers on <body>), as the api_logs rows written to the CSV file show."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from log.sinks.csv_sink import read_rows
from tests.support.app import LiveServer, start_server, stop_server
from tests.browser.test_items import add_item, sign_up

pytestmark = pytest.mark.browser


@pytest.fixture
def logging_server(tmp_path_factory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("trace"), {"LOG_SINKS": "csv"})
    yield server
    stop_server(server)


def rows_of(server: LiveServer, trace_id: str, want, seconds: float = 15) -> list:
    """The trace's api_logs rows once `want(rows)` holds (the sink writes in batches)."""
    deadline = time.monotonic() + seconds
    while True:
        logs = server.data_dir / "logs"
        rows = [r for r in read_rows(logs, "api_logs") if r.trace_id == trace_id] if logs.is_dir() else []
        if want(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)  # polling the file for the flushed rows, with a deadline


def test_htmx_requests_carry_the_page_trace_id(page: Page, logging_server: LiveServer) -> None:
    url = logging_server.url
    sign_up(page, url, "tracer@example.com")
    trace_id = page.locator("body").get_attribute("data-trace-id")
    assert trace_id and len(trace_id) == 36

    page.evaluate("window.__noReload = true")
    add_item(page, "Traced lamp", "2")
    add_item(page, "Other thing", "1")
    page.get_by_label("Search items").press_sequentially("lamp", delay=20)
    expect(page.locator("article[data-item-name]")).to_have_count(1)
    assert page.evaluate("window.__noReload") is True  # same page, same trace id
    assert page.locator("body").get_attribute("data-trace-id") == trace_id

    def complete(rows: list) -> bool:
        posts = [r for r in rows if r.method == "POST" and r.endpoint == "/items"]
        searches = [r for r in rows if r.method == "GET" and r.endpoint.startswith("/items?q=lamp")]
        return len(posts) == 2 and len(searches) >= 1

    rows = rows_of(logging_server, trace_id, complete)
    assert complete(rows), [(r.method, r.endpoint) for r in rows]
    # the page itself was the first request of the trace; every htmx request sent the header
    assert rows[0].method == "GET" and rows[0].response_status == 200
    htmx_rows = rows[1:]
    assert all('"hx-request":"true"' in (r.request_header or "") for r in htmx_rows)
    assert all(f'"x-trace-id":"{trace_id}"' in (r.request_header or "") for r in htmx_rows)
    assert all(r.user_id is not None and r.response_status == 200 for r in rows)
    # and another page load starts a new trace
    page.reload()
    assert page.locator("body").get_attribute("data-trace-id") != trace_id
