"""CSV import in Debian's Chromium against a real uvicorn with logging off: the upload bar
follows the bytes sent (network throttled through CDP), the processing bar moves through real
values on the largest file the limits allow, and rejected rows come back listed and as a CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.app import LiveServer, start_server, stop_server
from tests.browser.test_items import sign_up

pytestmark = pytest.mark.browser

MAX_BYTES = 10 * 1024 * 1024  # MAX_IMPORT_BYTES' default: the whole request
MAX_ROWS = 100_000  # store/items_csv.py's MAX_ROWS
UPLOAD_BYTES_PER_S = 6 * 1024 * 1024  # ~1.7 s to send the largest file

# Installed in the page before the upload: every value either bar takes is noted as the DOM
# changes (the upload bar is set by static/import.js, the processing bar swapped in by htmx),
# so none is missed between two of the test's own checks.
WATCH_BARS = """() => {
  const seen = (window.__seen = { upload: [], processing: [] });
  const note = (list, bar) => {
    if (!bar || bar.dataset.percent === undefined) return;
    const value = Number(bar.dataset.percent);
    if (list[list.length - 1] !== value) list.push(value);
  };
  const look = () => {
    note(seen.upload, document.querySelector("#import-upload progress"));
    note(seen.processing, document.querySelector("#import-progress progress[data-percent]"));
  };
  new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true });
}"""

VARIANTS = [(1280, 800, "light"), (1280, 800, "dark"), (390, 844, "light"), (390, 844, "dark")]


def screens(page: Page, artifacts: Path, state: str) -> None:
    """The page now, at desktop and phone width, light and dark; back to desktop light."""
    folder = artifacts / "screens"
    folder.mkdir(exist_ok=True)
    for width, height, scheme in VARIANTS:
        page.set_viewport_size({"width": width, "height": height})
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=folder / f"import-{state}-{width}-{scheme}.png", full_page=True, animations="disabled")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="light")


def intermediate(values: list[float]) -> set[float]:
    return {v for v in values if 0 < v < 100}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    # Logging off: the bar must not depend on any log sink.
    server = start_server(tmp_path_factory.mktemp("import"), {"LOG_SINKS": ""})
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def largest_csv(tmp_path_factory) -> Path:
    """MAX_ROWS rows filling the request limit, less room for the multipart envelope."""
    header = b"name,description,quantity\r\n"
    size = MAX_BYTES - 4096
    row_bytes, longer = divmod(size - len(header), MAX_ROWS)
    path = tmp_path_factory.mktemp("csv") / "largest.csv"
    with path.open("wb") as out:
        out.write(header)
        for i in range(MAX_ROWS):
            start = b"Widget %06d," % i
            end = b",%d\r\n" % (i % 100)
            out.write(start + b"d" * (row_bytes + (i < longer) - len(start) - len(end)) + end)
    assert path.stat().st_size == size
    return path


def test_upload_then_processing_progress_on_the_largest_file(
    page: Page, server: LiveServer, largest_csv: Path, artifacts: Path
) -> None:
    sign_up(page, server.url, "importer@example.com")
    page.get_by_role("link", name="Import CSV").click()
    expect(page.get_by_role("heading", name="Import items from CSV")).to_be_visible()
    expect(page.locator("#import-upload")).to_be_hidden()
    screens(page, artifacts, "idle")

    # Only the upload is slowed: responses (the progress polls) are not.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": UPLOAD_BYTES_PER_S,
    })
    page.evaluate(WATCH_BARS)
    page.locator("#import-form input[name=file]").set_input_files(largest_csv)
    page.get_by_role("button", name="Import").click()
    # No second click while the first import runs: it would import every row twice.
    expect(page.get_by_role("button", name="Import")).to_be_disabled()

    page.wait_for_function("() => window.__seen.upload.some((v) => v > 0 && v < 100)", polling=50)
    expect(page.locator("#import-upload [data-upload-label]")).to_contain_text("MB)")
    screens(page, artifacts, "uploading")
    page.wait_for_function("() => window.__seen.processing.some((v) => v > 0 && v < 100)", polling=50, timeout=60_000)
    page.screenshot(path=artifacts / "screens" / "import-processing-1280-light.png", full_page=True)
    expect(page.locator("#import-result")).to_contain_text(f"Imported {MAX_ROWS:,} items.", timeout=90_000)

    seen = page.evaluate("window.__seen")
    assert len(intermediate(seen["upload"])) >= 2, seen["upload"]
    assert seen["upload"] == sorted(seen["upload"]) and seen["upload"][-1] == 100, seen["upload"]
    assert intermediate(seen["processing"]), seen["processing"]
    assert seen["processing"] == sorted(seen["processing"]), f"the bar went backwards: {seen['processing']}"
    screens(page, artifacts, "result")

    page.goto(f"{server.url}/items")
    expect(page.get_by_text(f"{MAX_ROWS} items")).to_be_visible()


def test_rejected_rows_are_listed_and_downloadable(page: Page, server: LiveServer, artifacts: Path) -> None:
    url = server.url
    sign_up(page, url, "rejects@example.com")
    page.goto(f"{url}/items/import")
    text = (
        "name,description,quantity\r\n"
        "Good,fine,1\r\n"  # line 2
        ",missing name,1\r\n"  # line 3
        "Bad quantity,=cmd(),lots\r\n"  # line 4
        "Also good,,2\r\n"  # line 5
        f"{'N' * 201},too long,1\r\n"  # line 6
    )
    page.locator("#import-form input[name=file]").set_input_files(
        {"name": "mixed.csv", "mimeType": "text/csv", "buffer": text.encode()}
    )
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-result")).to_contain_text("Imported 2 items.")
    rows = page.locator("#rejected-rows tbody tr")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).locator("td").all_inner_texts() for i in range(2)] == [
        ["3", "name: empty", "Name is required."],
        ["4", "quantity: lots", "Quantity must be a whole number."],
    ]
    expect(rows.nth(2)).to_contain_text("Name must be at most 200 characters")
    screens(page, artifacts, "rejected")

    with page.expect_download() as info:
        page.get_by_role("link", name="Download rejected rows (CSV)").click()
    download = info.value
    assert download.suggested_filename == "rejected-rows.csv"
    table = list(csv.reader(io.StringIO(Path(download.path()).read_text("utf-8"), newline="")))
    assert table == [
        ["name", "description", "quantity", "error"],
        ["", "missing name", "1", "Line 3: Name is required."],
        ["Bad quantity", "'=cmd()", "lots", "Line 4: Quantity must be a whole number."],
        ["N" * 201, "too long", "1", "Line 6: Name must be at most 200 characters (got 201)."],
    ]

    # Strict mode: the same file imports nothing.
    page.locator("#import-form input[name=file]").set_input_files(
        {"name": "mixed.csv", "mimeType": "text/csv", "buffer": text.encode()}
    )
    page.get_by_label("Strict: import nothing if any row is invalid").check()
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-result")).to_contain_text("Nothing imported: 3 rows invalid")
    page.goto(f"{url}/items")
    expect(page.get_by_text("2 items")).to_be_visible()
