"""The items app as people use it, in Debian's Chromium against a real uvicorn: nothing fails
silently, the keyboard and focus go where they should, and a phone never scrolls sideways."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_axe import TRANSITIONS_DONE
from tests.browser.test_items import add_item, edit_form_settled, log_in, sign_up, sign_up_over_http
from tests.browser.test_logs import FAILED_TRACE, seed_log_db
from tests.support.app import LiveServer, start_server, stop_server

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


ADMIN = "admin@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    """One server for this module's tests, which sign up users of their own: a seeded log
    database (the explorer's pages for the phone test) and the admin, the first account, made
    before the tests. Sign-up attempts here exceed the default per-IP limit of 10."""
    data_dir = tmp_path_factory.mktemp("ux")
    seed_log_db(data_dir / "logs.db")
    server = start_server(data_dir, env={"SIGNUP_LIMIT_PER_IP": "100"})
    sign_up_over_http(server.url, ADMIN)
    yield server
    stop_server(server)


def csrf(page: Page) -> str:
    return page.evaluate("() => JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")


def create_via_api(page: Page, url: str, names: list[str]) -> None:
    """Items made by the same session without the UI (fast set-up; shares the page's cookies)."""
    token = csrf(page)
    for name in names:
        response = page.request.post(f"{url}/items", form={"name": name, "quantity": "1", "csrf_token": token},
                                     max_redirects=0)
        assert response.status in (200, 303), response.status


def count_text(page: Page):
    return page.get_by_test_id("items-count")


def focused_test(page: Page) -> str:
    """What has focus, in a form an assertion message can show."""
    return page.evaluate("""() => { const a = document.activeElement;
      return a === document.body ? "BODY" : a.outerHTML.slice(0, 120); }""")


# ---- no silent failures ----------------------------------------------------------------------


def test_quantity_text_is_refused_with_a_message_and_nothing_is_created(page: Page, server: LiveServer) -> None:
    url = server.url
    sign_up(page, url, "qty@example.com")
    form = page.locator("#create-form")
    form.get_by_label("Name").fill("Apples")
    form.get_by_label("Quantity").fill("abc")
    form.get_by_role("button", name="Add item").click()
    error = page.locator('#create-form [data-error-for="quantity"]')
    expect(error).to_have_text("Quantity must be a whole number.")
    expect(form.get_by_label("Quantity")).to_have_value("abc")  # the input is not changed
    expect(form.get_by_label("Quantity")).to_be_focused()
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    expect(count_text(page)).to_have_text("0 items")

    form.get_by_label("Quantity").fill("99999999999999999999")
    form.get_by_role("button", name="Add item").click()
    expect(error).to_have_text("Quantity is too large (max 2,147,483,647).")
    expect(page.locator("article[data-item-name]")).to_have_count(0)


def test_offline_and_5xx_show_an_error_with_retry_and_keep_the_input(page: Page, server: LiveServer, artifacts) -> None:
    (artifacts / "screens").mkdir(exist_ok=True)
    url = server.url
    sign_up(page, url, "offline@example.com")
    page.route(f"{url}/items", lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    form = page.locator("#create-form")
    form.get_by_label("Name").fill("Offline lamp")
    form.get_by_label("Description").fill("typed while offline")
    form.get_by_role("button", name="Add item").click()
    toast = page.get_by_test_id("error-toast")
    expect(toast).to_contain_text("Could not reach the server")
    expect(form.get_by_label("Name")).to_have_value("Offline lamp")
    expect(form.get_by_label("Description")).to_have_value("typed while offline")
    page.evaluate(TRANSITIONS_DONE)
    page.screenshot(path=artifacts / "screens" / "error-toast.png")

    page.unroute(f"{url}/items")  # back online: Retry sends the same form again
    toast.get_by_role("button", name="Retry").click()
    expect(page.locator('article[data-item-name="Offline lamp"]')).to_be_visible()
    expect(toast).to_have_count(0)

    # A 5xx on Save: the server's message in the toast, the edit form still holds the new name.
    page.route(re.compile(r".*/items/\d+$"),
               lambda route: route.fulfill(status=503, body="busy") if route.request.method == "PUT" else route.continue_())
    page.locator('article[data-item-name="Offline lamp"]').get_by_role("link", name="Edit").click()
    edit = page.locator("form[id^=item-]")
    edit_form_settled(edit)
    edit.get_by_label("Name").fill("Online lamp")
    edit.get_by_role("button", name="Save").click()
    expect(toast).to_contain_text("HTTP 503")
    expect(edit.get_by_label("Name")).to_have_value("Online lamp")
    page.unroute(re.compile(r".*/items/\d+$"))
    toast.get_by_role("button", name="Retry").click()
    expect(page.locator('article[data-item-name="Online lamp"]')).to_be_visible()


def test_a_request_that_never_answers_times_out_with_an_error_and_keeps_the_input(page: Page, server: LiveServer) -> None:
    url = server.url
    sign_up(page, url, "hang@example.com")
    assert page.evaluate("() => htmx.config.timeout") == 20000  # base.html's htmx-config sets it
    page.evaluate("() => { htmx.config.timeout = 300; }")  # the same handler, without a 20 s wait
    page.route(f"{url}/items", lambda route: None if route.request.method == "POST" else route.continue_())
    form = page.locator("#create-form")
    form.get_by_label("Name").fill("Slow lamp")
    form.get_by_role("button", name="Add item").click()
    toast = page.get_by_test_id("error-toast")
    expect(toast).to_contain_text("took too long")
    expect(form.get_by_label("Name")).to_have_value("Slow lamp")
    expect(toast.get_by_role("button", name="Retry")).to_be_visible()


def test_delete_updates_the_count_and_refills_the_page(page: Page, server: LiveServer) -> None:
    url = server.url
    sign_up(page, url, "del@example.com")
    create_via_api(page, url, [f"Thing {n:02}" for n in range(22)])
    page.goto(f"{url}/items")
    cards = page.locator("#item-list > article[data-item-name]")
    expect(cards).to_have_count(20)
    expect(count_text(page)).to_have_text("22 items")

    page.on("dialog", lambda dialog: dialog.accept())
    second = cards.nth(1)
    expect(second).to_have_attribute("data-item-name", "Thing 20")
    second.get_by_role("button", name="Delete").click()
    expect(count_text(page)).to_have_text("21 items")
    expect(page.locator('article[data-item-name="Thing 20"]')).to_have_count(0)
    expect(cards).to_have_count(20)  # refilled from page 2
    expect(page.locator('article[data-item-name="Thing 01"]')).to_be_visible()
    # Focus goes to the card that took the deleted one's place.
    expect(cards.nth(1).get_by_role("link", name="Edit")).to_be_focused()

    # An item deleted elsewhere (another tab): Save says so, the card goes, the count follows.
    victim = cards.first
    victim_name = victim.get_attribute("data-item-name")
    victim.get_by_role("link", name="Edit").click()
    edit = page.locator("form[id^=item-]")
    item_id = edit.get_attribute("id").removeprefix("item-")
    response = page.request.delete(f"{url}/items/{item_id}", headers={"X-CSRF-Token": csrf(page), "HX-Request": "true"})
    assert response.status == 200
    edit.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("error-toast")).to_contain_text("no longer exists")
    expect(page.locator(f'article[data-item-name="{victim_name}"]')).to_have_count(0)
    expect(page.locator("form[id^=item-]")).to_have_count(0)
    expect(count_text(page)).to_have_text("20 items")
    assert focused_test(page) != "BODY"


# ---- keyboard and focus ----------------------------------------------------------------------


def test_keyboard_escape_focus_and_skip_link(page: Page, server: LiveServer) -> None:
    url = server.url
    sign_up(page, url, "keys@example.com")
    # Create with the keyboard: focus lands on the new card, not on <body>.
    form = page.locator("#create-form")
    form.get_by_label("Name").fill("Kettle")
    form.get_by_label("Name").press("Enter")
    card = page.locator('article[data-item-name="Kettle"]')
    expect(card.get_by_role("link", name="Edit")).to_be_focused()
    add_item(page, "Toaster")

    # Escape cancels the in-place edit and gives focus back to that card's Edit button.
    card.get_by_role("link", name="Edit").press("Enter")
    edit = page.locator("form[id^=item-]")
    edit_form_settled(edit)
    edit.get_by_label("Name").fill("changed, then abandoned")
    page.keyboard.press("Escape")
    expect(edit).to_have_count(0)
    expect(card.get_by_role("link", name="Edit")).to_be_focused()

    # Save: focus on the saved card's Edit button.
    card.get_by_role("link", name="Edit").press("Enter")
    edit_form_settled(edit)
    edit.get_by_label("Quantity").fill("4")
    edit.get_by_label("Quantity").press("Enter")
    expect(card).to_contain_text("4")
    expect(card.get_by_role("link", name="Edit")).to_be_focused()

    # The skip link is the first Tab stop and moves focus to the main content.
    page.goto(f"{url}/items")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()

    # Tab from search reaches the list before the new-item form.
    page.get_by_label("Search items").focus()
    order = []
    for _ in range(12):
        page.keyboard.press("Tab")
        order.append(page.evaluate("""() => { const a = document.activeElement;
          return a.closest("#create-form") ? "form" : a.closest("#item-list") ? "list" : "other"; }"""))
    assert "list" in order and "form" in order and order.index("list") < order.index("form"), order


# ---- phone -----------------------------------------------------------------------------------


def scheme(page: Page, name: str) -> None:
    """Switch light/dark and let the theme's colour transitions end before a screenshot."""
    page.emulate_media(color_scheme=name)
    page.evaluate(TRANSITIONS_DONE)


def no_sideways_scroll(page: Page) -> bool | str:
    """True, or what sticks out past the right edge (for the assertion message)."""
    return page.evaluate("""() => document.documentElement.scrollWidth <= window.innerWidth ||
      [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > window.innerWidth)
        .slice(0, 5).map((e) => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right)).join(", ")""")


def test_phone_no_sideways_scroll_list_first_menu_and_toasts(page: Page, server: LiveServer, artifacts) -> None:
    url = server.url
    screens = artifacts / "screens"
    screens.mkdir(exist_ok=True)
    page.set_viewport_size(PHONE)
    for path in ("/", "/signup", "/login", "/no/such/page"):
        page.goto(url + path)
        assert no_sideways_scroll(page) is True, (path, no_sideways_scroll(page))
    page.goto(f"{url}/signup")
    page.screenshot(path=screens / "signup-phone.png", full_page=True)

    log_in(page, url, ADMIN)  # the first account: an admin, with the Logs link
    create_via_api(page, url, ["Lamp", "Desk", "Chair"])
    page.goto(f"{url}/items")
    first_card = page.locator("article[data-item-name]").first
    expect(first_card).to_be_in_viewport()  # the list is on the first screen
    expect(page.locator("#create-form")).to_be_hidden()
    page.screenshot(path=screens / "items-phone.png")
    scheme(page, "dark")
    page.screenshot(path=screens / "items-phone-dark.png")
    scheme(page, "light")

    # "Add item" opens the form with the cursor in Name.
    page.get_by_role("link", name="Add item").click()
    expect(page.locator("#create-form").get_by_label("Name")).to_be_focused()
    add_item(page, "Shelf")

    item_path = page.locator('article[data-item-name="Shelf"] h2 a').get_attribute("href")
    for path in ("/items", item_path, "/items/import", "/logs", "/logs/overview?range=24h",
                 f"/logs/traces/{FAILED_TRACE}", "/items/999999"):
        page.goto(url + path)
        assert no_sideways_scroll(page) is True, (path, no_sideways_scroll(page))

    # The account actions sit in a menu; open, everything in it is on screen.
    page.goto(f"{url}/items")
    page.get_by_text("Menu", exact=True).click()
    menu = page.get_by_test_id("account-menu")
    expect(menu.get_by_role("link", name="Logs")).to_be_in_viewport()
    for name in ("Log out", "Log out of all devices"):
        expect(menu.get_by_role("button", name=name, exact=True)).to_be_in_viewport()
    assert no_sideways_scroll(page) is True, no_sideways_scroll(page)
    page.evaluate(TRANSITIONS_DONE)  # the menu fades in
    page.screenshot(path=screens / "navbar-menu-phone.png")
    scheme(page, "dark")
    page.screenshot(path=screens / "navbar-menu-phone-dark.png")
    scheme(page, "light")
    page.get_by_text("Menu", exact=True).click()

    # Toasts: at most three, the oldest fold away, never over the navbar.
    for n in range(5):
        page.evaluate("(n) => htmx.trigger(document.body, 'toast', {value: 'Note ' + n})", n)
    toasts = page.locator("#toasts > .alert")
    expect(toasts).to_have_count(3)
    expect(toasts.first).to_have_text("Note 2")
    navbar = page.locator("header.navbar").bounding_box()
    for i in range(3):
        box = toasts.nth(i).bounding_box()
        assert box["y"] >= navbar["y"] + navbar["height"], (box, navbar)
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box

    # Desktop and dark screenshots of the same pages.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{url}/items")
    page.screenshot(path=screens / "items-desktop.png", full_page=True)
    scheme(page, "dark")
    page.screenshot(path=screens / "items-desktop-dark.png", full_page=True)
    scheme(page, "light")


# ---- sign-up -----------------------------------------------------------------------------------


def test_signup_confirm_rule_common_passwords_and_log_in_link(page: Page, server: LiveServer, artifacts) -> None:
    url = server.url
    screens = artifacts / "screens"
    screens.mkdir(exist_ok=True)
    page.goto(f"{url}/signup")
    password = page.locator("#auth-form input[name=password]")
    # The rule is on the page before any error, tied to the field for screen readers.
    expect(page.locator('[data-hint-for="password"]')).to_have_text(
        "At least 8 characters, and not one of the most common passwords.")
    expect(password).to_have_attribute("aria-describedby", "password-hint")
    expect(password).to_have_attribute("autocomplete", "new-password")
    page.screenshot(path=screens / "signup-desktop.png", full_page=True)
    scheme(page, "dark")
    page.screenshot(path=screens / "signup-desktop-dark.png", full_page=True)
    scheme(page, "light")

    page.get_by_label("Email").fill("new@example.com")
    for common in ("password", "12345678"):
        password.fill(common)
        page.locator("#auth-form input[name=password_confirm]").fill(common)
        page.get_by_role("button", name="Sign up").click()
        expect(page.locator('[data-error-for="password"]')).to_contain_text("most common passwords")

    password.fill("correct horse battery")
    page.locator("#auth-form input[name=password_confirm]").fill("correct horse batery")
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator('[data-error-for="password_confirm"]')).to_contain_text("differ")
    expect(page.get_by_label("Email")).to_have_value("new@example.com")

    sign_up(page, url, "taken@example.com")
    page.get_by_role("button", name="Log out", exact=True).click()
    page.goto(f"{url}/signup")
    page.get_by_label("Email").fill("taken@example.com")
    page.get_by_label("Password", exact=True).fill("another long password")
    page.get_by_label("Confirm password").fill("another long password")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("alert").get_by_role("link", name="Log in instead").click()
    expect(page).to_have_url(f"{url}/login")
