"""The Supabase store's pure decisions, with plain values, and its single-flight helper."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

import httpx

from store.base import AuthError, RateLimited, StoreUnavailable, User
from store.supabase import SupabaseStore, parse_admin_emails, store_from_env
from store.supabase_flight import SingleFlight
from store.supabase_rules import (
    PastLastPage,
    auth_failure,
    is_admin,
    like_escape,
    needs_refresh,
    normalize_admin_emails,
    page_range,
    refresh_key,
    rest_failure,
    row_to_item,
    search_filter,
    user_from_claims,
    utc_text,
)
from tests.support.supabase_postgrest import split_logic, unquote


def like_matches(pattern: str, text: str) -> bool:
    """PostgreSQL LIKE semantics with the default backslash escape, as a reference."""
    import re

    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.fullmatch("".join(out), text, re.S) is not None


# Mostly the characters that mean something to LIKE or to PostgREST's filter syntax.
SEARCH_TEXT = st.text(st.one_of(
    st.sampled_from(list('%_\\",.()aZ ')),
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00*"),
))


@given(SEARCH_TEXT)
def test_search_filter_survives_postgrest_parsing_and_matches_literally(q: str) -> None:
    encoded = search_filter(q)
    if not q.strip():
        assert encoded is None
        return
    assert encoded is not None
    terms = split_logic(encoded)
    assert [t.split(".", 2)[:2] for t in terms] == [["name", "ilike"], ["description", "ilike"]]
    pattern = unquote(terms[0].split(".", 2)[2])
    assert pattern == unquote(terms[1].split(".", 2)[2])
    needle = q.strip()
    assert like_matches(pattern, f"before{needle}after")
    assert like_matches(pattern, needle)
    # Special characters are literal: the same text with them replaced does not match.
    swapped = "".join("Z" if ch in "%_\\" else ch for ch in needle)
    if swapped != needle:
        assert not like_matches(pattern, swapped)


def test_star_cannot_be_escaped_in_postgrest_so_it_matches_any_single_character() -> None:
    assert like_escape("a*b") == "a_b"
    assert like_escape("100%_\\") == "100\\%\\_\\\\"


def test_search_input_is_trimmed_bounded_and_nul_free() -> None:
    assert search_filter("   ") is None
    assert search_filter("\x00") is None
    encoded = search_filter("x" * 500)
    assert encoded is not None and encoded.count("x") == 2 * 200


@pytest.mark.parametrize("page,per_page,expected", [
    (1, 10, (1, 0, 9)), (3, 10, (3, 20, 29)), (0, 10, (1, 0, 9)), (-5, 20, (1, 0, 19)),
])
def test_page_range(page: int, per_page: int, expected: tuple[int, int, int]) -> None:
    assert page_range(page, per_page) == expected


def test_refresh_is_due_inside_the_margin() -> None:
    assert needs_refresh(1000, now=940, margin=60)
    assert needs_refresh(1000, now=2000, margin=60)
    assert not needs_refresh(1000, now=939, margin=60)


def test_short_lived_tokens_are_refreshed_in_their_last_quarter() -> None:
    # 20-second tokens: a 60 s margin would refresh on every request; a quarter is 5 s.
    assert not needs_refresh(1000, now=990, margin=60, lifetime=20)
    assert needs_refresh(1000, now=995, margin=60, lifetime=20)
    assert needs_refresh(1000, now=941, margin=60, lifetime=3600)  # long tokens: the margin
    assert needs_refresh(1000, now=941, margin=60, lifetime=0)  # nonsense lifetime: the margin


def test_refresh_key_hides_the_token() -> None:
    assert refresh_key("secret-token") != "secret-token"
    assert "secret" not in refresh_key("secret-token")
    assert refresh_key("a") == refresh_key("a") != refresh_key("b")


def test_admin_needs_a_confirmed_listed_address() -> None:
    admins = normalize_admin_emails(["  Boss@Example.test ", ""])
    assert admins == frozenset({"boss@example.test"})
    assert is_admin("boss@EXAMPLE.test", True, admins)
    assert not is_admin("boss@example.test", False, admins)
    assert not is_admin("other@example.test", True, admins)
    assert not is_admin(None, True, admins)


def test_user_from_claims_takes_identity_from_the_token() -> None:
    before = User(id="u1", email="a@x.test", is_admin=True)
    claims = {"sub": "u1", "email": "a@x.test", "role": "authenticated"}
    assert user_from_claims(claims, before) == before
    # A changed email has not been confirmed as far as we know: no admin until re-checked.
    assert user_from_claims({**claims, "email": "b@x.test"}, before) == User("u1", "b@x.test")
    # The cookie's user is not trusted for identity.
    assert user_from_claims({**claims, "sub": "u2"}, before) == User("u2", "a@x.test")
    assert user_from_claims({**claims, "role": "anon"}, before) is None
    assert user_from_claims({"role": "authenticated"}, before) is None


@pytest.mark.parametrize("code,status,reasons,kind,text", [
    ("invalid_credentials", 400, None, AuthError, "Invalid email or password."),
    ("email_not_confirmed", 400, None, AuthError, "confirm your email"),
    ("weak_password", 422, ["length", "pwned"], AuthError, "too short; it appears in known"),
    ("user_already_exists", 422, None, AuthError, "already exists"),
    ("over_request_rate_limit", 429, None, RateLimited, "Too many attempts"),
    ("over_email_send_rate_limit", 429, None, RateLimited, "Too many emails"),
    (None, 429, None, RateLimited, "Too many attempts"),
    ("validation_failed", 400, None, AuthError, "valid email"),
    ("unexpected_failure", 500, None, StoreUnavailable, "unavailable"),
    (None, 0, None, StoreUnavailable, "unavailable"),
    ("something_new", 400, None, AuthError, "Something went wrong"),
])
def test_auth_failures(code: str | None, status: int, reasons: list[str] | None,
                       kind: type, text: str) -> None:
    message = "Unable to validate email address: invalid format" if code == "validation_failed" \
        else "raw server message"
    error = auth_failure(code, status, message, reasons)
    assert type(error) is kind and text in str(error)
    assert "raw server message" not in str(error)


@pytest.mark.parametrize("code,kind", [
    ("42501", PermissionError), ("PGRST103", PastLastPage), ("PGRST000", StoreUnavailable),
    ("PGRST003", StoreUnavailable), ("502", StoreUnavailable), ("23514", ValueError),
    ("22P02", ValueError), ("PGRST303", AuthError), ("PGRST999", RuntimeError),
    ("404", RuntimeError),
])
def test_rest_failures(code: str, kind: type) -> None:
    assert type(rest_failure(code, "msg")) is kind


# -- SingleFlight


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def test_concurrent_callers_share_one_run_and_later_callers_get_the_memory() -> None:
    async def main() -> None:
        clock, calls, gate = Clock(), [], asyncio.Event()
        flight: SingleFlight[int] = SingleFlight(10, clock)

        async def work() -> int:
            calls.append(1)
            await gate.wait()
            return len(calls)

        waiters = [asyncio.ensure_future(flight.run("k", work)) for _ in range(20)]
        await asyncio.sleep(0)
        gate.set()
        assert await asyncio.gather(*waiters) == [1] * 20
        assert flight.remembered("k") == 1 and flight.remembered("other") is None
        clock.now = 10
        assert await flight.run("k", work) == 1  # remembered
        clock.now = 10.5
        assert await flight.run("k", work) == 2  # forgotten, run again
        assert await flight.run("other", work) == 3
        assert len(calls) == 3

    run(main())


def test_failures_reach_every_waiter_and_are_not_remembered() -> None:
    async def main() -> None:
        flight: SingleFlight[int] = SingleFlight(10, Clock())
        attempts = []

        async def failing() -> int:
            attempts.append(1)
            await asyncio.sleep(0)
            raise StoreUnavailable("down")

        results = await asyncio.gather(*(flight.run("k", failing) for _ in range(3)),
                                       return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results) and len(attempts) == 1
        assert len(flight) == 0 and flight.remembered("k") is None

        async def ok() -> int:
            return 7

        assert await flight.run("k", ok) == 7

    run(main())


def test_a_caller_going_away_does_not_cancel_the_shared_work() -> None:
    async def main() -> None:
        flight: SingleFlight[str] = SingleFlight(10, Clock())
        gate = asyncio.Event()

        async def work() -> str:
            await gate.wait()
            return "done"

        leaving = asyncio.ensure_future(flight.run("k", work))
        staying = asyncio.ensure_future(flight.run("k", work))
        await asyncio.sleep(0)
        leaving.cancel()
        gate.set()
        assert await staying == "done"
        assert leaving.cancelled()

    run(main())


def test_store_is_chosen_only_when_url_and_key_are_both_set() -> None:
    async def main() -> None:
        async with httpx.AsyncClient() as http:
            assert store_from_env({}, http) is None
            assert store_from_env({"SUPABASE_URL": "https://x.supabase.co"}, http) is None
            assert store_from_env({"SUPABASE_ANON_KEY": "k", "SUPABASE_URL": " "}, http) is None
            chosen = store_from_env({"SUPABASE_URL": "https://x.supabase.co",
                                     "SUPABASE_ANON_KEY": "k"}, http)
            assert isinstance(chosen, SupabaseStore)

    run(main())
    assert parse_admin_emails("A@x.test, b@x.test\nc@x.test,,") == frozenset(
        {"a@x.test", "b@x.test", "c@x.test"})


@pytest.mark.parametrize("given_,expected", [
    ("2026-11-27T08:54:21.73652+00:00", "2026-11-27 08:54:21.736"),
    ("2026-11-27T10:54:21+02:00", "2026-11-27 08:54:21.000"),
    ("2026-11-27T08:54:21.5Z", "2026-11-27 08:54:21.500"),
])
def test_timestamps_read_like_the_embedded_store_writes_them(given_: str, expected: str) -> None:
    assert utc_text(given_) == expected


def test_rows_become_items() -> None:
    item = row_to_item({"id": 3, "name": "n", "description": "", "quantity": 0,
                        "created_at": "2026-01-02T03:04:05+00:00",
                        "updated_at": "2026-01-02T03:04:06.25+00:00"})
    assert (item.id, item.created_at, item.updated_at) == (
        3, "2026-01-02 03:04:05.000", "2026-01-02 03:04:06.250")
