"""In Debian's Chromium against a real uvicorn: after visiting several items, the log
database's rollups hold ONE key for the item page, its route template, and the explorer's
overview shows it (not one row per item URL)."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_items import add_item, sign_up
from tests.support.app import LiveServer, start_server, stop_server

pytestmark = pytest.mark.browser

ITEM_ROUTE = "/items/{item_id:int}"


@pytest.fixture
def routes_server(tmp_path_factory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("routes"), {"LOG_SINKS": "csv,turso"})
    yield server
    stop_server(server)


def rollup_keys(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            return dict(conn.execute("SELECT endpoint, SUM(n) FROM api_latency_hour GROUP BY 1").fetchall())
        except sqlite3.OperationalError:  # the server has not created the tables yet
            return {}


def wait_for_keys(db: Path, want, seconds: float = 15) -> dict[str, int]:
    """The rollup keys once `want(keys)` holds (the database sink writes in batches)."""
    deadline = time.monotonic() + seconds
    while True:
        keys = rollup_keys(db)
        if want(keys) or time.monotonic() > deadline:
            return keys
        time.sleep(0.05)  # polling the database for the written batch, with a deadline


def test_item_pages_roll_up_under_one_route_template(page: Page, routes_server: LiveServer, artifacts) -> None:
    url = routes_server.url
    sign_up(page, url, "admin@example.com")  # the first user of the demo store is an admin
    for name in ("Lamp", "Desk", "Chair"):
        add_item(page, name)
    links = page.locator("article[data-item-name] h2 a")
    expect(links).to_have_count(3)
    hrefs = [links.nth(i).get_attribute("href") for i in range(3)]
    assert len(set(hrefs)) == 3 and all(re.fullmatch(r"/items/\d+", h or "") for h in hrefs), hrefs
    for i in range(3):
        page.goto(url + "/items")
        page.locator("article[data-item-name] h2 a").nth(i).click()
        expect(page).to_have_url(url + hrefs[i])
    page.goto(url + "/no/such/page")

    db = routes_server.data_dir / "logs.db"
    keys = wait_for_keys(db, lambda k: k.get(ITEM_ROUTE, 0) >= 3 and "(unmatched)" in k)
    assert keys.get(ITEM_ROUTE, 0) >= 3, keys
    assert not [k for k in keys if re.fullmatch(r"/items/\d+.*", k)], keys  # no per-item keys
    assert "(unmatched)" in keys and "/no/such/page" not in keys, keys

    page.goto(f"{url}/logs/overview?range=1h")
    row = page.locator(f'[data-testid="latency-table"] tr[data-endpoint="{ITEM_ROUTE}"]')
    expect(row).to_have_count(1)
    expect(row.locator("td").first).to_have_text(ITEM_ROUTE)
    assert int(row.locator("td").nth(1).inner_text()) >= 3
    page.screenshot(path=artifacts / "logs-overview-routes.png", full_page=True)
