"""Sessions that really end (embedded default): a cookie saved before logout is signed out at
once, and "Log out of all devices" ends the session in another browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_items import log_in, sign_up

pytestmark = pytest.mark.browser


def test_logout_ends_saved_cookies_and_all_devices(page: Page, browser: Browser, live_server) -> None:
    url = live_server.url
    sign_up(page, url, "sam@example.com")
    saved = page.context.cookies()
    assert [c["name"] for c in saved] == ["session"]
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page.get_by_role("link", name="Log in").first).to_be_visible()

    # The cookie as it was before logout, replayed in a fresh browser: the login redirect.
    replay = browser.new_context()
    replay.add_cookies(saved)
    copy = replay.new_page()
    copy.goto(f"{url}/items/import")
    expect(copy).to_have_url(re.compile(r"/login$"))
    replay.close()

    # Two browsers signed in as the same user; "Log out of all devices" in one ends both.
    log_in(page, url, "sam@example.com")
    phone_context = browser.new_context()
    phone = phone_context.new_page()
    log_in(phone, url, "sam@example.com")
    page.get_by_role("button", name="Log out of all devices").click()
    expect(page.get_by_role("link", name="Log in").first).to_be_visible()
    phone.goto(f"{url}/items/import")
    expect(phone).to_have_url(re.compile(r"/login$"))
    expect(phone.get_by_test_id("current-user")).to_have_count(0)
    phone_context.close()
