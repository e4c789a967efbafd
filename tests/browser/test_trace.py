"""In Debian's Chromium against a real uvicorn: the htmx requests a page makes carry that page's
trace id (hx-headers on <body>), as the api_logs rows written to the CSV file show."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from log.sinks.csv_sink import read_rows
from tests.support.app import LiveServer, start_server, stop_server
from tests.browser.test_items import add_item, edit_form_settled, log_in, sign_up, sign_up_over_http

pytestmark = pytest.mark.browser


ADMIN = "admin@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    """One server for this module: the app with its default sinks (CSV, which the first test
    reads, and the file: log database the explorer reads), plus a route that crashes; its
    first account, the admin, made before the tests."""
    server = start_server(tmp_path_factory.mktemp("explorer"), factory="tests.support.app:app_with_a_crash_route")
    sign_up_over_http(server.url, ADMIN)
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


def test_htmx_requests_carry_the_page_trace_id(page: Page, server: LiveServer) -> None:
    url = server.url
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

    rows = rows_of(server, trace_id, complete)
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


# -- an edit's task row on its trace page; a crash's reference --------------------------------------


def open_trace_until(page: Page, url: str, trace_id: str, *wanted: tuple[str, str], seconds: float = 15) -> None:
    """Open the trace page until it lists each (kind, text): a "request" or "step" entry holding
    that text (rows are written in batches)."""
    deadline = time.monotonic() + seconds
    entries = [page.locator(f'[data-kind="{kind}"]', has_text=text) for kind, text in wanted]
    while True:
        page.goto(f"{url}/logs/traces/{trace_id}")
        if all(e.count() for e in entries) or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # polling the log database for the flushed rows, with a deadline
    for entry in entries:
        expect(entry).to_have_count(1)


def test_an_edits_trace_page_lists_its_item_update_row(page: Page, server: LiveServer, artifacts) -> None:
    url = server.url
    log_in(page, url, ADMIN)
    add_item(page, "Traced lamp", "2")
    page.locator('article[data-item-name="Traced lamp"]').get_by_role("link", name="Edit").click()
    form = page.locator("form[id^=item-]")
    edit_form_settled(form)
    form.get_by_label("Quantity").fill("5")
    with page.expect_response(lambda r: r.request.method == "PUT") as edited:
        form.get_by_role("button", name="Save").click()
    trace_id = edited.value.headers["x-trace-id"]
    item_id = edited.value.url.rsplit("/", 1)[1]
    expect(page.locator('article[data-item-name="Traced lamp"]')).to_contain_text("5")

    open_trace_until(page, url, trace_id, ("step", "Item_Update"), ("request", f"PUT /items/{item_id}"))
    step = page.locator('[data-kind="step"]', has_text="Item_Update")
    expect(step).to_contain_text("DB_Commit")
    expect(step).to_have_attribute("data-status", "SUCCESS")
    expect(page.locator('[data-kind="step"]', has_text="Item_Create")).to_have_count(1)  # same page, same trace
    page.screenshot(path=artifacts / "trace-item-update.png", full_page=True)


def test_a_crash_shows_the_reference_and_links_admins_to_the_trace(
    page: Page, server: LiveServer, artifacts
) -> None:
    url = server.url
    log_in(page, url, ADMIN)
    response = page.goto(f"{url}/boom")
    assert response is not None and response.status == 500
    trace_id = response.headers["x-trace-id"]
    expect(page.get_by_role("heading", name="Something went wrong")).to_be_visible()
    expect(page.get_by_test_id("error-reference")).to_have_text(f"Reference: {trace_id}")
    for width, height in [(1280, 800), (390, 844)]:
        page.set_viewport_size({"width": width, "height": height})
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.screenshot(path=artifacts / f"error-500-{width}-{scheme}.png", full_page=True)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 800})

    # An htmx request that crashes gets the alert in place of what it was to replace.
    page.goto(url)
    page.evaluate("window.__noReload = true")
    with page.expect_response(lambda r: r.url.endswith("/boom")) as crashed:
        page.evaluate("htmx.ajax('POST', '/boom', {target: '#items-panel', swap: 'outerHTML'})")
    htmx_trace = crashed.value.headers["x-trace-id"]
    alert = page.locator("#error-message")
    expect(alert).to_contain_text("Something went wrong on our side")
    expect(alert.get_by_test_id("error-reference")).to_have_text(f"Reference: {htmx_trace}")
    assert page.evaluate("window.__noReload") is True
    page.screenshot(path=artifacts / "error-500-htmx.png", full_page=True)

    page.get_by_test_id("error-trace-link").click()
    expect(page).to_have_url(f"{url}/logs/traces/{htmx_trace}")
    open_trace_until(page, url, htmx_trace, ("step", "unhandled_exception"), ("request", "POST /boom"))
    expect(page.get_by_test_id("failed-step")).to_contain_text("RuntimeError: the handler fell over")
