"""The explorer's request list and overview in Debian's Chromium against a real uvicorn: the live
tail, rows as links, copying a trace id, empty filters out of the URL, no sideways scrolling on
a phone, the 404 page's "Log in" that returns to the page; screenshots for the docs/review."""

from __future__ import annotations

import datetime as dt
import math
import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from log.db.schema import ROLLUPS_PATH, SCHEMA_SQL as SCHEMA, split_statements as sql_statements
from log.explorer.queries import SNOWFLAKE_EPOCH_MS, UTC, stamp
from tests.browser.test_axe import TRANSITIONS_DONE
from tests.support.app import LiveServer, start_server, stop_server

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "admin@example.com", "correct horse battery"
ROUTES = ["/items", "/items/{item_id:int}", "/items/{item_id:int}/edit", "/items/import", "/logs/traces/{trace_id}"]
CRASH_TRACE = "cccccccc-0000-4000-8000-000000000500"


def seed(path: Path) -> None:
    """Three hours of traffic at the end of a 24-hour range (route templates, a few 4xx/5xx, one
    crash with its FAILED row), so the overview has routes, a new error and an empty stretch."""
    now = dt.datetime.now(UTC)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for statement in sql_statements(SCHEMA + ROLLUPS_PATH.read_text()):
        conn.execute(statement)
    for i in range(180):
        at = now - dt.timedelta(minutes=180 - i, seconds=7)
        route = ROUTES[i % len(ROUTES)]
        path_ = route.replace("{item_id:int}", str(i % 7 + 1)).replace("{trace_id}", str(uuid.UUID(int=i)))
        status = 500 if i == 150 else 404 if i % 23 == 0 else 303 if route.endswith("edit") else 200
        trace = CRASH_TRACE if i == 150 else str(uuid.UUID(int=(0xEEEE << 112) + i))
        row_id = ((math.floor(at.timestamp() * 1000) - SNOWFLAKE_EPOCH_MS) << 22) | i
        conn.execute(
            "INSERT INTO api_logs (id, trace_id, method, endpoint, response_status, duration_ms, user_id, created_at, route)"
            " VALUES (?, ?, ?, ?, ?, ?, '1', ?, ?)",
            (row_id, trace, "POST" if route == "/items/import" else "GET", path_, status, 5 + (i * 37) % 400, stamp(at), route),
        )
        if i == 150:
            conn.execute(
                "INSERT INTO task_progress_logs (id, trace_id, task_name, step_name, status, error_message, stack_trace,"
                " execution_order, created_at) VALUES (?, ?, 'http_request', 'unhandled_exception', 'FAILED', ?, ?, 0, ?)",
                (row_id + 1, trace, "KeyError: 'name'", "Traceback (most recent call last):\n  File \"x.py\"", stamp(at)),
            )
    conn.execute("COMMIT")
    conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("logs-list")
    seed(data_dir / "logs.db")
    live = start_server(data_dir)
    with httpx.Client(base_url=live.url) as client:  # the first account is the admin
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/signup").text).group(1)
        assert client.post("/signup", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token}).status_code == 303
        live.session = client.cookies["session"]  # the admin's signed-in session, for log_in
    yield live
    stop_server(live)


def log_in(page: Page, server: LiveServer) -> None:
    """The admin's session from the module's sign-up in this page's browser context (logging in
    through the form is test_a_signed_out_404_offers_log_in_and_returns_to_the_page's part)."""
    page.context.add_cookies([{"name": "session", "value": server.session, "url": server.url}])


ROWS = '[data-testid="log-table"] tbody tr[data-id]'


def test_live_tail_shows_a_request_made_after_the_page_loaded(page: Page, server: LiveServer) -> None:
    log_in(page, server)
    page.goto(f"{server.url}/logs")
    page.get_by_test_id("live-tail").check()
    expect(page.get_by_role("status").filter(has_text="new requests appear")).to_be_visible()
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    probe = f"/tail-probe-{uuid.uuid4().hex[:8]}"
    assert httpx.get(server.url + probe).status_code == 404  # a request from elsewhere, logged
    expect(page.locator(ROWS).filter(has_text=probe)).to_have_count(1, timeout=15_000)
    assert page.evaluate("window.sameDocument") is True
    assert page.locator(ROWS).first.get_attribute("data-id") == page.locator(ROWS).filter(has_text=probe).get_attribute("data-id")
    # While the tab is hidden the tail's polls are cancelled (app.js): the next one is prevented
    # and no request for /logs/tail leaves the page.
    tail_requests: list[str] = []
    page.on("request", lambda request: tail_requests.append(request.url) if "/logs/tail" in request.url else None)
    prevented = page.evaluate("""() => {
        Object.defineProperty(document, "hidden", {value: true, configurable: true});
        return new Promise((resolve) => document.addEventListener("htmx:beforeRequest", (event) => {
            if (event.detail.elt.matches("[data-tail]")) resolve(event.defaultPrevented);
        }));
    }""")
    assert prevented is True and tail_requests == []
    page.evaluate('delete document.hidden')  # visible again (the prototype's getter)
    # A filter change replaces the results: the tail stops.
    page.locator("#log-filters").get_by_label("Status").select_option("errors")
    expect(page).to_have_url(re.compile(r"status=errors"))
    expect(page.locator("#log-tail")).to_have_count(0)
    expect(page.get_by_test_id("live-tail")).not_to_be_checked()


def test_rows_link_to_their_trace_and_copy_the_full_id(page: Page, server: LiveServer) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(page, server)
    page.goto(f"{server.url}/logs?range=24h")
    crash = page.locator(ROWS).filter(has_text=CRASH_TRACE)
    crash.get_by_role("button", name=f"Copy trace id {CRASH_TRACE}").click()
    assert page.evaluate("navigator.clipboard.readText()") == CRASH_TRACE
    expect(page.locator("#toasts")).to_contain_text(f"Copied {CRASH_TRACE}")
    # A click on the endpoint cell lands on the row's link (it covers the row).
    box = crash.locator("td").nth(3).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page).to_have_url(f"{server.url}/logs/traces/{CRASH_TRACE}")
    page.go_back()
    # Keyboard: the row's link is its tab stop; Enter opens the trace.
    page.locator(ROWS).filter(has_text=CRASH_TRACE).get_by_role("link").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server.url}/logs/traces/{CRASH_TRACE}")


def test_empty_filters_stay_out_of_the_url(page: Page, server: LiveServer) -> None:
    log_in(page, server)
    page.goto(f"{server.url}/logs?range=24h&method=&user=&trace=")
    expect(page).to_have_url(f"{server.url}/logs?range=24h")  # the server's redirect
    page.locator("#log-filters").get_by_label("Status").select_option("errors")
    expect(page).to_have_url(f"{server.url}/logs?range=24h&status=errors")  # htmx: only the set fields
    expect(page.locator(ROWS).filter(has_text=CRASH_TRACE)).to_have_count(1)
    statuses = page.locator(f"{ROWS} [data-status]").evaluate_all("els => els.map(e => Number(e.dataset.status))")
    assert len(statuses) >= 9 and all(400 <= s <= 599 for s in statuses)  # the seeded 404s and the 500, only errors
    page.locator("#log-filters").get_by_label("Route or path").fill("/items/{item_id:int}/edit")
    expect(page).to_have_url(re.compile(r"range=24h&status=errors&path=%2Fitems%2F%7Bitem_id%3Aint%7D%2Fedit$"))


@pytest.mark.parametrize("path", ["/logs", "/logs?range=all", "/logs/overview", "/logs/overview?route=/items/{item_id:int}",
                                  f"/logs/traces/{CRASH_TRACE}"])
def test_no_explorer_page_scrolls_sideways_on_a_phone(page: Page, server: LiveServer, path: str) -> None:
    log_in(page, server)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server.url + path)
    expect(page.locator("main h1").first).to_be_visible()
    expect(page.locator("#not-found")).to_have_count(0)  # the page itself, signed in as the admin
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth"), page.evaluate(
        "[document.scrollingElement.scrollWidth, innerWidth]")


def test_a_signed_out_404_offers_log_in_and_returns_to_the_page(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.url}/logs/overview?range=1h")
    expect(page.locator("#not-found")).to_be_visible()  # signed out: the explorer does not exist
    page.get_by_test_id("not-found-login").click()
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/logs/overview?range=1h")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_screenshots_of_the_list_and_the_overview(page: Page, server: LiveServer, artifacts: Path) -> None:
    log_in(page, server)
    screens = artifacts / "screens"
    screens.mkdir(exist_ok=True)

    def both_schemes(name: str) -> None:
        # The page as loaded, light then dark (the theme's colour transitions ended first).
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.evaluate(TRANSITIONS_DONE)
            page.screenshot(path=screens / f"{name}-{scheme}.png", full_page=True)
        page.emulate_media(color_scheme="light")

    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{server.url}/logs?range=24h")
        expect(page.locator(ROWS).first).to_be_visible()
        both_schemes(f"logs-list-{width}")
        page.goto(f"{server.url}/logs/overview?range=24h")
        # 3 hours of data in a 24-hour range: the chart says so and spends its width on them.
        expect(page.get_by_test_id("empty-range")).to_contain_text("No requests from")
        expect(page.get_by_test_id("new-errors")).to_contain_text("KeyError")
        both_schemes(f"logs-overview-{width}")
