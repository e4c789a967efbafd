"""The session cookie: itsdangerous' URLSafeTimedSerializer format (salt "session"), read and
written by SessionMiddleware; expiry, tampering and garbage are a missing session, never an error;
verified cookies are cached per middleware and still expire on time."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from middleware.session import SessionMiddleware

SECRET = "test-secret-key"
T0 = 1_750_000_000
MAX_AGE = 3600


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def theirs(at: int = T0, secret: str = SECRET, salt: str = "session") -> URLSafeTimedSerializer:
    """A plain itsdangerous serializer, signing as if the time were `at`."""

    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return at

    return URLSafeTimedSerializer(secret, salt=salt, signer=Signer)


async def no_app(scope, receive, send):
    raise AssertionError("not called")


def middleware(at: float = T0, secret: str = SECRET) -> SessionMiddleware:
    return SessionMiddleware(no_app, secret_key=secret, max_age=MAX_AGE, clock=Clock(at))


def scope_with(cookie: str | None) -> dict:
    headers = [(b"cookie", f"theme=dark; session={cookie}".encode("latin-1"))] if cookie is not None else []
    return {"type": "http", "headers": headers}


def load(cookie: str | None, at: float = T0, secret: str = SECRET):
    return middleware(at, secret).load(scope_with(cookie))


def minted(mw: SessionMiddleware, csrf: str = "tok", session=None) -> str:
    """The cookie value of the Set-Cookie header the middleware sends."""
    header = mw.cookie_header({"type": "http", "scheme": "http"}, csrf, session)
    return header.split(";", 1)[0].removeprefix("session=")


SESSION_PAYLOAD = {
    "csrf": "Xq3-_abcdefghijklmnopqrstuvwxyz0123456789AB",
    "s": {
        "user": {"id": "0b8e5a52-6a43-4a3e-9a1c-2f3c1e0d9b77", "email": "me@example.com", "is_admin": True},
        "tokens": {"access_token": "eyJ" + "a" * 600, "refresh_token": "r3fr35h", "expires_at": "17"},
    },
}
PAYLOADS = [
    {"csrf": "tok", "s": None},
    SESSION_PAYLOAD,
    {"csrf": "ünïcødé ✓ \"quoted\" back\\slash \n tab\t", "s": None, "n": [1, -2, 3_000_000_000]},
    {},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


# compatibility ---------------------------------------------------------------------------------


def test_the_cookie_we_send_is_what_itsdangerous_signs():
    mw = middleware()
    cookie = minted(mw, "tok")
    assert cookie == theirs().dumps({"csrf": "tok", "s": None})
    # Plain itsdangerous (real clock) reads a cookie we sign now.
    now = middleware(time.time())
    assert URLSafeTimedSerializer(SECRET, salt="session").loads(minted(now), max_age=MAX_AGE) == {"csrf": "tok", "s": None}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_we_read_what_itsdangerous_signs(payload):
    assert load(theirs().dumps(payload), at=T0 + 10) == payload


@given(st.dictionaries(st.text(), json_values, max_size=4))
@settings(max_examples=200, deadline=None)
def test_any_json_object_round_trips(payload):
    assert load(theirs().dumps(payload)) == payload


def test_compressed_long_payload_is_read():
    payload = {"csrf": "t", "s": {"blob": "abc" * 500, "list": list(range(50))}}
    signed = theirs().dumps(payload)
    assert signed.startswith(".")  # zlib-compressed: the leading-dot form
    assert load(signed) == payload


@pytest.mark.parametrize("payload", [["not", "a", "dict"], "text", 3, None])
def test_a_signed_value_that_is_not_an_object_is_no_session(payload):
    assert load(theirs().dumps(payload)) is None


# rejection -------------------------------------------------------------------------------------


def _flip(text: str, i: int) -> str:
    return text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]


def test_tampering_with_any_part_is_refused():
    good = theirs().dumps(SESSION_PAYLOAD)
    body, ts, sig = good.rsplit(".", 2)
    assert load(good) == SESSION_PAYLOAD  # the control
    for bad in [
        f"{_flip(body, 0)}.{ts}.{sig}",
        f"{_flip(body, len(body) // 2)}.{ts}.{sig}",
        f"{body}.{_flip(ts, 0)}.{sig}",
        f"{body}.{ts}.{_flip(sig, 0)}",
        f"{body}.{ts}.{sig[:-1]}",
        f"{body}.{ts}.{sig}x",
        f"{body}.{ts}",
        f"{body}.{sig}",
        f"{body}{ts}{sig}",
        "",
    ]:
        assert load(bad) is None, bad


def test_other_secret_or_salt_is_refused():
    assert load(theirs(secret="someone-else").dumps({"a": 1})) is None
    assert load(theirs(salt="not-session").dumps({"a": 1})) is None
    assert load(minted(middleware()), secret="someone-else") is None


@pytest.mark.parametrize("age", [-5, -1, 0, 1, MAX_AGE - 1, MAX_AGE, MAX_AGE + 1, 10 * MAX_AGE])
def test_expiry(age):
    # Too old (age > max_age) and from the future (age < 0) both fail.
    signed = theirs(at=T0).dumps({"a": 1})
    assert (load(signed, at=T0 + age) is not None) == (0 <= age <= MAX_AGE)


def test_timestamps_are_whole_seconds():
    signed = minted(middleware(T0 + 0.999))
    assert signed == minted(middleware(T0))
    assert load(signed, at=T0 + MAX_AGE + 0.999) is not None


cookie_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF).filter(lambda c: c != ";"))


@given(cookie_text)
@settings(max_examples=500)
def test_garbage_is_no_session_never_an_exception(text):
    assert load(text) is None


good_cookie = theirs().dumps(SESSION_PAYLOAD)


@given(st.integers(0, len(good_cookie) - 1), st.characters(min_codepoint=0x21, max_codepoint=0xFF))
@settings(max_examples=300)
def test_one_changed_character_never_raises(i, char):
    if char == ";":
        char = "!"
    mutated = good_cookie[:i] + char + good_cookie[i + 1 :]
    assert load(mutated) in (None, SESSION_PAYLOAD)  # base64 decoding is lenient about a few bits


@given(st.binary(max_size=40), st.binary(max_size=40))
@settings(max_examples=300)
def test_validly_signed_garbage_is_no_session_never_an_exception(payload, ts):
    # Bytes that pass the signature but are not base64 / zlib / JSON / a 64-bit timestamp: only a
    # key holder could make these, and they still must not raise.
    signer = TimestampSigner(SECRET, salt="session")
    for body in (payload, b"." + payload, base64.urlsafe_b64encode(payload).rstrip(b"=")):
        signed_part = body + b"." + base64.urlsafe_b64encode(ts).rstrip(b"=")
        value = (signed_part + b"." + signer.get_signature(signed_part)).decode("latin-1")
        if ";" not in value:
            result = load(value)
            assert result is None or isinstance(result, dict)


# the middleware's cache ------------------------------------------------------------------------


def cached(clock: Clock, **kwargs) -> SessionMiddleware:
    return SessionMiddleware(no_app, secret_key=SECRET, max_age=MAX_AGE, clock=clock, **kwargs)


def test_a_verified_cookie_is_cached_and_served_from_the_cache():
    mw = cached(Clock())
    cookie = theirs().dumps(SESSION_PAYLOAD)
    first = mw.load(scope_with(cookie))
    assert first == SESSION_PAYLOAD
    assert list(mw.verified) == [cookie]
    assert mw.verified[cookie][0] == T0  # the signed-at time
    assert mw.load(scope_with(cookie)) is first  # the same object: a dict lookup, no re-parse


def test_a_cached_cookie_expires_on_time():
    clock = Clock()
    mw = cached(clock)
    cookie = theirs().dumps({"csrf": "t", "s": None})
    assert mw.load(scope_with(cookie)) is not None
    clock.now = T0 + MAX_AGE
    assert mw.load(scope_with(cookie)) is not None and cookie in mw.verified  # still cached
    clock.now = T0 + MAX_AGE + 1
    assert mw.load(scope_with(cookie)) is None
    assert cookie not in mw.verified


def test_forged_expired_and_non_dict_cookies_are_not_cached():
    mw = cached(Clock())
    for cookie in [
        "garbage",
        theirs(secret="someone-else").dumps({"csrf": "t"}),
        theirs(at=T0 - MAX_AGE - 1).dumps({"csrf": "t"}),
        theirs().dumps(["a", "list"]),
    ]:
        assert mw.load(scope_with(cookie)) is None, cookie
    assert mw.load(scope_with(None)) is None
    assert mw.verified == {}


def test_the_cache_is_bounded_and_drops_the_oldest():
    mw = cached(Clock(), cache_size=3)
    cookies = [theirs().dumps({"csrf": str(i)}) for i in range(10)]
    for i, cookie in enumerate(cookies):
        assert mw.load(scope_with(cookie)) == {"csrf": str(i)}
        assert len(mw.verified) <= 3
    assert list(mw.verified) == cookies[-3:]
    # An evicted cookie still works: verified again.
    assert mw.load(scope_with(cookies[0])) == {"csrf": "0"}
    assert list(mw.verified) == [*cookies[-2:], cookies[0]]


def test_caches_are_per_instance():
    clock = Clock()
    a, b = cached(clock), cached(clock)
    a.load(scope_with(theirs().dumps({"csrf": "t"})))
    assert len(a.verified) == 1 and b.verified == {}


def test_cache_size_must_be_positive():
    with pytest.raises(ValueError):
        cached(Clock(), cache_size=0)
