"""Sign up, log in, log out, login rate limits and the session cookie, in-process."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from app import create_app
from handlers.ratelimit import (
    ACCOUNT_LIMIT, ACCOUNT_WINDOW, IP_LIMIT, IP_WINDOW, MAX_KEYS, Backoff, FailureLimiter, LoginLimits,
)
from settings import Settings
from tests.support.app import AppClient, make_settings

PASSWORD = "correct horse battery"
SECRET = "test-secret"  # what tests.support.app.make_settings uses
GENERIC = "Invalid email or password."



@pytest.fixture
async def make_app(tmp_path: Path):
    """make_app(settings=None) → client(ip=..., base_url=...) factory on one app instance.

    Like conftest's make_client, plus a chosen client address (per-IP limits) and scheme."""
    contexts, clients = [], []

    async def make(settings: Settings | None = None):
        app = create_app(settings or make_settings(tmp_path))
        ctx = app.router.lifespan_context(app)
        state = await ctx.__aenter__()
        contexts.append(ctx)

        async def asgi(scope, receive, send):
            scope["state"] = dict(state)
            await app(scope, receive, send)

        def client(ip: str = "127.0.0.1", base_url: str = "http://testserver") -> AppClient:
            c = AppClient(transport=httpx.ASGITransport(asgi, client=(ip, 50000)), base_url=base_url)
            clients.append(c)
            return c

        return client

    yield make
    for c in clients:
        await c.aclose()
    for ctx in contexts:
        await ctx.__aexit__(None, None, None)


@pytest.fixture
async def client_for(make_app):
    return await make_app()


TOKEN_RE = re.compile(r'"X-CSRF-Token": "([^"]+)"')


async def refresh(client: AppClient) -> str:
    """The page's CSRF token, from <body hx-headers>: on every full page, signed in or not
    (AppClient.refresh_csrf looks for a form field, which a signed-out /items page lacks)."""
    page = await client.get("/")
    match = TOKEN_RE.search(page.text)
    assert match, page.text[:300]
    client.csrf = match.group(1)
    return client.csrf


async def signup(client: AppClient, email: str, password: str = PASSWORD) -> httpx.Response:
    await refresh(client)
    response = await client.post(
        "/signup", data={"email": email, "password": password, "csrf_token": client.csrf}
    )
    await refresh(client)
    return response


async def login(client: AppClient, email: str, password: str = PASSWORD, **headers) -> httpx.Response:
    if not client.csrf:
        await refresh(client)
    return await client.post(
        "/login", data={"email": email, "password": password, "csrf_token": client.csrf}, headers=headers
    )


def alert(response: httpx.Response) -> str:
    match = re.search(r'<div class="alert alert-error[^"]*" role="alert">([^<]*)</div>', response.text)
    return match.group(1) if match else ""


def set_cookie(response: httpx.Response) -> str:
    (header,) = response.headers.get_list("set-cookie")
    return header


def signed_in_as(page: httpx.Response) -> str | None:
    match = re.search(r'data-testid="current-user">([^<]+)<', page.text)
    return match.group(1) if match else None


# sign up ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_signup_signs_in_and_first_account_is_admin(client_for):
    first, second = client_for(), client_for()
    response = await signup(first, "first@example.com")
    assert response.status_code == 303 and response.headers["location"] == "/"
    page = await first.get("/")
    assert signed_in_as(page) == "first@example.com"
    assert 'href="/logs"' in page.text  # admin link
    await signup(second, "Second@Example.com")
    page = await second.get("/")
    assert signed_in_as(page) == "second@example.com"
    assert 'href="/logs"' not in page.text


@pytest.mark.anyio
async def test_signup_via_htmx_redirects_with_header(client_for):
    client = client_for()
    await refresh(client)
    response = await client.post(
        "/signup", data={"email": "hx@example.com", "password": PASSWORD}, headers=client.htmx()
    )
    assert response.status_code == 204 and response.headers["hx-redirect"] == "/"


@pytest.mark.anyio
async def test_signup_validation_errors(client_for):
    client = client_for()
    await refresh(client)
    response = await client.post(
        "/signup", data={"email": "not-an-email", "password": "shrt-Q7"}, headers=client.htmx()
    )
    assert response.status_code == 422
    assert response.text.lstrip().startswith('<form id="auth-form"')
    assert set(re.findall(r'data-error-for="(\w+)"', response.text)) == {"email", "password"}
    assert 'value="not-an-email"' in response.text
    assert "shrt-Q7" not in response.text
    assert "session" not in client.cookies or signed_in_as(await client.get("/")) is None


@pytest.mark.anyio
async def test_nul_in_a_password_is_refused_on_signup_and_login(client_for):
    # scrypt would hash "pw" and "pw\0" alike (HMAC zero-pads keys): NUL is refused up front.
    await signup(client_for(), "nul@example.com", "a long enough password")
    for path, email in (("/signup", "new@example.com"), ("/login", "nul@example.com")):
        client = client_for()
        await refresh(client)
        response = await client.post(
            path, data={"email": email, "password": "a long enough password\x00"}, headers=client.htmx()
        )
        assert response.status_code == 422, path
        assert "Password must not contain NUL characters." in response.text, path
        assert signed_in_as(await client.get("/")) is None, path


@pytest.mark.anyio
async def test_duplicate_email(client_for):
    await signup(client_for(), "dup@example.com")
    other = client_for()
    response = await signup(other, "DUP@example.com", "another long password")
    assert response.status_code == 422
    assert alert(response) == "An account with this email already exists. Log in instead."
    assert signed_in_as(await other.get("/")) is None


@pytest.mark.anyio
async def test_signup_is_limited_per_ip(make_app, tmp_path: Path):
    client_for = await make_app(make_settings(tmp_path, signup_limit_per_ip=3))
    prober = client_for(ip="10.3.3.3")
    assert (await signup(prober, "first@example.com")).status_code == 303
    await prober.post("/logout", data={"csrf_token": prober.csrf})
    # Refused attempts count too: probing which addresses have accounts is limited as well.
    assert (await signup(prober, "first@example.com")).status_code == 422
    assert (await signup(prober, "second@example.com")).status_code == 303
    await prober.post("/logout", data={"csrf_token": prober.csrf})
    fourth = await signup(prober, "third@example.com")
    assert fourth.status_code == 429
    assert alert(fourth) == "Too many sign-up attempts. Try again in 60 minutes."
    assert 3500 < int(fourth.headers["retry-after"]) <= 3600
    assert "<html" in fourth.text and 'id="auth-form"' in fourth.text  # a whole page, the form kept
    assert (await signup(prober, "first@example.com")).status_code == 429  # no existence answer
    assert signed_in_as(await prober.get("/")) is None
    # Another address still signs up.
    assert (await signup(client_for(ip="10.3.3.4"), "third@example.com")).status_code == 303


@pytest.mark.anyio
async def test_signup_is_limited_per_instance(make_app, tmp_path: Path):
    client_for = await make_app(make_settings(tmp_path, signup_limit_per_hour=2))
    for n in range(2):
        assert (await signup(client_for(ip=f"10.4.0.{n}"), f"u{n}@example.com")).status_code == 303
    late = client_for(ip="10.4.0.9")
    await refresh(late)
    refused = await late.post(
        "/signup", data={"email": "late@example.com", "password": PASSWORD}, headers=late.htmx()
    )
    assert refused.status_code == 429
    assert refused.text.lstrip().startswith('<form id="auth-form"')  # htmx: the form alone
    assert alert(refused) == "Too many sign-up attempts. Try again in 60 minutes."
    assert signed_in_as(await late.get("/")) is None


@pytest.mark.anyio
async def test_auth_pages_redirect_when_signed_in(client_for):
    client = client_for()
    await signup(client, "me@example.com")
    for path in ["/signup", "/login"]:
        response = await client.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/"


# log in ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_login_success_rotates_csrf_token(client_for):
    await signup(client_for(), "me@example.com")
    client = client_for()
    old_token = await refresh(client)
    response = await login(client, "ME@example.com")
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert signed_in_as(await client.get("/")) == "me@example.com"
    stale = await client.post("/items", data={"name": "x"}, headers={"X-CSRF-Token": old_token})
    assert stale.status_code == 403
    new_token = await refresh(client)
    assert new_token != old_token


@pytest.mark.anyio
async def test_wrong_password_and_unknown_email_look_the_same(client_for):
    await signup(client_for(), "me@example.com")
    client = client_for()
    wrong = await login(client, "me@example.com", "wrong password")
    unknown = await login(client, "nobody@example.com", "wrong password")
    assert wrong.status_code == unknown.status_code == 401
    assert alert(wrong) == alert(unknown) == GENERIC
    def same_shape(text: str, email: str) -> str:  # each page view has its own trace id
        return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "T", text.replace(email, "E"))

    assert same_shape(wrong.text, "me@example.com") == same_shape(unknown.text, "nobody@example.com")
    assert signed_in_as(await client.get("/")) is None


@pytest.mark.anyio
async def test_login_validation_error_is_422_not_a_failure(client_for):
    client = client_for()
    response = await login(client, "me@example.com", "")
    assert response.status_code == 422
    assert re.findall(r'data-error-for="(\w+)"', response.text) == ["password"]


@pytest.mark.anyio
async def test_an_attacker_cannot_lock_the_owner_out(client_for):
    await signup(client_for(), "me@example.com")
    attacker = client_for(ip="10.6.6.6")
    statuses = [(await login(attacker, "me@example.com", f"guess {n}")).status_code for n in range(5)]
    assert statuses == [401] * 5
    sixth = await login(attacker, "Me@Example.com", "guess 6")
    assert sixth.status_code == 429 and 0 < int(sixth.headers["retry-after"]) <= 30
    assert re.fullmatch(r"Too many failed attempts\. Try again in \d+ minutes?\.", alert(sixth))
    # The attacker's address waits even with the right password...
    assert (await login(attacker, "me@example.com")).status_code == 429
    for n in range(30):  # ...and hammering on changes nothing for anyone else:
        assert (await login(attacker, "me@example.com", f"more {n}")).status_code == 429
    # the owner, from another address, logs in.
    owner = client_for(ip="10.9.9.9")
    assert (await login(owner, "me@example.com")).status_code == 303
    assert signed_in_as(await owner.get("/")) == "me@example.com"
    # Other accounts from the attacker's address are not affected either.
    await signup(client_for(), "other@example.com")
    assert (await login(attacker, "other@example.com")).status_code == 303


@pytest.mark.anyio
async def test_rate_limit_per_ip(client_for):
    await signup(client_for(), "victim@example.com")
    attacker = client_for(ip="10.0.0.66")
    statuses = [(await login(attacker, f"spray{n}@example.com", "guess")).status_code for n in range(20)]
    assert statuses == [401] * 20
    blocked = await login(attacker, "victim@example.com")
    assert blocked.status_code == 429 and "Too many failed attempts" in alert(blocked)
    # A forged X-Forwarded-For does not get a fresh budget (no trusted proxy configured).
    spoofed = await login(attacker, "victim@example.com", **{"X-Forwarded-For": "203.0.113.7"})
    assert spoofed.status_code == 429
    # Another address still logs in.
    assert (await login(client_for(ip="10.0.0.67"), "victim@example.com")).status_code == 303


@pytest.mark.anyio
async def test_success_resets_the_failures_of_that_address(client_for):
    await signup(client_for(), "me@example.com")
    client = client_for(ip="10.1.1.1")
    for _ in range(4):
        assert (await login(client, "me@example.com", "bad")).status_code == 401
    assert (await login(client, "me@example.com")).status_code == 303
    await refresh(client)
    for _ in range(5):
        assert (await login(client, "me@example.com", "bad")).status_code == 401
    assert (await login(client, "me@example.com", "bad")).status_code == 429


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failure_limiter_window():
    clock = FakeClock()
    limiter = FailureLimiter(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert limiter.blocked_for("k") == 0
        limiter.fail("k")
        clock.now += 10
    assert limiter.blocked_for("k") == pytest.approx(30)  # first failure at 1000, now 1030
    assert limiter.blocked_for("other") == 0
    clock.now = 1060  # the first failure leaves the window
    assert limiter.blocked_for("k") == 0
    limiter.fail("k")
    assert limiter.blocked_for("k") == pytest.approx(10)
    limiter.succeed("k")
    assert limiter.blocked_for("k") == 0
    clock.now += 1000
    assert limiter.blocked_for("k") == 0 and limiter.failures == {}


def test_failure_limiter_memory_is_bounded():
    limiter = FailureLimiter(limit=1, window=60, clock=FakeClock())
    for n in range(100_005):
        limiter.fail(str(n))
    assert len(limiter.failures) == 100_000
    assert "0" not in limiter.failures  # the oldest keys went first
    assert limiter.blocked_for("100004") > 0


def test_backoff_doubles_then_caps_and_forgets():
    clock = FakeClock()
    backoff = Backoff(free=2, base=10, cap=35, forget=100, clock=clock)
    waits = []
    for _ in range(6):
        assert backoff.blocked_for("k") == 0
        backoff.fail("k")
        waits.append(backoff.blocked_for("k"))
        clock.now += waits[-1]
    assert waits == [0, 10, 20, 35, 35, 35]
    assert backoff.blocked_for("other") == 0
    last = clock.now - waits[-1]
    clock.now = last + 99.9
    assert backoff.blocked_for("k") == 0 and "k" in backoff.state
    clock.now = last + 100  # 100 s after the last failure: forgotten
    assert backoff.blocked_for("k") == 0 and backoff.state == {}
    backoff.fail("k")
    backoff.fail("k")
    backoff.succeed("k")
    assert backoff.blocked_for("k") == 0
    assert Backoff(free=0, base=1, cap=60, forget=1e9, clock=clock).delay(10_000) == 60  # no overflow


def test_backoff_memory_is_bounded():
    backoff = Backoff(free=0, base=1, cap=1, forget=60, clock=FakeClock())
    for n in range(MAX_KEYS + 5):
        backoff.fail(str(n))
    assert len(backoff.state) == MAX_KEYS and "0" not in backoff.state


def test_one_address_cannot_reach_the_account_limit():
    """An attacker retrying as soon as allowed for two hours, from one address: the account
    limit stays far out of reach, and the owner elsewhere never waits."""
    clock = FakeClock()
    limits = LoginLimits(clock=clock)
    failures: list[float] = []
    while clock.now < 1000 + 7200:
        wait = limits.wait_seconds("6.6.6.6", "me@example.com")
        if wait > 0:
            clock.now += wait
            continue
        limits.failed("6.6.6.6", "me@example.com")
        failures.append(clock.now)
        assert limits.wait_seconds("9.9.9.9", "me@example.com") == 0
        clock.now += 0.5
    most_per_hour = max(sum(1 for t in failures if s <= t < s + ACCOUNT_WINDOW) for s in failures)
    assert most_per_hour == 12 and ACCOUNT_LIMIT >= 8 * most_per_hour


def test_many_addresses_do_hit_the_account_limit():
    clock = FakeClock()
    limits = LoginLimits(clock=clock)
    for n in range(ACCOUNT_LIMIT):
        limits.failed(f"10.0.{n // 5}.{n % 5}", "me@example.com")  # 5 per address: no backoff hit
    assert limits.wait_seconds("9.9.9.9", "Me@example.com") == pytest.approx(ACCOUNT_WINDOW)
    assert limits.wait_seconds("9.9.9.9", "other@example.com") == 0


def test_login_limits_per_ip_over_all_accounts():
    clock = FakeClock()
    limits = LoginLimits(clock=clock)
    for n in range(IP_LIMIT):
        assert limits.wait_seconds("1.1.1.1", f"{n}@example.com") == 0
        limits.failed("1.1.1.1", f"{n}@example.com")
    assert limits.wait_seconds("1.1.1.1", "fresh@example.com") == pytest.approx(IP_WINDOW)
    assert limits.wait_seconds("2.2.2.2", "0@example.com") == 0
    limits.succeeded("1.1.1.1", "0@example.com")  # a success does not reset the address's window
    assert limits.wait_seconds("1.1.1.1", "fresh@example.com") == pytest.approx(IP_WINDOW)


# log out -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_logout_clears_session(client_for):
    client = client_for()
    await signup(client, "me@example.com")
    signed_cookie = client.cookies["session"]
    response = await client.post("/logout", data={"csrf_token": client.csrf})
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert "Max-Age" in set_cookie(response)
    page = await client.get("/")
    assert signed_in_as(page) is None and 'href="/signup"' in page.text
    payload = URLSafeTimedSerializer(SECRET, salt="session").loads(client.cookies["session"])
    assert payload["s"] is None
    assert client.cookies["session"] != signed_cookie


@pytest.mark.anyio
async def test_logout_via_htmx(client_for):
    client = client_for()
    await signup(client, "me@example.com")
    response = await client.post("/logout", headers=client.htmx())
    assert response.status_code == 204 and response.headers["hx-redirect"] == "/"
    assert signed_in_as(await client.get("/")) is None


@pytest.mark.anyio
async def test_logout_is_post_only_and_needs_csrf(client_for):
    client = client_for()
    await signup(client, "me@example.com")
    get = await client.get("/logout")
    assert get.status_code == 405
    assert get.headers["allow"] == "POST"
    assert (await client.post("/logout")).status_code == 403
    assert signed_in_as(await client.get("/")) == "me@example.com"


async def signed_out_at_once(cookie: str, client: AppClient) -> None:
    client.cookies.set("session", cookie)
    response = await client.get("/items/import")  # a page for signed-in users only
    assert response.status_code == 303 and response.headers["location"] == "/login"


@pytest.mark.anyio
async def test_a_cookie_saved_before_logout_is_signed_out(client_for):
    client = client_for()
    await signup(client, "me@example.com")
    saved = client.cookies["session"]
    thief = client_for(ip="10.5.5.5")
    thief.cookies.set("session", saved)
    assert (await thief.get("/items/import")).status_code == 200  # the copy works while signed in...
    assert (await client.post("/logout", data={"csrf_token": client.csrf})).status_code == 303
    await signed_out_at_once(saved, thief)  # ...and not a moment after logout
    assert signed_in_as(await thief.get("/")) is None
    await refresh(client)  # logging out rotated the CSRF token
    await login(client, "me@example.com")  # a new login is a new session
    assert signed_in_as(await client.get("/")) == "me@example.com"
    await signed_out_at_once(saved, client_for())


@pytest.mark.anyio
async def test_logout_on_one_worker_is_seen_by_the_next_request_on_another(make_app, tmp_path: Path):
    # Two app instances on one data directory: two uvicorn worker processes, each with its own
    # verified-cookie cache and database connection.
    worker_a = await make_app(make_settings(tmp_path))
    worker_b = await make_app(make_settings(tmp_path))
    client = worker_a()
    await signup(client, "me@example.com")
    saved = client.cookies["session"]
    other = worker_b()
    other.cookies.set("session", saved)
    assert signed_in_as(await other.get("/")) == "me@example.com"  # verified and cached on B
    await client.post("/logout", data={"csrf_token": client.csrf})
    await signed_out_at_once(saved, other)


@pytest.mark.anyio
async def test_log_out_of_all_devices(client_for):
    laptop, phone, someone_else = client_for(), client_for(ip="10.2.2.2"), client_for()
    await signup(laptop, "me@example.com")
    await login(phone, "me@example.com")
    await signup(someone_else, "other@example.com")
    assert 'action="/logout/all"' in (await laptop.get("/")).text
    assert (await laptop.post("/logout/all")).status_code == 403  # CSRF-protected
    assert (await laptop.get("/logout/all")).status_code == 405
    phone_cookie = phone.cookies["session"]
    assert signed_in_as(await phone.get("/")) == "me@example.com"
    response = await laptop.post("/logout/all", data={"csrf_token": laptop.csrf})
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert signed_in_as(await laptop.get("/")) is None
    await signed_out_at_once(phone_cookie, phone)
    assert signed_in_as(await someone_else.get("/")) == "other@example.com"


# session cookie ------------------------------------------------------------------------------


def cookie_attributes(header: str) -> dict[str, str]:
    parts = [p.strip() for p in header.split(";")]
    return {k.lower(): v for k, _, v in (p.partition("=") for p in parts[1:])}


@pytest.mark.anyio
async def test_cookie_flags_over_http(client_for):
    client = client_for()
    await refresh(client)
    response = await client.post(
        "/signup", data={"email": "me@example.com", "password": PASSWORD, "csrf_token": client.csrf}
    )
    header = set_cookie(response)
    attrs = cookie_attributes(header)
    assert header.startswith("session=")
    assert "httponly" in attrs and attrs["samesite"] == "Lax" and attrs["path"] == "/"
    assert attrs["max-age"] == str(14 * 24 * 3600)
    assert "secure" not in attrs
    assert response.headers["cache-control"] == "private, no-store"


@pytest.mark.anyio
async def test_cookie_is_secure_over_https(client_for):
    client = client_for(base_url="https://testserver")
    response = await client.get("/")
    attrs = cookie_attributes(set_cookie(response))
    assert "secure" in attrs and "httponly" in attrs and attrs["samesite"] == "Lax"
    await signup(client, "me@example.com")
    assert signed_in_as(await client.get("/")) == "me@example.com"


@pytest.mark.anyio
async def test_cookie_is_secure_when_https_only(make_app, tmp_path: Path):
    client = (await make_app(make_settings(tmp_path, https_only=True, session_max_age=3600)))()
    attrs = cookie_attributes(set_cookie(await client.get("/")))
    assert "secure" in attrs and attrs["max-age"] == "3600"


@pytest.mark.anyio
async def test_cookie_only_resent_when_it_changes(client_for):
    client = client_for()
    first = await client.get("/")
    assert first.headers.get_list("set-cookie")
    again = await client.get("/")
    assert again.headers.get_list("set-cookie") == []


def forge(payload, *, secret: str = SECRET, age: int = 0) -> str:
    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age

    return URLSafeTimedSerializer(secret, salt="session", signer=Signer).dumps(payload)


@pytest.mark.anyio
async def test_forge_helper_makes_a_working_cookie(client_for):
    # The control for the tampering tests below: an honest cookie built the same way works.
    client = client_for()
    await signup(client, "me@example.com")
    payload = URLSafeTimedSerializer(SECRET, salt="session").loads(client.cookies["session"])
    fresh = client_for()
    fresh.cookies.set("session", forge(payload))
    assert signed_in_as(await fresh.get("/")) == "me@example.com"


@pytest.mark.anyio
async def test_tampered_or_foreign_cookies_mean_signed_out(client_for):
    client = client_for()
    await signup(client, "me@example.com")
    good = client.cookies["session"]
    payload = URLSafeTimedSerializer(SECRET, salt="session").loads(good)
    stale_payload = {**payload, "s": {**payload["s"], "user": {**payload["s"]["user"], "is_admin": False}}}
    body, _, sig = good.rpartition(".")
    # Flip the FIRST character: the last base64 character carries padding bits, and changing
    # only those can leave the decoded signature unchanged (a flaky "tamper").
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    bad_cookies = [
        body + "." + flipped,  # signature tampered
        good[:10] + ("x" if good[10] != "x" else "y") + good[11:],  # payload tampered
        forge(payload, secret="someone-else"),  # signed with another key
        forge(payload, age=15 * 24 * 3600),  # older than max_age
        forge({"csrf": "t", "s": "not a session"}),
        forge({"csrf": "t", "s": {"user": {"id": "999", "email": "ghost@example.com"}}}),  # no such user
        forge(["not", "a", "dict"]),
        "garbage",
        "",
    ]
    for cookie in bad_cookies:
        probe = client_for()
        probe.cookies.set("session", cookie)
        page = await probe.get("/")
        assert page.status_code == 200, cookie
        assert signed_in_as(page) is None, cookie
        if cookie in bad_cookies[:4] + ["garbage"]:
            assert set_cookie(page).startswith("session=")  # replaced by a fresh anonymous one
    # A stale but otherwise valid cookie is refreshed from the database, not trusted blindly.
    probe = client_for()
    probe.cookies.set("session", forge(stale_payload))
    page = await probe.get("/")
    assert signed_in_as(page) == "me@example.com" and 'href="/logs"' in page.text


# secrets never echo ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_password_never_appears_in_any_response(client_for):
    secret_pw = "Zebra-Quartz-9931-unique"
    responses: list[httpx.Response] = []
    client = client_for()
    await refresh(client)

    async def post(path: str, email: str, password: str, htmx: bool = False):
        data = {"email": email, "password": password, "csrf_token": client.csrf}
        r = await client.post(path, data=data, headers=client.htmx() if htmx else {})
        responses.append(r)

    await post("/signup", "bad-email", secret_pw)
    await post("/signup", "bad-email", secret_pw, htmx=True)
    await post("/signup", "pw@example.com", secret_pw)
    await refresh(client)
    responses.append(await client.get("/"))
    responses.append(await client.post("/logout", data={"csrf_token": client.csrf}))
    await refresh(client)
    await post("/signup", "pw@example.com", secret_pw)  # duplicate
    await post("/login", "pw@example.com", secret_pw + "x")  # wrong
    await post("/login", "nobody@example.com", secret_pw)  # unknown
    await post("/login", "pw@example.com", secret_pw, htmx=True)  # ok
    serializer = URLSafeTimedSerializer(SECRET, salt="session")
    for r in responses:
        assert secret_pw not in r.text
        assert all(secret_pw not in v for v in r.headers.values())
        for header in r.headers.get_list("set-cookie"):
            value = header.split(";")[0].partition("=")[2]
            assert secret_pw not in str(serializer.loads(value))
    assert [r.status_code for r in responses][-1] == 204
