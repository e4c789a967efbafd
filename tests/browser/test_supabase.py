"""The whole flow on the Supabase backend in Debian's Chromium: a real uvicorn server talking to
the GoTrue/PostgREST stand-in over a real PostgreSQL with the real migration. Access tokens live
4 seconds, so the flow also shows that an expired token is refreshed without the user noticing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import jwt
import pytest
from itsdangerous import URLSafeTimedSerializer
from playwright.sync_api import Browser, Page, expect

from log.sinks.csv_sink import read_rows
from tests.browser.test_items import edit_form_settled
from tests.support.app import LiveServer, start_server, stop_server
from tests.support.supabase_standin import Standin, StandinConfig, module_fixtures, serve_standin

pytestmark = pytest.mark.browser

PASSWORD = "correct horse 1"
SERVER_SECRET = "browser-test-secret"  # what tests.support.app.start_server sets as SECRET_KEY
ACCESS_TTL = 4


pg, standin = module_fixtures(lambda: StandinConfig(access_ttl=ACCESS_TTL))


@pytest.fixture
def supabase_server(tmp_path_factory, standin: Standin) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("supa"), env={
        "SUPABASE_URL": standin.url, "SUPABASE_ANON_KEY": standin.anon_key, "LOG_SINKS": "csv",
    })
    try:
        yield server
    finally:
        stop_server(server)


def new_email(who: str) -> str:
    return f"{who}-{uuid.uuid4().hex[:8]}@example.test"


def session_tokens(page: Page) -> dict[str, str]:
    """The tokens in the browser's (HttpOnly) session cookie, as the server signed them."""
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    payload = URLSafeTimedSerializer(SERVER_SECRET, salt="session").loads(cookie["value"])
    return payload["s"]["tokens"]


def sign_up_and_confirm(page: Page, url: str, standin: Standin, email: str) -> None:
    page.goto(f"{url}/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Confirm password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    expect(page.locator("#check-email")).to_contain_text(email)
    expect(page.get_by_test_id("current-user")).to_have_count(0)
    # The stand-in's outbox holds what Supabase would have emailed: the link's token_hash.
    token_hash = next(h for e, h in reversed(standin.state.outbox) if e == email)
    page.goto(f"{url}/auth/confirm?token_hash={token_hash}&type=email")
    expect(page.get_by_test_id("current-user")).to_have_text(email)
    assert page.url == f"{url}/"


def log_in(page: Page, url: str, email: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)


def add_item(page: Page, name: str, quantity: str = "1") -> None:
    form = page.locator("#create-form")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Quantity").fill(quantity)
    form.get_by_role("button", name="Add item").click()
    expect(page.locator(f'article[data-item-name="{name}"]')).to_be_visible()


def wait_until_expired(standin: Standin, access_token: str) -> None:
    """Poll the stand-in's clock until the token's own exp has passed (deadline-bound)."""
    exp = jwt.decode(access_token, options={"verify_signature": False})["exp"]
    deadline = time.monotonic() + ACCESS_TTL + 10
    while standin.config.clock() <= exp:
        assert time.monotonic() < deadline, "the access token never expired"
        time.sleep(0.05)  # polling a condition computed from the token, with a deadline


def test_supabase_flow(page: Page, browser: Browser, supabase_server: LiveServer,
                       standin: Standin, artifacts) -> None:
    url = supabase_server.url
    owner = new_email("owner")
    sign_up_and_confirm(page, url, standin, owner)
    page.screenshot(path=artifacts / "supabase-confirmed.png", full_page=True)

    # Log out and back in with the password.
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page.get_by_role("link", name="Log in").first).to_be_visible()
    log_in(page, url, owner)
    expect(page.get_by_test_id("empty-state")).to_be_visible()

    # Create, edit, delete, all without a page reload.
    page.evaluate("window.__noReload = true")
    for name, qty in [("Apple", "3"), ("Banana", "12"), ("Cherry", "7")]:
        add_item(page, name, qty)
    card = page.locator('article[data-item-name="Banana"]')
    card.get_by_role("link", name="Edit").click()
    edit_form = page.locator("form[id^=item-]")
    edit_form_settled(edit_form)
    edit_form.get_by_label("Name").fill("Blue banana")
    edit_form.get_by_label("Quantity").fill("13")
    edit_form.get_by_role("button", name="Save").click()
    expect(page.locator('article[data-item-name="Blue banana"]')).to_contain_text("13")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('article[data-item-name="Apple"]').get_by_role("button", name="Delete").click()
    expect(page.locator('article[data-item-name="Apple"]')).to_have_count(0)
    expect(page.locator("article[data-item-name]")).to_have_count(2)
    assert page.evaluate("window.__noReload") is True
    item_href = page.locator('article[data-item-name="Cherry"] a').first.get_attribute("href")
    page.screenshot(path=artifacts / "supabase-items.png", full_page=True)

    # A second user sees nothing of it, not even by the item's address.
    other_context = browser.new_context()
    other = other_context.new_page()
    sign_up_and_confirm(other, url, standin, new_email("other"))
    expect(other.get_by_test_id("empty-state")).to_be_visible()
    response = other.goto(f"{url}{item_href}")
    assert response is not None and response.status == 404
    expect(other.locator("#not-found")).to_be_visible()
    other_context.close()

    # Let the owner's access token expire, then keep working: the server refreshes it and
    # hands the browser new tokens; the user stays signed in.
    before = session_tokens(page)
    wait_until_expired(standin, before["access_token"])
    grants = standin.state.refresh_grants
    add_item(page, "Date", "2")
    expect(page.get_by_test_id("current-user")).to_have_text(owner)
    after = session_tokens(page)
    assert standin.state.refresh_grants > grants
    assert after["refresh_token"] != before["refresh_token"]
    assert int(after["expires_at"]) > int(before["expires_at"])
    page.reload()
    expect(page.get_by_test_id("current-user")).to_have_text(owner)
    expect(page.locator("article[data-item-name]")).to_have_count(3)

    # The request log names the Supabase user (a UUID) on the owner's requests.
    owner_id = standin.state.users[owner].id
    stop_server(supabase_server)  # shutdown flushes the CSV sink
    rows = list(read_rows(supabase_server.data_dir / "logs", "api_logs"))
    created = [r for r in rows if r.method == "POST" and r.endpoint == "/items"]
    assert len(created) == 4 and {r.user_id for r in created} == {owner_id}
    assert uuid.UUID(owner_id).version == 4
