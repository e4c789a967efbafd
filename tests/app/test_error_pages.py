"""What users see when something fails: one error page (and, for htmx, its alert alone) that
quotes the trace id as a reference and links admins to the trace; 403/405/413 use it too, and a
404 keeps its own page in the same layout."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import create_app
from tests.support.app import AppClient, make_settings

pytestmark = pytest.mark.anyio

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


async def boom(request: Request) -> Response:
    raise RuntimeError("SECRET-DETAIL: the handler fell over")


@contextlib.asynccontextmanager
async def app_with_a_crash(tmp_path: Path) -> AsyncIterator[tuple[AppClient, AppClient]]:
    """The real app plus a route that crashes (the app has none) -> (admin, user) clients.
    The first local account is the admin."""
    app = create_app(make_settings(tmp_path, max_request_bytes=1024))
    app.router.routes.append(Route("/boom", boom, methods=["GET", "POST"]))
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope, receive, send):
            scope["state"] = dict(state)  # what uvicorn does with lifespan state
            await app(scope, receive, send)

        clients = [AppClient(transport=httpx.ASGITransport(with_state), base_url="http://testserver") for _ in "ab"]
        for client, email in zip(clients, ["admin@example.com", "user@example.com"]):
            assert (await client.signup(email)).status_code == 303
        try:
            yield clients[0], clients[1]
        finally:
            for client in clients:
                await client.aclose()


def is_full_page(html: str) -> bool:
    return html.lstrip().lower().startswith("<!doctype html>")


def reference(response: httpx.Response) -> str:
    match = re.search(rf'data-testid="error-reference">Reference: ({UUID})<', response.text)
    assert match, response.text[:1500]
    return match.group(1)


async def test_a_crash_is_a_friendly_page_quoting_the_trace_id(tmp_path: Path) -> None:
    async with app_with_a_crash(tmp_path) as (admin, user):
        page = await user.get("/boom")
    assert page.status_code == 500 and is_full_page(page.text)
    assert reference(page) == page.headers["x-trace-id"]
    assert "Something went wrong on our side" in page.text
    assert "SECRET-DETAIL" not in page.text and "Traceback" not in page.text
    assert "/logs/traces/" not in page.text  # only admins get the link
    assert 'data-testid="current-user">user@example.com' in page.text  # the usual layout, signed in


async def test_an_admin_gets_a_link_to_the_trace(tmp_path: Path) -> None:
    async with app_with_a_crash(tmp_path) as (admin, user):
        page = await admin.get("/boom")
    trace = page.headers["x-trace-id"]
    assert reference(page) == trace
    assert f'href="/logs/traces/{trace}" data-testid="error-trace-link"' in page.text


async def test_an_htmx_crash_gets_the_alert_alone(tmp_path: Path) -> None:
    async with app_with_a_crash(tmp_path) as (admin, user):
        fragment = await admin.post("/boom", headers=admin.htmx())
    assert fragment.status_code == 500 and not is_full_page(fragment.text)
    assert fragment.text.lstrip().startswith('<div class="alert alert-error')
    assert reference(fragment) == fragment.headers["x-trace-id"]
    assert "/logs/traces/" + fragment.headers["x-trace-id"] in fragment.text
    assert fragment.headers["vary"] == "HX-Request"


async def test_refusals_before_any_handler_use_the_same_page(tmp_path: Path) -> None:
    async with app_with_a_crash(tmp_path) as (admin, user):
        csrf = await user.post("/items", data={"name": "x", "csrf_token": "forged"})
        too_large = await user.post("/items", data={"name": "x" * 2000}, headers=user.htmx())
        too_large_page = await user.post("/items", content=b"name=" + b"x" * 2000,
                                         headers={"content-type": "application/x-www-form-urlencoded",
                                                  "x-csrf-token": user.csrf})
        wrong_method = await user.request("PATCH", "/items", headers={"X-CSRF-Token": user.csrf})
        missing = await user.get("/no-such-page")
    assert csrf.status_code == 403 and is_full_page(csrf.text)
    assert "This form has expired" in csrf.text and reference(csrf) == csrf.headers["x-trace-id"]
    assert too_large.status_code == 413 and not is_full_page(too_large.text)  # htmx: the alert
    assert "Request too large: the limit for this page is 1024 bytes." in too_large.text
    assert reference(too_large) == too_large.headers["x-trace-id"]
    assert too_large.headers["connection"] == "close"
    assert too_large_page.status_code == 413 and is_full_page(too_large_page.text)
    assert wrong_method.status_code == 405 and is_full_page(wrong_method.text)
    assert "This page does not accept that kind of request." in wrong_method.text
    assert "GET" in wrong_method.headers["allow"] and reference(wrong_method)
    assert missing.status_code == 404 and 'id="not-found"' in missing.text
    assert "Reference:" not in missing.text
    for response in (csrf, too_large_page, wrong_method, missing):  # one layout: the same card
        assert '<section class="card bg-base-100 shadow-sm max-w-2xl mx-auto">' in response.text
