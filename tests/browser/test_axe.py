"""axe-core (pinned in package.json) in Debian's Chromium: 0 violations of any impact on every
page, in light and in dark mode.

To cover a new page or state, add one (name, step) pair to PAGES: the step brings the page
there (it may click, fill and wait); the test then runs axe in light and in dark mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_items import add_item, edit_form_settled, sign_up
from tests.browser.test_logs import FAILED_TRACE, seed_log_db
from tests.support.app import ROOT, LiveServer, start_server, stop_server

pytestmark = pytest.mark.browser

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ADMIN = "axe-admin@example.com"
DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"

# Every rule axe runs by default, all impacts (minor included); the rules' own WCAG tags are kept.
RUN_AXE = """() => axe.run(document, {resultTypes: ["violations"]}).then((r) => r.violations.map((v) => ({
  id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + " :: " + n.failureSummary.replace(/\\s+/g, " ")),
})))"""


def go(path: str) -> Callable[[Page, str], None]:
    def step(page: Page, url: str) -> None:
        page.goto(url + path)

    return step


def sign_up_admin(page: Page, url: str) -> None:
    sign_up(page, url, ADMIN, PASSWORD)
    page.goto(f"{url}/items")


def signup_errors(page: Page, url: str) -> None:
    page.get_by_label("Email").fill("someone@example.com")
    page.get_by_label("Password", exact=True).fill("password")
    page.get_by_label("Confirm password").fill("passwort")
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator('[data-error-for="password"]')).to_be_visible()


def empty_items(page: Page, url: str) -> None:
    sign_up_admin(page, url)
    expect(page.get_by_test_id("empty-state")).to_be_visible()


def items_list(page: Page, url: str) -> None:
    for name, qty in [("Apple", "3"), ("Banana", "12")]:
        add_item(page, name, qty, description=f"Fresh {name.lower()}")


def create_error(page: Page, url: str) -> None:
    page.goto(f"{url}/items")
    form = page.locator("#create-form")
    form.get_by_label("Name").fill("")
    form.get_by_role("button", name="Add item").click()
    expect(page.locator('#create-form [data-error-for="name"]')).to_be_visible()


def edit_with_error(page: Page, url: str) -> None:
    page.goto(f"{url}/items")
    page.locator('article[data-item-name="Apple"]').get_by_role("link", name="Edit").click()
    edit = page.locator("form[id^=item-]")
    edit_form_settled(edit)
    edit.get_by_label("Name").fill("")
    edit.get_by_role("button", name="Save").click()
    expect(edit.locator('[data-error-for="name"]')).to_be_visible()


def error_toast(page: Page, url: str) -> None:
    page.goto(f"{url}/items")
    page.route(f"{url}/items", lambda route: route.abort())
    form = page.locator("#create-form")
    form.get_by_label("Name").fill("Offline")
    form.get_by_role("button", name="Add item").click()
    expect(page.get_by_test_id("error-toast")).to_be_visible()
    page.unroute(f"{url}/items")


def phone_menu(page: Page, url: str) -> None:
    page.set_viewport_size(PHONE)
    page.goto(f"{url}/items")
    page.get_by_text("Menu", exact=True).click()
    expect(page.get_by_test_id("account-menu").get_by_role("button", name="Log out", exact=True)).to_be_visible()


def item_page(page: Page, url: str) -> None:
    page.goto(f"{url}/items")
    page.locator('article[data-item-name="Banana"] h2 a').click()
    expect(page.locator('[data-item-name="Banana"]')).to_be_visible()


IMPORT_CSV = {"name": "items.csv", "mimeType": "text/csv", "buffer": b"name,quantity\r\nPear,2\r\n,3\r\nPlum,x\r\n"}
held: list = []  # the import's POST, held by import_progress until import_result lets it go


def import_progress(page: Page, url: str) -> None:
    page.goto(f"{url}/items/import")
    page.route(f"{url}/items/import", lambda route: held.append(route) if route.request.method == "POST" else route.continue_())
    page.locator("input[type=file]").set_input_files(IMPORT_CSV)
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("progressbar", name="Upload progress")).to_be_visible()


def import_result(page: Page, url: str) -> None:
    if held:  # the upload import_progress held: answered now
        held.pop().continue_()
        page.unroute(f"{url}/items/import")
    else:
        page.goto(f"{url}/items/import")
        page.locator("input[type=file]").set_input_files(IMPORT_CSV)
        page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-result")).to_be_visible()
    expect(page.locator("#import-progress")).to_have_count(1)


# In order: each step starts where the previous one left the session, at the DESKTOP size
# (a step may change it; the next one starts at DESKTOP again).
PAGES: list[tuple[str, Callable[[Page, str], None]]] = [
    ("landing", go("/")),
    ("signup", go("/signup")),
    ("signup (errors)", signup_errors),
    ("login", go("/login")),
    ("404 (logged out)", go("/no/such/page")),
    ("items (empty)", empty_items),
    ("items (list)", items_list),
    ("items (create error)", create_error),
    ("items (edit mode with an error)", edit_with_error),
    ("items (error toast)", error_toast),
    ("items (phone, account menu open)", phone_menu),
    ("item page", item_page),
    ("404 (logged in)", go("/items/999999")),
    ("import (idle)", go("/items/import")),
    ("import (progress)", import_progress),
    ("import (result)", import_result),
    ("logs", go("/logs")),
    ("logs overview", go("/logs/overview?range=24h")),
    ("logs trace", go(f"/logs/traces/{FAILED_TRACE}")),
]


@pytest.fixture
def axe_server(tmp_path_factory) -> LiveServer:
    data_dir = tmp_path_factory.mktemp("axe")
    seed_log_db(data_dir / "logs.db")
    server = start_server(data_dir)
    yield server
    stop_server(server)


# Switching the colour scheme starts the theme's colour transitions (buttons, tabs), and a new
# toast slides in: axe (and a screenshot) must see the colours they end on. Endless animations
# (spinners) are left running.
TRANSITIONS_DONE = """() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() =>
  Promise.all(document.getAnimations()
    .filter((a) => a.effect && a.effect.getComputedTiming().endTime !== Infinity).map((a) => a.finished))
    .then(() => done(true), () => done(true)))))"""


def axe_violations(page: Page, source: str) -> list[dict]:
    # The CSP blocks injected <script> tags; evaluating the source through the DevTools protocol
    # is not subject to it.
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(source)
    return page.evaluate(RUN_AXE)


def report(found: dict[str, list[dict]]) -> str:
    lines = []
    for where, violations in found.items():
        for v in violations:
            lines.append(f"{where}: {v['id']} ({v['impact']}) {v['help']}")
            lines.extend(f"    {node}" for node in v["nodes"])
    return "\n".join(lines)


def test_every_page_has_no_axe_violations_light_and_dark(page: Page, axe_server: LiveServer) -> None:
    assert AXE.is_file(), f"{AXE} missing: npm ci installs axe-core (package.json devDependencies)"
    source = AXE.read_text()
    found: dict[str, list[dict]] = {}
    for name, step in PAGES:
        page.set_viewport_size(DESKTOP)
        page.emulate_media(color_scheme="light")
        step(page, axe_server.url)
        page.wait_for_load_state()
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.evaluate(TRANSITIONS_DONE)
            violations = axe_violations(page, source)
            if violations:
                found[f"{name} [{scheme}]"] = violations
    assert not found, "axe violations:\n" + report(found)
