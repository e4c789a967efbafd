"""middleware/signed_cookie.py against the real itsdangerous, and SessionMiddleware's cache."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from middleware.session import SessionMiddleware
from middleware.signed_cookie import SignedSerializer, fresh

SECRET = "test-secret-key"
T0 = 1_750_000_000
MAX_AGE = 3600


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def theirs(at: int = T0, secret: str = SECRET) -> URLSafeTimedSerializer:
    """itsdangerous' serializer, signing as if the time were `at`."""

    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return at

    return URLSafeTimedSerializer(secret, salt="session", signer=Signer)


def ours(at: float = T0, secret: str = SECRET) -> SignedSerializer:
    return SignedSerializer(secret, salt="session", clock=Clock(at))


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
    ["not", "a", "dict"],
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


# compatibility ---------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_ours_is_byte_for_byte_what_itsdangerous_signs(payload):
    assert ours().dumps(payload) == theirs().dumps(payload)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_any_json_payload_signs_identically_and_loads_both_ways(payload):
    mine = ours().dumps(payload)
    assert mine == theirs().dumps(payload)
    assert theirs().loads(mine, max_age=MAX_AGE) == payload
    assert ours().loads(theirs().dumps(payload), MAX_AGE) == payload


@pytest.mark.parametrize("payload", PAYLOADS)
def test_itsdangerous_reads_what_we_sign(payload):
    # Their own clock is real time: sign "now" so their max_age check passes.
    import time

    assert URLSafeTimedSerializer(SECRET, salt="session").loads(
        ours(time.time()).dumps(payload), max_age=MAX_AGE
    ) == payload


@pytest.mark.parametrize("payload", PAYLOADS)
def test_we_read_what_itsdangerous_signs(payload):
    assert ours(T0 + 10).loads(theirs().dumps(payload), MAX_AGE) == payload


def test_compressed_long_payload_both_ways():
    payload = {"csrf": "t", "s": {"blob": "abc" * 500, "list": list(range(50))}}
    signed = theirs().dumps(payload)
    assert signed.startswith(".")  # zlib-compressed: the leading-dot form
    assert len(signed) < 500
    assert ours().loads(signed, MAX_AGE) == payload
    assert ours().dumps(payload) == signed


def test_timestamp_is_returned_with_the_payload():
    assert ours().unsign(theirs(at=T0 - 77).dumps({"a": 1})) == (T0 - 77, {"a": 1})


# rejection -------------------------------------------------------------------------------------


def _flip(text: str, i: int) -> str:
    return text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]


def test_tampering_with_any_part_is_refused():
    good = theirs().dumps(SESSION_PAYLOAD)
    body, ts, sig = good.rsplit(".", 2)
    assert ours().loads(good, MAX_AGE) == SESSION_PAYLOAD  # the control
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
    ]:
        assert ours().unsign(bad) is None, bad
        assert ours().loads(bad, MAX_AGE) is None, bad


def test_other_secret_or_salt_is_refused():
    assert ours().loads(theirs(secret="someone-else").dumps({"a": 1}), MAX_AGE) is None
    assert ours(secret="someone-else").loads(ours().dumps({"a": 1}), MAX_AGE) is None
    other_salt = SignedSerializer(SECRET, salt="not-session", clock=Clock())
    assert other_salt.loads(ours().dumps({"a": 1}), MAX_AGE) is None


@pytest.mark.parametrize("age", [-5, -1, 0, 1, MAX_AGE - 1, MAX_AGE, MAX_AGE + 1, 10 * MAX_AGE])
def test_expiry_matches_itsdangerous(age):
    signed = theirs(at=T0).dumps({"a": 1})

    class Now(TimestampSigner):
        def get_timestamp(self) -> int:
            return T0 + age

    try:
        URLSafeTimedSerializer(SECRET, salt="session", signer=Now).loads(signed, max_age=MAX_AGE)
        they_accept = True
    except BadSignature:
        they_accept = False
    assert they_accept == (0 <= age <= MAX_AGE)
    assert (ours(T0 + age).loads(signed, MAX_AGE) is not None) == they_accept
    assert fresh(T0, T0 + age, MAX_AGE) == they_accept


def test_fractional_clock_is_whole_seconds_like_itsdangerous():
    signed = ours(T0 + 0.999).dumps({"a": 1})
    assert ours().unsign(signed) == (T0, {"a": 1})
    assert ours(T0 + MAX_AGE + 0.999).loads(signed, MAX_AGE) == {"a": 1}


@given(st.text())
@settings(max_examples=500)
def test_garbage_is_none_never_an_exception(text):
    assert ours().loads(text, MAX_AGE) is None


good_cookie = theirs().dumps(SESSION_PAYLOAD)


@given(st.integers(0, len(good_cookie) - 1), st.characters())
@settings(max_examples=500)
def test_we_never_accept_what_itsdangerous_refuses(i, char):
    # One character replaced anywhere: we may be stricter than itsdangerous (canonical base64
    # signatures only), never looser, and we never raise.
    mutated = good_cookie[:i] + char + good_cookie[i + 1 :]
    mine = ours().loads(mutated, MAX_AGE)
    if mine is not None:
        assert theirs().loads(mutated, max_age=None) == mine


@given(st.binary(max_size=40), st.binary(max_size=40))
@settings(max_examples=300)
def test_validly_signed_garbage_is_none_never_an_exception(payload, ts):
    # Bytes that pass the signature but are not base64 / zlib / JSON / a 64-bit timestamp: only a
    # key holder could make these, and they still must not raise.
    import base64

    signer = TimestampSigner(SECRET, salt="session")
    for body in (payload, b"." + payload, base64.urlsafe_b64encode(payload).rstrip(b"=")):
        signed_part = body + b"." + base64.urlsafe_b64encode(ts).rstrip(b"=")
        value = (signed_part + b"." + signer.get_signature(signed_part)).decode("latin-1")
        result = ours().unsign(value)
        assert result is None or isinstance(result[0], int)


def test_a_timestamp_wider_than_64_bits_is_refused_like_itsdangerous():
    import base64

    signer = TimestampSigner(SECRET, salt="session")
    body = base64.urlsafe_b64encode(b'{"a":1}').rstrip(b"=")
    for width, ok in [(8, True), (9, False)]:
        ts = base64.urlsafe_b64encode(T0.to_bytes(width, "big")).rstrip(b"=")
        signed_part = body + b"." + ts
        value = (signed_part + b"." + signer.get_signature(signed_part)).decode()
        assert (ours().unsign(value) is not None) == ok
        try:
            theirs().loads(value)
            they_accept = True
        except BadSignature:
            they_accept = False
        assert they_accept == ok


# the middleware's cache ------------------------------------------------------------------------


def scope_with(cookie: str | None) -> dict:
    headers = [(b"cookie", f"theme=dark; session={cookie}".encode())] if cookie else []
    return {"type": "http", "headers": headers}


async def no_app(scope, receive, send):
    raise AssertionError("not called")


def middleware(clock: Clock, **kwargs) -> SessionMiddleware:
    return SessionMiddleware(no_app, secret_key=SECRET, max_age=MAX_AGE, clock=clock, **kwargs)


def test_a_verified_cookie_is_cached_and_served_from_the_cache():
    clock = Clock()
    mw = middleware(clock)
    cookie = theirs().dumps(SESSION_PAYLOAD)
    first = mw.load(scope_with(cookie))
    assert first == SESSION_PAYLOAD
    assert list(mw.verified) == [cookie]
    assert mw.load(scope_with(cookie)) is first  # the same object: a dict lookup, no re-parse


def test_a_cached_cookie_expires_on_time():
    clock = Clock()
    mw = middleware(clock)
    cookie = theirs().dumps({"csrf": "t", "s": None})
    assert mw.load(scope_with(cookie)) is not None
    clock.now = T0 + MAX_AGE
    assert mw.load(scope_with(cookie)) is not None and cookie in mw.verified  # still cached
    clock.now = T0 + MAX_AGE + 1
    assert mw.load(scope_with(cookie)) is None
    assert cookie not in mw.verified


def test_forged_expired_and_non_dict_cookies_are_not_cached():
    clock = Clock()
    mw = middleware(clock)
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
    clock = Clock()
    mw = middleware(clock, cache_size=3)
    cookies = [theirs().dumps({"csrf": str(i)}) for i in range(10)]
    for i, cookie in enumerate(cookies):
        assert mw.load(scope_with(cookie)) == {"csrf": str(i)}
        assert len(mw.verified) <= 3
    assert list(mw.verified) == cookies[-3:]
    # An evicted cookie still works: verified again, at the cost of one HMAC.
    assert mw.load(scope_with(cookies[0])) == {"csrf": "0"}
    assert list(mw.verified) == [*cookies[-2:], cookies[0]]


def test_caches_are_per_instance():
    clock = Clock()
    a, b = middleware(clock), middleware(clock)
    a.load(scope_with(theirs().dumps({"csrf": "t"})))
    assert len(a.verified) == 1 and b.verified == {}


def test_cache_size_must_be_positive():
    with pytest.raises(ValueError):
        middleware(Clock(), cache_size=0)
