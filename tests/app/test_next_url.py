"""A signed-out visitor's 404 page offers "Log in", which returns to the page afterwards; `next`
is kept only when it is a path on this site (no open redirect)."""

from __future__ import annotations

import html
import re

import pytest

from handlers.next_url import login_url, safe_next

pytestmark = pytest.mark.anyio

HOSTILE = [
    "//evil.com", "//evil.com/path", "/\\evil.com", "\\\\evil.com", "https://evil", "https://evil.com/x",
    "http:/evil.com", "javascript:alert(1)", "evil.com", "/\t/evil.com", "/\n/evil.com", "/ /evil.com",
    "/\x00", "", "/" + "a" * 3000, "%2F%2Fevil.com", "///evil.com",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_next_values_are_refused(value) -> None:
    assert safe_next(value) is None


@pytest.mark.parametrize("value", ["/", "/logs", "/logs?status=5xx&range=1h", "/items/3/edit", "/a/%2F%2Fb"])
def test_same_origin_paths_are_kept(value) -> None:
    assert safe_next(value) == value


def test_login_url_carries_the_page_with_its_query() -> None:
    assert login_url("/logs", "status=5xx&range=1h") == "/login?next=/logs%3Fstatus%3D5xx%26range%3D1h"
    assert login_url("//evil.com") == "/login"


async def test_a_signed_out_404_links_to_login_and_login_returns_there(make_client) -> None:
    admin = await make_client()
    await admin.signup("admin@example.com")
    visitor = await make_client()
    page = await visitor.get("/logs?status=5xx")
    assert page.status_code == 404  # the explorer does not admit it exists
    link = re.search(r'href="([^"]+)" data-testid="not-found-login"', page.text)
    assert link is not None
    login_page = await visitor.get(html.unescape(link.group(1)))
    assert '<input type="hidden" name="next" value="/logs?status=5xx">' in login_page.text
    await visitor.refresh_csrf()
    response = await visitor.post("/login", data={"email": "admin@example.com", "password": "correct horse battery",
                                                   "csrf_token": visitor.csrf, "next": "/logs?status=5xx"})
    assert response.status_code == 303 and response.headers["location"] == "/logs?status=5xx"
    assert (await visitor.get("/logs?status=5xx")).status_code == 200
    # Signed in: the 404 page has no "Log in" link.
    assert 'data-testid="not-found-login"' not in (await visitor.get("/nope")).text


@pytest.mark.parametrize("target", ["//evil.com", "/\\evil.com", "https://evil"])
async def test_login_never_redirects_off_site(make_client, target) -> None:
    admin = await make_client()
    await admin.signup("admin@example.com")
    visitor = await make_client()
    login_page = await visitor.get("/login", params={"next": target})
    assert 'name="next"' not in login_page.text
    await visitor.refresh_csrf()
    response = await visitor.post("/login", data={"email": "admin@example.com", "password": "correct horse battery",
                                                   "csrf_token": visitor.csrf, "next": target})
    assert response.status_code == 303 and response.headers["location"] == "/"
    htmx = await visitor.get("/login", params={"next": target}, headers=visitor.htmx())
    assert htmx.headers.get("hx-redirect") == "/"  # signed in now: sent home, not to `next`
