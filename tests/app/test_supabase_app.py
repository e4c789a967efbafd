"""The app on the Supabase backend, in-process, against the local stand-in (GoTrue + PostgREST
over a real PostgreSQL with the real migration): the confirmation link, the messages users see
for each auth failure, the session cookie's tokens and refreshes, and the request log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from itsdangerous import URLSafeTimedSerializer

from app import create_app
from log.sinks.csv_sink import read_rows
from tests.support.app import AppClient, make_settings
from tests.support.pg import free_port
from tests.support.supabase_standin import SkewClock, Standin, StandinConfig, module_fixtures, serve_standin

pytestmark = pytest.mark.anyio

SECRET = "test-secret"  # what tests.support.app.make_settings signs cookies with
PASSWORD = "correct horse 1"  # the stand-in, like Supabase's setting, wants letters and digits
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


pg, standin = module_fixtures(lambda: StandinConfig(clock=SkewClock()))


@contextlib.contextmanager
def skewed(standin: Standin, seconds: float) -> Iterator[None]:
    clock = standin.config.clock
    assert isinstance(clock, SkewClock)
    clock.offset = seconds
    try:
        yield
    finally:
        clock.offset = 0.0


@contextlib.contextmanager
def configured(standin: Standin, **changes: object) -> Iterator[None]:
    """Change the stand-in's config or state for one block (the stand-in is shared)."""
    targets = {k: standin.state if hasattr(standin.state, k) else standin.config for k in changes}
    before = {k: getattr(targets[k], k) for k in changes}
    for k, v in changes.items():
        setattr(targets[k], k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            setattr(targets[k], k, v)


class RunningApp:
    """One app instance with its lifespan entered; close() runs the shutdown (log flush)."""

    def __init__(self, app, ctx, state) -> None:
        self.ctx, self.state, self.clients = ctx, state, []
        self.closed = False

        async def asgi(scope, receive, send):
            scope["state"] = dict(state)  # what uvicorn does for every request
            await app(scope, receive, send)

        self.asgi = asgi

    def client(self, base_url: str = "http://testserver") -> AppClient:
        c = AppClient(transport=httpx.ASGITransport(self.asgi), base_url=base_url)
        self.clients.append(c)
        return c

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for c in self.clients:
            await c.aclose()
        await self.ctx.__aexit__(None, None, None)


@pytest.fixture
async def make_app(tmp_path: Path, standin: Standin) -> AsyncIterator:
    running: list[RunningApp] = []

    async def make(**overrides) -> RunningApp:
        base = {"supabase_url": standin.url, "supabase_anon_key": standin.anon_key}
        app = create_app(make_settings(tmp_path, **{**base, **overrides}))
        ctx = app.router.lifespan_context(app)
        state = await ctx.__aenter__()
        running.append(RunningApp(app, ctx, state))
        return running[-1]

    yield make
    for r in running:
        await r.close()


@pytest.fixture
async def client(make_app) -> AppClient:
    return (await make_app()).client()


def new_email() -> str:
    return f"u{uuid.uuid4().hex[:12]}@example.test"


def token_hash_for(standin: Standin, email: str) -> str:
    return next(h for e, h in reversed(standin.state.outbox) if e == email)


def signed_in_as(page: httpx.Response) -> str | None:
    match = re.search(r'data-testid="current-user">([^<]+)<', page.text)
    return match.group(1) if match else None


def alert(page: httpx.Response) -> str:
    match = re.search(r'role="alert"[^>]*>([^<]+)<', page.text)
    assert match, page.text[:800]
    return match.group(1).strip()


def cookie_payload(client: AppClient) -> dict:
    return URLSafeTimedSerializer(SECRET, salt="session").loads(client.cookies["session"])


def set_session_payload(response: httpx.Response) -> dict:
    """The session cookie this response sets, decoded."""
    return URLSafeTimedSerializer(SECRET, salt="session").loads(response.cookies["session"])


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    (header,) = response.headers.get_list("set-cookie")
    parts = [p.strip() for p in header.split(";")]
    return {k.lower(): v for k, _, v in (p.partition("=") for p in parts[1:])}


async def login(client: AppClient, email: str, password: str = PASSWORD) -> httpx.Response:
    await client.refresh_csrf()
    return await client.post(
        "/login", data={"email": email, "password": password, "csrf_token": client.csrf})


async def sign_up_confirmed(client: AppClient, standin: Standin, email: str | None = None,
                            skew: float = 0.0) -> tuple[str, httpx.Response]:
    """Sign up, follow the emailed link; returns (email, the confirm response). With `skew`
    the stand-in's clock is that far off while it issues the tokens (negative: expired)."""
    email = email or new_email()
    response = await client.signup(email, PASSWORD)
    assert response.status_code == 200 and "Check your email" in response.text
    with skewed(standin, skew):
        confirmed = await client.get(
            "/auth/confirm", params={"token_hash": token_hash_for(standin, email), "type": "email"})
    assert confirmed.status_code == 303 and confirmed.headers["location"] == "/"
    client.csrf = cookie_payload(client)["csrf"]  # signing in rotated it; no request needed
    return email, confirmed


async def create_item(client: AppClient, name: str) -> httpx.Response:
    return await client.post("/items", data={"name": name, "description": "", "quantity": "1"},
                             headers=client.htmx())


# -- the confirmation link


async def test_sign_up_then_confirm_link_signs_in(client: AppClient, standin: Standin) -> None:
    email = new_email()
    page = await client.signup(email, PASSWORD)
    assert "Check your email" in page.text and email in page.text
    assert signed_in_as(await client.get("/")) is None
    refused = await login(client, email)
    assert refused.status_code == 401
    assert alert(refused).startswith("Please confirm your email address first")

    link = token_hash_for(standin, email)
    confirmed = await client.get(f"/auth/confirm?token_hash={link}&type=email")
    assert confirmed.status_code == 303 and confirmed.headers["location"] == "/"
    assert confirmed.headers["cache-control"].startswith("private")
    assert signed_in_as(await client.get("/")) == email

    # The link works once; a second click is a clear 4xx page, not an error.
    again = await client.get(f"/auth/confirm?token_hash={link}&type=email")
    assert again.status_code == 400
    assert alert(again) == "This confirmation link is invalid or has expired."
    assert (await login(client, email)).status_code == 303  # confirmed for good


async def test_htmx_sign_up_replaces_the_page_with_check_your_email(client: AppClient) -> None:
    await client.refresh_csrf()
    email = new_email()
    page = await client.post("/signup", data={"email": email, "password": PASSWORD},
                             headers=client.htmx())
    assert page.status_code == 200 and 'id="check-email"' in page.text and email in page.text
    assert "<html" not in page.text and 'id="auth-form"' not in page.text  # a fragment
    assert page.headers["hx-retarget"] == "main" and page.headers["hx-reswap"] == "innerHTML"


async def test_confirm_link_via_htmx_redirects_with_header(client: AppClient,
                                                           standin: Standin) -> None:
    email = new_email()
    await client.signup(email, PASSWORD)
    confirmed = await client.get(
        "/auth/confirm", params={"token_hash": token_hash_for(standin, email), "type": "email"},
        headers={"HX-Request": "true"})
    assert confirmed.status_code == 204 and confirmed.headers["hx-redirect"] == "/"
    assert signed_in_as(await client.get("/")) == email


@pytest.mark.parametrize("query", [
    "",
    "type=email",
    "token_hash=&type=email",
    "token_hash=0000deadbeef&type=email",
    "token_hash=0000deadbeef",
    "token_hash=0000deadbeef&type=recovery",
    "token_hash=%00%ff%22%3Cscript%3E&type=email",
    "token_hash=" + "a" * 5000 + "&type=signup",
    "token_hash=x&token_hash=y&type=email&type=signup",
])
async def test_bad_confirm_links_are_a_clear_4xx_page(client: AppClient, query: str) -> None:
    for headers in ({}, {"HX-Request": "true"}):
        page = await client.get(f"/auth/confirm?{query}", headers=headers)
        assert page.status_code == 400, page.text[:300]
        assert alert(page) == "This confirmation link is invalid or has expired."
        assert signed_in_as(page) is None
        if "session" in page.cookies:  # a fresh anonymous cookie at most
            assert URLSafeTimedSerializer(SECRET, salt="session").loads(
                page.cookies["session"])["s"] is None


async def test_confirm_route_is_404_on_the_embedded_store(make_client) -> None:
    sqlite_client = await make_client()
    page = await sqlite_client.get("/auth/confirm?token_hash=abc&type=email")
    assert page.status_code == 404 and 'id="not-found"' in page.text


# -- what each auth failure says


async def test_wrong_password_and_unknown_address_say_invalid_credentials(
    client: AppClient, standin: Standin
) -> None:
    email, _ = await sign_up_confirmed(client, standin)
    other = await login(client, new_email())
    wrong = await login(client, email, "wrong horse 2")
    for response in (other, wrong):
        assert response.status_code == 401
        assert alert(response) == "Invalid email or password."


async def test_weak_password_lists_the_reasons(client: AppClient, standin: Standin) -> None:
    no_digits = await client.signup(new_email(), "letters only here")
    assert no_digits.status_code == 422
    assert alert(no_digits) == ("Password is too weak: it needs a mix of character kinds "
                                "(letters, digits, symbols).")
    with configured(standin, min_password_length=16):
        both = await client.signup(new_email(), "abcdefghijk")
    assert both.status_code == 422
    assert alert(both) == ("Password is too weak: it is too short; it needs a mix of character "
                           "kinds (letters, digits, symbols).")


async def test_existing_account(client: AppClient, standin: Standin) -> None:
    email, _ = await sign_up_confirmed(client, standin)
    assert (await client.post("/logout", headers=client.htmx())).status_code == 204
    # With email confirmation on (Supabase's default) the answer does not reveal the account.
    again = await client.signup(email, PASSWORD)
    assert again.status_code == 200 and "Check your email" in again.text
    # With confirmation off Supabase says "already registered"; the page still answers "check
    # your email", exactly as for an address it has never seen.
    with configured(standin, autoconfirm=True):
        fresh = new_email()
        first = await client.signup(fresh, PASSWORD)
        assert first.status_code == 303  # signed in at once
        await client.post("/logout", headers=client.htmx())
        dup = await client.signup(fresh, PASSWORD)
    unknown = await client.signup(new_email(), PASSWORD)  # confirmations on again
    assert dup.status_code == unknown.status_code == 200
    assert "already exists" not in dup.text

    def same_shape(response: httpx.Response) -> str:  # trace id, CSRF token, email vary
        return re.sub(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
                      r'|"X-CSRF-Token": "[^"]+"|[\w.+-]+@[\w.-]+', "X", response.text)

    assert same_shape(dup) == same_shape(unknown) == same_shape(again)


async def test_rate_limited_by_supabase(client: AppClient, standin: Standin) -> None:
    email, _ = await sign_up_confirmed(client, standin)
    await client.post("/logout", headers=client.htmx())
    with configured(standin, rate_limited=True):
        refused = await login(client, email)
        signup = await client.signup(new_email(), PASSWORD)
    assert refused.status_code == 429
    assert alert(refused) == "Too many attempts. Please wait a minute and try again."
    assert signup.status_code == 429
    assert alert(signup) == "Too many emails sent. Please wait a while and try again."
    assert (await login(client, email)).status_code == 303  # and then it passes


def well_formed_jwt(exp: int) -> str:
    """An ES256 token from a key nobody publishes: checking it needs the JWKS."""
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode({"sub": str(uuid.uuid4()), "role": "authenticated", "exp": exp}, key,
                      algorithm="ES256", headers={"kid": "k1"})


def forged_cookie(access: str, refresh: str, expires_at: int, user_id: str = "") -> str:
    session = {"user": {"id": user_id or str(uuid.uuid4()), "email": "x@example.test",
                        "is_admin": False},
               "tokens": {"access_token": access, "refresh_token": refresh,
                          "expires_at": str(expires_at)}}
    return URLSafeTimedSerializer(SECRET, salt="session").dumps({"csrf": "c", "s": session})


async def test_supabase_unreachable_is_a_friendly_503(make_app) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    running = await make_app(supabase_url=closed, supabase_anon_key="anon")
    client = running.client()
    assert (await client.get("/")).status_code == 200  # signed out: nothing to ask Supabase
    await client.refresh_csrf()
    form = {"email": "a@example.test", "password": PASSWORD, "csrf_token": client.csrf}
    pages = {
        "login": await client.post("/login", data=form),
        "signup": await client.post("/signup", data=form),
        "htmx login": await client.post("/login", data=form, headers={"HX-Request": "true"}),
        "confirm": await client.get("/auth/confirm?token_hash=abc&type=email"),
    }
    now = int(time.time())
    for label, cookie in [("verify", forged_cookie(well_formed_jwt(now + 3600), "r", now + 3600)),
                          ("refresh", forged_cookie(well_formed_jwt(now - 10), "r", now - 10))]:
        probe = running.client()
        probe.cookies.set("session", cookie)
        pages[f"cookie needing {label}"] = await probe.get("/items")
        pages[f"htmx, cookie needing {label}"] = await probe.get(
            "/items", headers={"HX-Request": "true"})
    for label, page in pages.items():
        assert page.status_code == 503, label
        assert "unreachable" in alert(page) or "unavailable" in alert(page), label
        assert "Traceback" not in page.text and "httpx" not in page.text, label
    for full, fragment in [("login", "htmx login"),
                           ("cookie needing verify", "htmx, cookie needing verify")]:
        assert "<html" in pages[full].text and "<html" not in pages[fragment].text


# -- the session cookie


async def test_cookie_holds_the_tokens_signed_httponly_lax(make_app, standin: Standin) -> None:
    running = await make_app()
    client = running.client()
    email, confirmed = await sign_up_confirmed(client, standin)
    attrs = cookie_attributes(confirmed)
    assert "httponly" in attrs and attrs["samesite"] == "Lax" and "secure" not in attrs
    assert confirmed.headers["cache-control"].startswith("private")
    tokens = cookie_payload(client)["s"]["tokens"]
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["email"] == email and claims["exp"] == int(tokens["expires_at"])
    assert tokens["refresh_token"] in {t for t in standin.state.refresh_tokens}
    # Over https the cookie is Secure as well.
    secure = running.client(base_url="https://testserver")
    _, confirmed = await sign_up_confirmed(secure, standin)
    assert "secure" in cookie_attributes(confirmed)


async def test_expired_access_token_is_refreshed_and_the_user_stays(client: AppClient,
                                                                    standin: Standin) -> None:
    # Tokens issued two hours "ago": already expired.
    email, _ = await sign_up_confirmed(client, standin, skew=-7200)
    old = cookie_payload(client)["s"]["tokens"]
    assert int(old["expires_at"]) < time.time()
    grants = standin.state.refresh_grants
    page = await client.get("/")
    assert signed_in_as(page) == email
    assert standin.state.refresh_grants == grants + 1
    assert page.headers["cache-control"].startswith("private")
    new = cookie_payload(client)["s"]["tokens"]
    assert new["refresh_token"] != old["refresh_token"] and int(new["expires_at"]) > time.time()
    assert (await create_item(client, "after refresh")).status_code == 200
    # The fresh tokens are used from now on: no further refresh, no cookie rewrite.
    again = await client.get("/")
    assert signed_in_as(again) == email and "set-cookie" not in again.headers
    assert standin.state.refresh_grants == grants + 1


def revoke_all_sessions(standin: Standin, email: str) -> None:
    user_id = standin.state.users[email].id
    for s in standin.state.sessions.values():
        if s.user_id == user_id:
            s.revoked = True


async def test_invalid_session_clears_cookie_and_redirects_to_login(
    make_app, standin: Standin
) -> None:
    running = await make_app()
    owner = running.client()
    email, _ = await sign_up_confirmed(owner, standin, skew=-7200)
    stale = owner.cookies["session"]
    revoke_all_sessions(standin, email)  # e.g. signed out everywhere: the refresh fails
    garbage = forged_cookie("not-a-jwt", "nope", int(time.time()) + 3600)

    for cookie in (stale, garbage):
        home = running.client()
        home.cookies.set("session", cookie)
        landing = await home.get("/")  # not a protected page: the landing page, signed out
        assert landing.status_code == 200 and signed_in_as(landing) is None
        assert 'href="/login"' in landing.text and set_session_payload(landing)["s"] is None
        requests = [
            ("GET", "/items/1", {}),
            ("GET", "/items?q=a", {"HX-Request": "true"}),
            ("POST", "/items", {"HX-Request": "true"}),
            ("DELETE", "/items/1", {"HX-Request": "true"}),
        ]
        for method, path, headers in requests:
            probe = running.client()
            probe.cookies.set("session", cookie)
            payload = URLSafeTimedSerializer(SECRET, salt="session").loads(cookie)
            csrf = {"X-CSRF-Token": payload["csrf"]}
            response = await probe.request(method, path, headers={**headers, **csrf},
                                           data={"name": "x"} if method == "POST" else None)
            label = f"{method} {path} {headers}"
            if headers:
                assert response.status_code == 204, label
                assert response.headers["hx-redirect"] == "/login", label
            else:
                assert response.status_code == 303, label
                assert response.headers["location"] == "/login", label
            assert response.headers["cache-control"].startswith("private"), label
            assert set_session_payload(response)["s"] is None, label  # the tokens are gone


async def test_token_rejected_mid_request_ends_the_session(make_app, standin: Standin) -> None:
    """resume() passed the session, but PostgREST still calls the token expired after a refresh
    (here: the auth server's clock runs two hours behind): the app's AuthError handler clears
    the cookie and sends the user to /login instead of showing an error."""
    running = await make_app()
    for headers in ({}, {"HX-Request": "true"}):
        client = running.client()
        await sign_up_confirmed(client, standin, skew=-7200)  # already expired
        with skewed(standin, -7200):  # and so is every token the refresh hands out
            response = await client.get("/items", headers=headers)
        if headers:
            assert response.status_code == 204 and response.headers["hx-redirect"] == "/login"
        else:
            assert response.status_code == 303 and response.headers["location"] == "/login"
        assert set_session_payload(response)["s"] is None
        assert response.headers["cache-control"].startswith("private")


# -- concurrency


async def test_parallel_htmx_requests_with_an_expiring_token_refresh_once(
    make_app, standin: Standin
) -> None:
    running = await make_app()
    client = running.client()
    # The access token expires in 10 s: inside the store's refresh margin.
    await sign_up_confirmed(client, standin, skew=-3590)
    cookie = client.cookies["session"]
    csrf = cookie_payload(client)["csrf"]
    grants = standin.state.refresh_grants

    async def one(n: int) -> httpx.Response:
        headers = {"Cookie": f"session={cookie}", "HX-Request": "true", "X-CSRF-Token": csrf}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(running.asgi),
                                     base_url="http://testserver") as c:
            if n % 4 == 3:
                return await c.post("/items", data={"name": f"p{n}", "quantity": "1"},
                                    headers=headers)
            return await c.get("/items", params={"q": ""}, headers=headers)

    responses = await asyncio.gather(*(one(n) for n in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert standin.state.refresh_grants == grants + 1
    serializer = URLSafeTimedSerializer(SECRET, salt="session")
    refreshed = {serializer.loads(r.cookies["session"])["s"]["tokens"]["refresh_token"]
                 for r in responses}
    assert len(refreshed) == 1  # every response hands the browser the same new tokens
    assert all(r.headers["cache-control"].startswith("private") for r in responses)


# -- the request log


async def test_api_logs_user_id_is_the_supabase_user_id(make_app, standin: Standin,
                                                        tmp_path: Path) -> None:
    running = await make_app(log_sinks=("csv",))
    client = running.client()
    email, _ = await sign_up_confirmed(client, standin)
    tokens = cookie_payload(client)["s"]["tokens"]
    user_id = standin.state.users[email].id
    assert (await create_item(client, "logged")).status_code == 200
    await client.get("/items", params={"q": "logged"})
    await running.close()  # the lifespan's shutdown flushes the sinks

    rows = list(read_rows(tmp_path / "logs", "api_logs"))
    by_endpoint = {(r.method, r.endpoint.partition("?")[0]): r for r in rows}
    assert by_endpoint[("POST", "/signup")].user_id is None
    for key in [("GET", "/auth/confirm"), ("POST", "/items"), ("GET", "/items")]:
        assert by_endpoint[key].user_id == user_id, key
    assert UUID_RE.match(user_id)
    # No secret reaches the log: not the password, the tokens, nor the emailed link.
    text = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.csv"))
    for secret in (PASSWORD, tokens["access_token"], tokens["refresh_token"],
                   token_hash_for(standin, email)):
        assert secret not in text
    assert "/auth/confirm?token_hash=[REDACTED]&type=email" in text


async def test_item_writes_are_one_task_row_each_on_supabase(make_app, standin: Standin,
                                                               tmp_path: Path) -> None:
    running = await make_app(log_sinks=("csv",))
    client = running.client()
    await sign_up_confirmed(client, standin)
    created = await create_item(client, "  Kettle ")
    assert created.status_code == 200
    item_id = max(int(i) for i in re.findall(r'id="item-(\d+)"', created.text))
    updated = await client.patch(f"/items/{item_id}", data={"name": "Kettle 2", "quantity": "3"},
                                 headers=client.htmx())
    deleted = await client.delete(f"/items/{item_id}", headers=client.htmx())
    assert (updated.status_code, deleted.status_code) == (200, 200)
    await running.close()  # the lifespan's shutdown flushes the sinks

    rows = list(read_rows(tmp_path / "logs", "task_progress_logs"))
    assert [(r.task_name, r.step_name, r.status, r.trace_id) for r in rows] == [
        ("Item_Create", "DB_Commit", "SUCCESS", created.headers["x-trace-id"]),
        ("Item_Update", "DB_Commit", "SUCCESS", updated.headers["x-trace-id"]),
        ("Item_Delete", "DB_Commit", "SUCCESS", deleted.headers["x-trace-id"]),
    ]
    assert json.loads(rows[0].input_data) == {"name": "Kettle", "description": "", "quantity": 1}
    assert json.loads(rows[1].input_data) == {"name": "Kettle 2", "description": "", "quantity": 3}
    assert [json.loads(r.output_data) for r in rows] == [{"id": item_id}] * 3
