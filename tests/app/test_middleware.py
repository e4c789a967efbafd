"""Pure ASGI middleware in the real app: CSRF, request size limit, security headers, session."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Mount, Route

from app import create_app
from middleware.size_limit import human_size
from tests.support.app import AppClient, make_settings

MIB = 1024 * 1024
UNSAFE = ["POST", "PUT", "PATCH", "DELETE"]
TOKEN_RE = re.compile(r'"X-CSRF-Token": "([^"]+)"')
FORM = {"Content-Type": "application/x-www-form-urlencoded"}



async def refresh(client: AppClient) -> str:
    # Every full page carries the token in <body hx-headers>, signed in or not.
    match = TOKEN_RE.search((await client.get("/")).text)
    assert match
    client.csrf = match.group(1)
    return client.csrf


@pytest.fixture
async def user(make_client) -> AppClient:
    client = await make_client()
    await refresh(client)
    response = await client.post(
        "/signup",
        data={"email": "mw@example.com", "password": "correct horse battery", "csrf_token": client.csrf},
    )
    assert response.status_code == 303
    await refresh(client)
    return client


def concrete_paths(tmp_path: Path) -> list[tuple[str, list[str]]]:
    """Every route of the real app as (a concrete path, its unsafe methods)."""
    app = create_app(make_settings(tmp_path))
    found = []
    for route in app.routes:
        if isinstance(route, Route):
            path = re.sub(r"\{[^}]+\}", "1", route.path)
            found.append((path, sorted(set(route.methods or ()) & set(UNSAFE))))
        elif isinstance(route, Mount):
            found.append((route.path + "/app.css", []))
    assert len(found) >= 10
    return found


# CSRF ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_route_and_unsafe_method_needs_the_token(user: AppClient, tmp_path: Path):
    checked = 0
    for path, _ in concrete_paths(tmp_path):
        for method in UNSAFE:
            plain = await user.request(method, path)
            form = await user.request(method, path, content=b"name=x&quantity=1", headers=FORM)
            wrong = await user.request(method, path, headers={"X-CSRF-Token": "wrong"})
            wrong_field = await user.request(
                method, path, content=b"name=x&csrf_token=wrong", headers=FORM
            )
            for response in (plain, form, wrong, wrong_field):
                assert response.status_code == 403, (method, path, response.status_code)
                assert "did not come from this site" in response.text
            checked += 1
    assert checked >= 40
    assert "mw@example.com" in (await user.get("/")).text  # nothing logged us out
    assert 'id="item-' not in (await user.get("/items")).text.replace('id="item-list"', "")


@pytest.mark.anyio
async def test_routes_accept_the_token_in_header_or_form_field(user: AppClient, tmp_path: Path):
    # /logout last: it ends the session the other requests use.
    routes = sorted(concrete_paths(tmp_path), key=lambda r: r[0] == "/logout")
    checked = 0
    for path, methods in routes:
        for method in methods:
            by_header = await user.request(method, path, headers={"X-CSRF-Token": user.csrf})
            assert by_header.status_code != 403, (method, path)
            if path == "/logout":
                assert by_header.status_code == 303
                checked += 1
                continue
            await refresh(user)
            by_field = await user.request(
                method, path, content=f"csrf_token={user.csrf}".encode(), headers=FORM
            )
            assert by_field.status_code != 403, (method, path)
            await refresh(user)
            checked += 1
    assert checked >= 9


@pytest.mark.anyio
async def test_token_in_multipart_form_field(user: AppClient):
    response = await user.post(
        "/items", data={"name": "Multi", "csrf_token": user.csrf}, files={"f": ("a.txt", b"x")}
    )
    assert response.status_code == 303


@pytest.mark.anyio
async def test_malformed_form_body_is_403_not_500(user: AppClient):
    for content_type in ["multipart/form-data", "multipart/form-data; boundary=zzz"]:
        response = await user.post("/items", content=b"\xff\x00garbage", headers={"Content-Type": content_type})
        assert response.status_code == 403


@pytest.mark.anyio
async def test_token_from_another_session_is_refused(make_client, user: AppClient):
    stranger = await make_client()
    await refresh(stranger)
    # The stranger's valid token is not the user's token, and vice versa.
    response = await user.post("/items", data={"name": "x"}, headers={"X-CSRF-Token": stranger.csrf})
    assert response.status_code == 403
    fresh = await make_client()  # no cookie at all: no token can match
    response = await fresh.post("/login", data={"email": "a@b.co", "password": "x", "csrf_token": user.csrf})
    assert response.status_code == 403


@pytest.mark.anyio
async def test_safe_methods_need_no_token(user: AppClient):
    for method in ["GET", "HEAD", "OPTIONS"]:
        response = await user.request(method, "/items")
        assert response.status_code != 403


# size limit --------------------------------------------------------------------------------------


def test_human_size():
    assert human_size(MIB) == "1 MiB"
    assert human_size(10 * MIB) == "10 MiB"
    assert human_size(1000) == "1000 bytes"


async def chunks(total: int, size: int = 64 * 1024, prefix: bytes = b"name=") -> AsyncIterator[bytes]:
    yield prefix
    sent = len(prefix)
    while sent < total:
        n = min(size, total - sent)
        yield b"x" * n
        sent += n


def item_count(page: httpx.Response) -> int:
    return len(re.findall(r'id="item-\d+"', page.text))


@pytest.mark.anyio
async def test_declared_content_length_over_limit_is_413(user: AppClient):
    body = b"name=" + b"x" * MIB  # 1 MiB + 5 bytes
    response = await user.post("/items", content=body, headers={**FORM, **user.htmx()})
    assert response.status_code == 413
    assert "Request too large" in response.text and "1 MiB" in response.text
    assert item_count(await user.get("/items")) == 0


@pytest.mark.anyio
async def test_body_at_the_limit_reaches_the_app(user: AppClient):
    body = b"quantity=1&name=" + b"x" * (MIB - 16)
    assert len(body) == MIB
    response = await user.post("/items", content=body, headers={**FORM, **user.htmx()})
    assert response.status_code == 422  # the app saw it: the name is too long
    assert 'data-error-for="name"' in response.text


@pytest.mark.anyio
@pytest.mark.parametrize("token_in", ["header", "form"])
async def test_streamed_body_over_limit_is_413(user: AppClient, token_in: str):
    # No Content-Length: the limit must hold while reading, whether the CSRF middleware
    # (token in the form) or the handler (token in the header) reads the body.
    headers = {**FORM, **(user.htmx() if token_in == "header" else {})}
    prefix = b"name=" if token_in == "header" else f"csrf_token={user.csrf}&name=".encode()
    request = user.build_request("POST", "/items", content=chunks(2 * MIB, prefix=prefix), headers=headers)
    assert "content-length" not in request.headers
    response = await user.send(request)
    assert response.status_code == 413
    assert "1 MiB" in response.text
    assert item_count(await user.get("/items")) == 0


@pytest.mark.anyio
async def test_streamed_body_under_limit_works(user: AppClient):
    async def small() -> AsyncIterator[bytes]:
        yield b"name=Streamed"
        yield b"&quantity=3"

    response = await user.post("/items", content=small(), headers={**FORM, **user.htmx()})
    assert response.status_code == 200 and "Streamed" in response.text


@pytest.mark.anyio
async def test_lying_content_length_is_still_limited(user: AppClient):
    request = user.build_request(
        "POST", "/items", content=chunks(2 * MIB), headers={**FORM, **user.htmx()}
    )
    request.headers["Content-Length"] = "10"
    response = await user.send(request)
    assert response.status_code == 413


@pytest.mark.anyio
async def test_import_route_allows_ten_mib(user: AppClient):
    two_mib = b"x" * (2 * MIB)
    headers = {"Content-Type": "text/csv", **user.htmx()}
    control = await user.post("/items", content=two_mib, headers=headers)
    assert control.status_code == 413
    response = await user.post("/items/import", content=two_mib, headers=headers)
    assert response.status_code != 413
    over = await user.post("/items/import", content=b"x" * (10 * MIB + 1), headers=headers)
    assert over.status_code == 413 and "10 MiB" in over.text


@pytest.mark.anyio
async def test_configured_limit(make_client, tmp_path: Path):
    client = await make_client(make_settings(tmp_path, max_request_bytes=1000))
    await refresh(client)
    response = await client.post("/login", content=b"x" * 1001, headers={**FORM, **client.htmx()})
    assert response.status_code == 413 and "1000 bytes" in response.text
    ok = await client.post("/login", content=b"email=a", headers={**FORM, **client.htmx()})
    assert ok.status_code == 422


# security headers -----------------------------------------------------------------------------


def assert_security_headers(response: httpx.Response) -> None:
    csp = response.headers.get("content-security-policy", "")
    directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert "'unsafe-eval'" not in csp and "'unsafe-inline'" not in csp, csp
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'"
    assert directives.get("script-src") == "script-src 'self'"
    assert directives.get("default-src") == "default-src 'self'"
    assert "object-src" in directives and "base-uri" in directives
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] in {"same-origin", "strict-origin-when-cross-origin", "no-referrer"}
    assert response.headers["x-frame-options"] == "DENY"
    assert len(response.headers.get_list("content-security-policy")) == 1


@pytest.mark.anyio
async def test_security_headers_on_pages(make_client, user: AppClient):
    anon = await make_client()
    responses = [
        await anon.get("/"),
        await anon.get("/login"),
        await anon.get("/signup"),
        await anon.get("/no/such/page"),
        await anon.post("/items"),  # 403 from the CSRF middleware
        await anon.get("/logout"),  # 405
        await anon.get("/health"),
        await anon.get("/static/app.css"),
        await user.get("/items"),
        await user.get("/items", headers={"HX-Request": "true"}),
        await user.get("/items/999"),
    ]
    for response in responses:
        assert_security_headers(response)


@pytest.mark.anyio
async def test_security_headers_on_413(user: AppClient):
    response = await user.post("/items", content=b"x" * (MIB + 1), headers=FORM)
    assert response.status_code == 413
    assert_security_headers(response)


@pytest.mark.anyio
async def test_pages_need_no_inline_script_or_style(make_client, user: AppClient):
    # What the CSP forbids must not be in our own pages, or it silently breaks in browsers.
    anon = await make_client()
    for response in [await anon.get("/"), await anon.get("/login"), await user.get("/items")]:
        html = response.text
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, tag
        assert not re.search(r"\sstyle=", html)
        assert not re.search(r"\son[a-z]+=", html)
        assert "javascript:" not in html
        assert '"allowEval": false' in html


# session middleware ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_session_gives_every_visitor_a_csrf_token(make_client):
    a, b = await make_client(), await make_client()
    ta, tb = await refresh(a), await refresh(b)
    assert ta and tb and ta != tb
    assert await refresh(a) == ta  # stable within a session


@pytest.mark.anyio
async def test_account_deleted_elsewhere_signs_the_session_out(user: AppClient, tmp_path: Path):
    import sqlite3

    conn = sqlite3.connect(tmp_path / "app.db")
    with conn:
        conn.execute("DELETE FROM users WHERE email = 'mw@example.com'")
    conn.close()
    page = await user.get("/")
    assert "mw@example.com" not in page.text and 'href="/signup"' in page.text
    assert page.headers.get_list("set-cookie")  # the dead session is cleared from the cookie


# the middleware alone, around tiny ASGI apps ---------------------------------------------------


async def echo_app(scope, receive, send) -> None:
    """Replies with the body it read, so a test can see what reached the app."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def with_state(app, **state):
    async def wrapped(scope, receive, send):
        scope["state"] = dict(state)
        await app(scope, receive, send)

    return wrapped


def asgi_client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver")


@pytest.mark.anyio
async def test_csrf_replays_the_form_body_unchanged():
    from middleware.csrf import CsrfMiddleware

    app = with_state(CsrfMiddleware(echo_app), csrf_token="tok")
    body = b"a=1&csrf_token=tok&b=" + b"z" * 100_000

    async def chunked() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    async with asgi_client(app) as client:
        response = await client.post("/", content=chunked(), headers=FORM)
        assert response.status_code == 200 and response.content == body
        bad = await client.post("/", content=b"csrf_token=nope", headers=FORM)
        assert bad.status_code == 403
    # No session token at all (the session middleware did not run): nothing can match it.
    async with asgi_client(with_state(CsrfMiddleware(echo_app))) as client:
        assert (await client.post("/", headers={"X-CSRF-Token": ""})).status_code == 403


class RecordingStore:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.resumed = []

    async def resume(self, session):
        self.resumed.append(session)
        if self.error:
            raise self.error
        return session


@pytest.mark.anyio
async def test_session_store_unavailable_is_a_friendly_503():
    from middleware.session import SessionMiddleware
    from store.base import Session, StoreUnavailable, User

    store = RecordingStore(StoreUnavailable())
    middleware = SessionMiddleware(echo_app, secret_key="k", max_age=60)
    cookie = middleware.cookie_header({"scheme": "http"}, "tok", Session(user=User(id="1", email="a@b.co")))
    app = with_state(middleware, store=store)
    async with asgi_client(app) as client:
        response = await client.get("/", headers={"Cookie": cookie.split(";")[0]})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "unreachable" in response.text
    assert [s.user.id for s in store.resumed] == ["1"]


@pytest.mark.anyio
async def test_size_limit_after_response_started_is_not_a_second_response():
    from middleware.size_limit import BodyTooLarge, SizeLimitMiddleware

    async def streams_then_reads(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass

    app = SizeLimitMiddleware(streams_then_reads, max_bytes=10)
    async with asgi_client(app) as client:
        with pytest.raises(BodyTooLarge):
            await client.post("/", content=chunks(100))


@pytest.mark.anyio
async def test_size_limit_override_is_per_exact_path():
    from middleware.size_limit import SizeLimitMiddleware

    app = SizeLimitMiddleware(echo_app, max_bytes=10, overrides={"/big": 100})
    async with asgi_client(app) as client:
        assert (await client.post("/big", content=b"x" * 100)).status_code == 200
        assert (await client.post("/big", content=b"x" * 101)).status_code == 413
        assert (await client.post("/big/x", content=b"x" * 11)).status_code == 413
        assert (await client.post("/", content=b"x" * 10)).status_code == 200


@pytest.mark.anyio
async def test_header_blocks_over_64_kib_get_431_without_calling_the_app():
    from middleware.size_limit import MAX_HEADER_BYTES, SizeLimitMiddleware

    app = SizeLimitMiddleware(echo_app, max_bytes=10)
    async with asgi_client(app) as client:
        base = sum(len(k) + len(v) for k, v in client.build_request("GET", "/").headers.raw)
        fill = MAX_HEADER_BYTES - base - len("x-fill")
        assert (await client.get("/", headers={"x-fill": "a" * fill})).status_code == 200
        refused = await client.get("/", headers={"x-fill": "a" * (fill + 1)})
    assert refused.status_code == 431 and refused.headers["connection"] == "close"
    assert f"{MAX_HEADER_BYTES + 1} bytes, the limit is 64 KiB" in refused.text


def replying(content_type: bytes | None, *, log_in=None):
    """An ASGI app that answers 200 with the given Content-Type (None: no such header)."""

    async def app(scope, receive, send) -> None:
        if log_in is not None:
            from middleware.session import set_session
            from starlette.requests import Request

            set_session(Request(scope), log_in)
        headers = [(b"content-type", content_type)] if content_type else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"x"})

    return app


@pytest.mark.anyio
@pytest.mark.parametrize("content_type, minted", [
    (b"text/html; charset=utf-8", True),  # a page: it carries the token for its forms
    (b"application/json", False),
    (b"text/csv", False),
    (None, False),  # redirects
])
async def test_cookie_less_visitors_get_a_cookie_only_with_html(content_type, minted):
    from middleware.session import SessionMiddleware

    app = with_state(SessionMiddleware(replying(content_type), secret_key="k", max_age=60), store=RecordingStore())
    async with asgi_client(app) as client:
        response = await client.get("/")
    assert bool(response.headers.get_list("set-cookie")) is minted
    assert ("cache-control" in response.headers) is minted


@pytest.mark.anyio
async def test_session_changes_reach_the_cookie_whatever_the_response_type():
    from middleware.session import SessionMiddleware
    from store.base import Session, User

    me = Session(user=User(id="1", email="a@b.co"))
    signing_in = SessionMiddleware(replying(b"application/json", log_in=me), secret_key="k", max_age=60)
    async with asgi_client(with_state(signing_in, store=RecordingStore())) as client:
        assert (await client.get("/")).headers["set-cookie"].startswith("session=")

    class Gone(RecordingStore):
        async def resume(self, session):
            return None  # the account was deleted meanwhile

    middleware = SessionMiddleware(replying(b"application/json"), secret_key="k", max_age=60)
    cookie = middleware.cookie_header({"scheme": "http"}, "tok", me).split(";")[0]
    async with asgi_client(with_state(middleware, store=Gone())) as client:
        response = await client.get("/", headers={"Cookie": cookie})
    assert response.headers["set-cookie"].startswith("session=")  # the dead session is cleared
