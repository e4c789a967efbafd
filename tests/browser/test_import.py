"""CSV import in Debian's Chromium against a real uvicorn with logging on: the bar moves through
real progress values read back from the log database, and rejected rows show their lines."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.support.app import LiveServer, start_server, stop_server
from tests.browser.test_items import sign_up

pytestmark = pytest.mark.browser

ROWS = 30_000

# Runs in the page at every wait_for_function poll: note the bar's current value, and finish
# once two different values strictly between 0 and 100 have been seen.
RECORD_PERCENT = """() => {
  const seen = (window.__percents ||= []);
  const bar = document.querySelector("#import-progress progress[data-percent]");
  if (bar) {
    const value = Number(bar.dataset.percent);
    if (seen[seen.length - 1] !== value) seen.push(value);
  }
  return new Set(seen.filter((v) => v > 0 && v < 100)).size >= 2;
}"""


@pytest.fixture
def import_server(tmp_path_factory) -> Iterator[LiveServer]:
    # IMPORT_THROTTLE_MS slows validation (per 5000-row chunk) so the ~300 ms polls see it move.
    server = start_server(
        tmp_path_factory.mktemp("import"), {"IMPORT_THROTTLE_MS": "150", "LOG_SINKS": "csv,turso"}
    )
    yield server
    stop_server(server)


@pytest.fixture
def unlogged_server(tmp_path_factory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("unlogged"), {"IMPORT_THROTTLE_MS": "150", "LOG_SINKS": ""})
    yield server
    stop_server(server)


def csv_file(name: str, text: str) -> dict:
    return {"name": name, "mimeType": "text/csv", "buffer": text.encode()}


def big_csv(rows: int) -> str:
    out = io.StringIO()
    out.write("name,description,quantity\r\n")
    for i in range(rows):
        out.write(f"Widget {i},Imported in the browser test,{i % 100}\r\n")
    return out.getvalue()


def form_trace_id(page: Page) -> str:
    return json.loads(page.locator("#import-form").get_attribute("hx-headers") or "{}")["X-Trace-ID"]


def committed_steps(server: LiveServer, trace_id: str, deadline_s: float = 15.0) -> list[tuple[str, str]]:
    """The import's (step, status) rows from the server's log database, once DB_Commit ended."""
    deadline = time.monotonic() + deadline_s
    while True:
        with sqlite3.connect(server.data_dir / "logs.db") as conn:
            rows = conn.execute(
                "SELECT step_name, status FROM task_progress_logs WHERE trace_id = ? ORDER BY execution_order",
                (trace_id,),
            ).fetchall()
        if rows and rows[-1][0] == "DB_Commit" and rows[-1][1] in ("SUCCESS", "FAILED"):
            return rows
        assert time.monotonic() < deadline, f"import task rows never completed: {rows}"
        time.sleep(0.1)  # polling the log database for a condition, with a deadline


def test_import_shows_live_progress_then_the_summary(page: Page, import_server: LiveServer, artifacts) -> None:
    url = import_server.url
    sign_up(page, url, "importer@example.com")
    page.get_by_role("link", name="Import CSV").click()
    expect(page.get_by_role("heading", name="Import items from CSV")).to_be_visible()
    trace_id = form_trace_id(page)

    page.locator("#import-form input[name=file]").set_input_files(csv_file("widgets.csv", big_csv(ROWS)))
    page.get_by_role("button", name="Import").click()
    # No second click while the first import runs: it would import every row twice.
    expect(page.get_by_role("button", name="Import")).to_be_disabled()

    page.wait_for_function(RECORD_PERCENT, polling=50, timeout=30_000)
    page.screenshot(path=artifacts / "import-progress.png", full_page=True)
    expect(page.locator("#import-result")).to_contain_text(f"Imported {ROWS:,} items.", timeout=60_000)
    percents = page.evaluate("window.__percents")
    during = [p for p in percents if 0 < p < 100]
    assert len(set(during)) >= 2, percents
    assert percents == sorted(percents), f"the bar went backwards: {percents}"
    page.screenshot(path=artifacts / "import.png", full_page=True)

    steps = committed_steps(import_server, trace_id)
    assert ("Validation", "IN_PROGRESS") in steps and steps[-1] == ("DB_Commit", "SUCCESS")

    page.goto(f"{url}/items")
    expect(page.get_by_text(f"{ROWS} items")).to_be_visible()


def test_rejected_rows_show_their_line_numbers(page: Page, import_server: LiveServer, artifacts) -> None:
    url = import_server.url
    sign_up(page, url, "rejects@example.com")
    page.goto(f"{url}/items/import")
    text = (
        "name,description,quantity\r\n"
        "Good,fine,1\r\n"  # line 2
        ",missing name,1\r\n"  # line 3
        "Bad quantity,,lots\r\n"  # line 4
        "Also good,,2\r\n"  # line 5
        f"{'N' * 201},too long,1\r\n"  # line 6
    )
    page.locator("#import-form input[name=file]").set_input_files(csv_file("mixed.csv", text))
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-result")).to_contain_text("Imported 2 items.")
    cells = page.locator("#rejected-rows td[data-line]")
    expect(cells).to_have_count(3)
    assert [cells.nth(i).get_attribute("data-line") for i in range(3)] == ["3", "4", "6"]
    expect(page.locator("#rejected-rows")).to_contain_text("Name is required.")
    expect(page.locator("#rejected-rows")).to_contain_text("Quantity must be a whole number.")
    page.screenshot(path=artifacts / "import-rejected.png", full_page=True)

    # Strict mode: the same file imports nothing.
    page.locator("#import-form input[name=file]").set_input_files(csv_file("mixed.csv", text))
    page.get_by_label("Strict: import nothing if any row is invalid").check()
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-result")).to_contain_text("Nothing imported: 3 rows invalid")
    page.goto(f"{url}/items")
    expect(page.get_by_text("2 items")).to_be_visible()


def test_with_logging_off_the_bar_is_indeterminate_until_the_summary(page: Page, unlogged_server: LiveServer) -> None:
    url = unlogged_server.url
    sign_up(page, url, "quiet@example.com")
    page.goto(f"{url}/items/import")
    page.locator("#import-form input[name=file]").set_input_files(csv_file("widgets.csv", big_csv(ROWS)))
    page.get_by_role("button", name="Import").click()
    # One check in the page, so the summary replacing the bar cannot slip in between.
    page.wait_for_function(
        """() => {
          const box = document.querySelector("#import-progress");
          const bar = box && box.querySelector("progress");
          return bar && !bar.hasAttribute("value") && !bar.hasAttribute("data-percent")
            && box.textContent.includes("Importing…");
        }""",
        polling=50,
    )
    expect(page.locator("#import-result")).to_contain_text(f"Imported {ROWS:,} items.", timeout=60_000)
    assert not (unlogged_server.data_dir / "logs").exists()
