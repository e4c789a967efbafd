"""The whole embedded-default flow in Debian's Chromium against a real uvicorn server."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

pytestmark = pytest.mark.browser


def sign_up(page: Page, url: str, email: str, password: str = "correct horse battery") -> None:
    page.goto(f"{url}/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Confirm password").fill(password)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)


def sign_up_over_http(url: str, email: str, password: str = "correct horse battery") -> None:
    """An account made without the browser (a module's shared server, before its tests; the
    first account on a fresh server is the admin). The UI's sign-up is what sign_up drives."""
    with httpx.Client(base_url=url) as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/signup").text).group(1)
        response = client.post("/signup", data={"email": email, "password": password, "csrf_token": token})
        assert response.status_code == 303, response.text[:300]


def log_in(page: Page, url: str, email: str, password: str = "correct horse battery") -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)


def add_item(page: Page, name: str, quantity: str = "1", description: str = "") -> None:
    form = page.locator("#create-form")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Description").fill(description)
    form.get_by_label("Quantity").fill(quantity)
    form.get_by_role("button", name="Add item").click()
    expect(page.locator(f'article[data-item-name="{name}"]')).to_be_visible()


def edit_form_settled(form: Locator) -> None:
    """The edit form htmx swapped in has settled: Name has focus, and htmx's own autofocus (a
    settle task, ~20 ms after the swap, run with the removal of `htmx-added`) has run. Before
    that, the browser's native autofocus may already have focused Name, and a field filled in
    between would lose its focus, and its text, to Name."""
    expect(form.get_by_label("Name")).to_be_focused()
    expect(form).not_to_have_class(re.compile(r"\bhtmx-added\b"))


def test_items_flow(page: Page, live_server, artifacts) -> None:
    url = live_server.url
    page.goto(url)
    expect(page.get_by_role("link", name="Sign up").first).to_be_visible()
    page.screenshot(path=artifacts / "landing.png", full_page=True)

    sign_up(page, url, "alice@example.com")
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    page.screenshot(path=artifacts / "items-empty.png", full_page=True)

    # Create without a page reload: a marker on window survives only if no navigation happens.
    page.evaluate("window.__noReload = true")
    for name, qty in [("Apple", "3"), ("Banana", "12"), ("Cherry", "7")]:
        add_item(page, name, qty, description=f"Fresh {name.lower()}")
    assert page.evaluate("window.__noReload") is True
    expect(page.locator("#toasts .alert").first).to_be_visible()
    expect(page.locator("article[data-item-name]")).to_have_count(3)
    page.screenshot(path=artifacts / "items.png", full_page=True)

    # Active search: typing filters the list in place and pushes the URL.
    page.get_by_label("Search items").press_sequentially("ban", delay=20)
    expect(page.locator("article[data-item-name]")).to_have_count(1)
    expect(page.locator('article[data-item-name="Banana"]')).to_be_visible()
    expect(page).to_have_url(re.compile(r"/items\?q=ban"))
    assert page.evaluate("window.__noReload") is True

    # Edit in place.
    card = page.locator('article[data-item-name="Banana"]')
    card.get_by_role("link", name="Edit").click()
    edit_form = page.locator("form[id^=item-]")
    # htmx focuses the [autofocus] Name field after the swap settles; wait for that, or the
    # delayed focus could steal keystrokes meant for another field.
    edit_form_settled(edit_form)
    edit_form.get_by_label("Name").fill("Blue banana")
    edit_form.get_by_label("Quantity").fill("13")
    edit_form.get_by_role("button", name="Save").click()
    updated = page.locator('article[data-item-name="Blue banana"]')
    expect(updated).to_contain_text("13")
    assert page.evaluate("window.__noReload") is True

    # Delete with confirmation (accept the dialog) and fade-out.
    page.get_by_label("Search items").fill("")
    expect(page.locator("article[data-item-name]")).to_have_count(3)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('article[data-item-name="Apple"]').get_by_role("button", name="Delete").click()
    expect(page.locator('article[data-item-name="Apple"]')).to_have_count(0)
    expect(page.locator("article[data-item-name]")).to_have_count(2)

    # Log out, log in again: the items are still there.
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page.get_by_role("link", name="Log in").first).to_be_visible()
    log_in(page, url, "alice@example.com")
    expect(page.locator("article[data-item-name]")).to_have_count(2)
    expect(page.locator('article[data-item-name="Blue banana"]')).to_be_visible()
    expect(page.locator('article[data-item-name="Cherry"]')).to_be_visible()

    # A direct load of a pushed URL is a full page.
    page.goto(f"{url}/items?q=cher")
    expect(page.locator("article[data-item-name]")).to_have_count(1)
    expect(page.get_by_role("button", name="Log out", exact=True)).to_be_visible()


def test_second_user_sees_nothing(page: Page, live_server, browser) -> None:
    url = live_server.url
    sign_up(page, url, "owner@example.com")
    add_item(page, "Secret plan", "1")
    item_href = page.locator('article[data-item-name="Secret plan"] a').first.get_attribute("href")

    other = browser.new_context().new_page()
    sign_up(other, url, "mallory@example.com")
    expect(other.get_by_test_id("empty-state")).to_be_visible()
    response = other.goto(f"{url}{item_href}")
    assert response is not None and response.status == 404
    expect(other.locator("#not-found")).to_be_visible()
    other.context.close()


def test_validation_error_next_to_field(page: Page, live_server, artifacts) -> None:
    url = live_server.url
    sign_up(page, url, "val@example.com")
    form = page.locator("#create-form")
    form.get_by_label("Name").fill("")
    form.get_by_label("Description").fill("kept description")
    form.get_by_label("Quantity").fill("-1")
    form.get_by_role("button", name="Add item").click()
    expect(page.locator('#create-form [data-error-for="name"]')).to_have_text("Name is required.")
    expect(page.locator('#create-form [data-error-for="quantity"]')).to_contain_text("negative")
    expect(page.locator("#create-form").get_by_label("Description")).to_have_value("kept description")
    page.screenshot(path=artifacts / "validation.png", full_page=True)

    page.goto(f"{url}/login")
    page.screenshot(path=artifacts / "login.png", full_page=True)
