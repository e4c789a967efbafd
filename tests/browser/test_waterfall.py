"""The trace page's waterfall in Debian's Chromium against a real uvicorn: an import's steps as one
bar each under the request's bar, a crash's failure open with its stack, a second user's request
in the same trace marked, and no sideways scrolling on a phone."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_items import log_in, sign_up, sign_up_over_http
from tests.support.app import LiveServer, start_server, stop_server

pytestmark = pytest.mark.browser

MS = re.compile(r"\d[\d,]* ms")
SIZES = [(1280, 800), (390, 844)]


ADMIN = "admin@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    """One server for this module: the app with its default sinks (CSV and the file: log
    database the explorer reads) and a route that crashes; its first account, the admin, made
    before the tests."""
    server = start_server(
        tmp_path_factory.mktemp("waterfall"), factory="tests.support.app:app_with_a_crash_route",
    )
    sign_up_over_http(server.url, ADMIN)
    yield server
    stop_server(server)


def widgets_csv(rows: int) -> dict:
    lines = ["name,description,quantity"] + [f"Widget {i},In the waterfall test,{i % 100}" for i in range(rows)]
    return {"name": "widgets.csv", "mimeType": "text/csv", "buffer": "\r\n".join(lines).encode()}


def form_trace_id(page: Page) -> str:
    """The trace id the import form sends (its hx-headers), so its rows can be found."""
    return json.loads(page.locator("#import-form").get_attribute("hx-headers") or "{}")["X-Trace-ID"]


def open_trace(page: Page, url: str, trace_id: str, *wanted: tuple[str, int], seconds: float = 15) -> None:
    """Open the trace page until each (selector, count) holds (rows are written in batches)."""
    deadline = time.monotonic() + seconds
    while True:
        page.goto(f"{url}/logs/traces/{trace_id}")
        if all(page.locator(sel).count() >= n for sel, n in wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # polling the log database for the flushed rows, with a deadline
    for sel, n in wanted:
        expect(page.locator(sel)).to_have_count(n)


def no_sideways_scroll(page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    widths = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths


def screens(page: Page, artifacts: Path, name: str) -> None:
    folder = artifacts / "screens"
    folder.mkdir(exist_ok=True)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.screenshot(path=folder / f"{name}-{width}-{scheme}.png", full_page=True)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 800})


def test_an_imports_trace_is_one_bar_per_step_under_the_request(page: Page, server: LiveServer, artifacts) -> None:
    url = server.url
    log_in(page, url, ADMIN)
    page.goto(f"{url}/items/import")
    trace_id = form_trace_id(page)
    page.locator("#import-form input[name=file]").set_input_files(widgets_csv(600))
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-result")).to_contain_text("Imported 600 items.", timeout=30_000)

    open_trace(page, url, trace_id, ('[data-kind="request"]', 1), ('[data-kind="step"][data-status="SUCCESS"]', 3))
    request = page.locator('[data-kind="request"]')
    expect(request).to_have_count(1)
    expect(request).to_contain_text("POST")
    expect(request).to_contain_text("/items/import")
    expect(request.locator('[data-track="request"]')).to_contain_text(MS)
    bars = request.locator('[data-kind="task"][data-task="Bulk_Import"] [data-kind="step"]')
    expect(bars).to_have_count(3)  # exactly one bar per step, nested under the request
    for i, name in enumerate(["Validation", "Transform", "DB_Commit"]):
        bar = bars.nth(i)
        expect(bar).to_contain_text(name)
        expect(bar).to_have_attribute("data-shape", "span")
        expect(bar.locator('[data-track="span"] text')).to_have_text(MS)  # the duration beside the bar
    # progress rows are ticks on their span, their payload one click away; never cards of their own
    expect(page.get_by_text("IN_PROGRESS")).to_have_count(0)
    commit_ticks = bars.nth(2).get_by_test_id("ticks")
    expect(commit_ticks).not_to_be_visible()
    bars.nth(2).locator("summary").click()
    expect(commit_ticks).to_contain_text(re.compile(r"\d+ progress updates?"))
    expect(commit_ticks.locator('[data-kind="tick"]').first).to_contain_text('"total":600')
    # the same facts as a table
    page.get_by_text("Show the table").click()
    expect(page.get_by_test_id("trace-table").locator('tr[data-row="step"]', has_text="Bulk_Import")).to_have_count(3)

    no_sideways_scroll(page)
    screens(page, artifacts, "trace-import")


def test_a_crash_trace_shows_the_failure_open_and_marks_another_users_request(
    page: Page, browser: Browser, server: LiveServer, artifacts
) -> None:
    url = server.url
    log_in(page, url, ADMIN)
    response = page.goto(f"{url}/boom")
    assert response is not None and response.status == 500
    trace_id = response.headers["x-trace-id"]

    # Another user sends a request into the same trace (trace ids are the client's to choose).
    other = browser.new_context()
    try:
        other_page = other.new_page()
        sign_up(other_page, url, "mallory@example.com")
        joined = other.request.get(f"{url}/items", headers={"X-Trace-ID": trace_id})
        assert joined.status == 200
    finally:
        other.close()

    open_trace(page, url, trace_id, ('[data-kind="request"]', 2), ('[data-kind="step"]', 1))
    failure = page.get_by_test_id("failed-step")
    expect(failure).to_be_visible()  # open without a click
    expect(failure).to_contain_text("RuntimeError: the handler fell over")
    expect(failure.get_by_test_id("stack-trace")).to_be_visible()
    expect(failure.get_by_test_id("stack-trace")).to_contain_text("Traceback (most recent call last)")
    crash = page.locator('[data-kind="step"]', has_text="unhandled_exception")
    expect(crash).to_have_attribute("data-status", "FAILED")

    expect(page.get_by_test_id("mixed-users")).to_contain_text("Different users")
    marked = page.locator('[data-kind="request"]', has=page.get_by_test_id("other-user"))
    expect(marked).to_have_count(1)
    expect(marked).to_contain_text("GET")
    expect(marked).to_contain_text("/items")
    users = page.get_by_test_id("request-user").all_inner_texts()
    assert len(set(users)) == 2, users

    no_sideways_scroll(page)
    screens(page, artifacts, "trace-crash")
