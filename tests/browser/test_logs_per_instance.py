"""On Cloud Run with LOG_DB_EPHEMERAL=1 (no Turso), the pages that read logs show a visible
warning that logs are per instance; the others do not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.support.app import LiveServer, start_server, stop_server

pytestmark = pytest.mark.browser

BANNER = "Logs are kept per instance and lost on restart"


@pytest.fixture
def per_instance_server(tmp_path_factory) -> Iterator[LiveServer]:
    # Plain HTTP on loopback here: the session cookie must not be Secure-only (HTTPS_ONLY).
    env = {"K_SERVICE": "browser-test", "LOG_DB_EPHEMERAL": "1", "HTTPS_ONLY": "false"}
    server = start_server(tmp_path_factory.mktemp("per-instance"), env)
    yield server
    stop_server(server)


def test_log_pages_warn_that_logs_are_per_instance(page: Page, per_instance_server: LiveServer, artifacts) -> None:
    url = per_instance_server.url
    page.goto(f"{url}/signup")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password", exact=True).fill("correct horse battery")
    page.get_by_label("Confirm password").fill("correct horse battery")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("current-user")).to_have_text("admin@example.com")
    banner = page.get_by_test_id("logs-per-instance")
    expect(banner).to_have_count(0)  # the items page reads no logs

    page.get_by_role("link", name="Logs").click()
    expect(page).to_have_url(f"{url}/logs")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(BANNER)
    page.screenshot(path=artifacts / "logs-per-instance.png", full_page=True)

    page.get_by_role("tab", name="Overview").click()
    expect(page).to_have_url(f"{url}/logs/overview")
    expect(banner).to_be_visible()

    page.goto(f"{url}/items/import")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(BANNER)
    page.screenshot(path=artifacts / "import-per-instance.png", full_page=True)
