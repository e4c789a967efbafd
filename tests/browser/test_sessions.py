"""Accounts on the embedded default: a cookie saved before logout is signed out at once, "Log
out of all devices" ends the session in another browser, and sign-up has a per-IP limit."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_items import log_in, sign_up
from tests.support.app import LiveServer, start_server, stop_server

pytestmark = pytest.mark.browser
SIGNUP_LIMIT = 3  # per IP per hour; every browser here comes from 127.0.0.1


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    # One server for this module's tests (each start costs seconds on a busy CI machine).
    server = start_server(tmp_path_factory.mktemp("accounts"), env={"SIGNUP_LIMIT_PER_IP": str(SIGNUP_LIMIT)})
    yield server
    stop_server(server)


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


def test_signup_over_the_limit_gets_a_clear_429(browser: Browser, live_server) -> None:
    # Earlier tests in this module may have used some of the budget: sign up until refused.
    for n in range(SIGNUP_LIMIT + 1):
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{live_server.url}/signup")
        page.get_by_label("Email").fill(f"new{n}@example.com")
        page.get_by_label("Password").fill("correct horse battery")
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.get_by_role("button", name="Sign up").click()
        if posted.value.status == 429:
            break
        expect(page.get_by_test_id("current-user")).to_have_text(f"new{n}@example.com")
        context.close()
    assert posted.value.status == 429
    expect(page.get_by_role("alert")).to_have_text("Too many sign-up attempts. Try again in 60 minutes.")
    expect(page.get_by_label("Email")).to_have_value(f"new{n}@example.com")  # the form is kept
    expect(page.get_by_test_id("current-user")).to_have_count(0)
    context.close()
