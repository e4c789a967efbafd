"""SupabaseStore end to end against the local stand-in (GoTrue + PostgREST over a real
PostgreSQL with the real migration): what one user may see is decided by PostgreSQL's RLS."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.base import AuthError, ItemInput, Session, StoreUnavailable, User
from store.supabase import SupabaseStore
from tests.support.pg import PgCluster, free_port
from tests.support.supabase_standin import SkewClock, Standin, StandinConfig, prepare_database, module_fixtures, serve_standin

pytestmark = pytest.mark.anyio
ADMIN = "boss@example.test"


pg, standin = module_fixtures(lambda: StandinConfig(clock=SkewClock()))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0)) as client:
        yield client


def make_store(standin: Standin, http: httpx.AsyncClient, **kw: object) -> SupabaseStore:
    return SupabaseStore(standin.url, standin.anon_key, http,
                         admin_emails=frozenset({ADMIN.upper()}), **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(standin: Standin, http: httpx.AsyncClient) -> SupabaseStore:
    return make_store(standin, http)


def email() -> str:
    return f"u{uuid.uuid4().hex[:12]}@example.test"


async def signed_up(store: SupabaseStore, standin: Standin, address: str | None = None,
                    password: str = "correct horse 1") -> Session:
    address = address or email()
    assert await store.sign_up(address, password) is None  # "check your email"
    token_hash = next(h for e, h in reversed(standin.state.outbox) if e == address)
    return await store.verify_email(token_hash, "email")


def thing(name: str, description: str = "", quantity: int = 1) -> ItemInput:
    return ItemInput(name=name, description=description, quantity=quantity)


# -- the whole journey


async def test_sign_up_verify_log_in_crud_and_other_users_see_nothing(
    store: SupabaseStore, standin: Standin
) -> None:
    address = email()
    assert await store.sign_up(address, "correct horse 1") is None
    with pytest.raises(AuthError, match="confirm your email"):
        await store.log_in(address, "correct horse 1")
    token_hash = next(h for e, h in standin.state.outbox if e == address)
    confirmed = await store.verify_email(token_hash, "email")
    assert confirmed.user.email == address and not confirmed.user.is_admin

    alice = await store.log_in(address, "correct horse 1")
    assert alice.user == confirmed.user
    assert set(alice.tokens) == {"access_token", "refresh_token", "expires_at", "expires_in"}

    first = await store.create_item(alice, thing("apples", "green ones", 3))
    second = await store.create_item(alice, thing("pears"))
    assert (first.name, first.description, first.quantity) == ("apples", "green ones", 3)
    page = await store.list_items(alice, "", 1, 10)
    assert [i.id for i in page.items] == [second.id, first.id] and page.total == 2
    assert await store.get_item(alice, first.id) == first

    updated = await store.update_item(alice, first.id, thing("apples", "red now", 5))
    assert updated is not None and updated.quantity == 5 and updated.id == first.id
    assert updated.updated_at >= first.updated_at and updated.created_at == first.created_at

    bob = await signed_up(store, standin)
    assert (await store.list_items(bob, "", 1, 10)).total == 0
    assert (await store.list_items(bob, "apples", 1, 10)).items == []
    assert await store.get_item(bob, first.id) is None
    assert await store.update_item(bob, first.id, thing("stolen")) is None
    assert await store.delete_item(bob, first.id) is False

    assert await store.get_item(alice, first.id) == updated  # untouched by Bob
    assert await store.delete_item(alice, second.id) is True
    assert await store.delete_item(alice, second.id) is False
    assert (await store.list_items(alice, "", 1, 10)).total == 1


async def test_admin_needs_a_confirmed_admin_address(store: SupabaseStore,
                                                     standin: Standin) -> None:
    boss = await signed_up(store, standin, ADMIN)
    assert boss.user.is_admin
    assert (await store.resume(boss)) is boss  # nothing changed, same object: no cookie rewrite
    regular = await signed_up(store, standin)
    assert not regular.user.is_admin


# -- search and paging


async def test_search_treats_wildcards_and_filter_syntax_literally(
    store: SupabaseStore, standin: Standin
) -> None:
    s = await signed_up(store, standin)
    names = ["100% pure", "a_b", "axb", "x,y (z).w", 'say "q"', "back\\slash", "plain"]
    for n in names:
        await store.create_item(s, thing(n))
    await store.create_item(s, thing("other", description="described AXB"))

    async def found(q: str) -> list[str]:
        return sorted(i.name for i in (await store.list_items(s, q, 1, 50)).items)

    assert await found("%") == ["100% pure"]
    assert await found("_") == ["a_b"]
    assert await found("AXB") == ["axb", "other"]
    assert await found(",y (z).") == ["x,y (z).w"]
    assert await found('"q"') == ['say "q"']
    assert await found("\\") == ["back\\slash"]
    assert await found("  plain  ") == ["plain"]
    assert len(await found("")) == len(names) + 1


@pytest.fixture(scope="module")
def search_user() -> dict[str, Session]:
    return {}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="*"),
                 min_size=1, max_size=6))
async def test_search_matches_exactly_the_rows_containing_the_text(
    store: SupabaseStore, standin: Standin, search_user: dict[str, Session], q: str
) -> None:
    # One user across examples (signing up each time is the slow part), so earlier examples'
    # rows are there too: every hit must contain the text, and every new row containing it
    # must be a hit.
    if "s" not in search_user:
        search_user["s"] = await signed_up(store, standin)
    s = search_user["s"]
    names = [f"pre{q}post", "unrelated", q.upper() + "!", "%_\\,()\"."]
    made = {(await store.create_item(s, thing(n))).id: n for n in names}
    page = await store.list_items(s, q, 1, 1000)
    needle = q.strip().lower()
    assert all(needle in i.name.lower() for i in page.items)
    hits = {i.id for i in page.items}
    assert {i for i, n in made.items() if needle in n.lower()} == hits & made.keys()


async def test_pages_count_exactly_and_past_the_end_is_empty(store: SupabaseStore,
                                                             standin: Standin) -> None:
    s = await signed_up(store, standin)
    made = [await store.create_item(s, thing(f"n{i}")) for i in range(23)]
    newest_first = [i.id for i in reversed(made)]
    p1, p3 = await store.list_items(s, "", 1, 10), await store.list_items(s, "", 3, 10)
    assert [i.id for i in p1.items] == newest_first[:10] and p1.total == 23 and p1.pages == 3
    assert [i.id for i in p3.items] == newest_first[20:]
    past = await store.list_items(s, "", 7, 10)
    assert past.items == [] and past.total == 23
    assert (await store.list_items(s, "", 0, 10)).page == 1


async def test_bulk_import_is_all_or_nothing(store: SupabaseStore, standin: Standin) -> None:
    s = await signed_up(store, standin)
    seen: list[int] = []
    rows = [thing(f"bulk {n}", "imported", n) for n in range(300)]
    assert await store.create_items(s, rows, seen.append) == 300
    assert seen == [300]
    page = await store.list_items(s, "bulk", 1, 5)
    assert page.total == 300 and page.items[0].name == "bulk 299"
    broken = [thing("fine"), thing("x" * 201), thing("also fine")]
    with pytest.raises(ValueError):
        await store.create_items(s, broken)
    assert (await store.list_items(s, "fine", 1, 5)).total == 0
    assert await store.create_items(s, []) == 0
    other = await signed_up(store, standin)
    assert (await store.list_items(other, "bulk", 1, 5)).total == 0


# -- auth errors


async def test_auth_errors_are_clear(store: SupabaseStore, standin: Standin) -> None:
    with pytest.raises(AuthError, match="too short"):
        await store.sign_up(email(), "ab1")
    with pytest.raises(AuthError, match="mix of character"):
        await store.sign_up(email(), "onlyletters")
    with pytest.raises(AuthError, match="valid email"):
        await store.sign_up("not-an-address", "correct horse 1")

    s = await signed_up(store, standin)
    wrong_password = unknown_user = None
    try:
        await store.log_in(s.user.email, "wrong password 1")
    except AuthError as e:
        wrong_password = str(e)
    try:
        await store.log_in(email(), "correct horse 1")
    except AuthError as e:
        unknown_user = str(e)
    assert wrong_password == unknown_user == "Invalid email or password."
    # An existing address signs up "successfully" again: nothing reveals it is registered.
    assert await store.sign_up(s.user.email, "correct horse 1") is None

    standin.state.rate_limited = True
    try:
        with pytest.raises(AuthError, match="Too many"):
            await store.log_in(s.user.email, "correct horse 1")
        with pytest.raises(AuthError, match="Too many emails"):
            await store.sign_up(email(), "correct horse 1")
    finally:
        standin.state.rate_limited = False

    with pytest.raises(AuthError, match="invalid or has expired"):
        await store.verify_email("0" * 56, "email")
    with pytest.raises(AuthError, match="invalid or has expired"):
        await store.verify_email("whatever", "recovery")  # not a flow this app offers


async def test_user_exists_when_the_project_autoconfirms(store: SupabaseStore,
                                                         standin: Standin) -> None:
    standin.config.autoconfirm = True
    try:
        address = email()
        session = await store.sign_up(address, "correct horse 1")
        assert session is not None and session.user.email == address
        # Answered like a new address needing confirmation: nothing says it is registered.
        assert await store.sign_up(address, "correct horse 1") is None
    finally:
        standin.config.autoconfirm = False


async def test_unreachable_supabase_is_store_unavailable(http: httpx.AsyncClient,
                                                         standin: Standin) -> None:
    gone = SupabaseStore(f"http://127.0.0.1:{free_port()}", standin.anon_key, http)
    good = await signed_up(make_store(standin, http), standin)
    with pytest.raises(StoreUnavailable):
        await gone.log_in("a@example.test", "correct horse 1")
    with pytest.raises(StoreUnavailable):
        await gone.sign_up("a@example.test", "correct horse 1")
    with pytest.raises(StoreUnavailable):
        await gone.resume(good)  # JWKS cannot be fetched
    with pytest.raises(StoreUnavailable):
        await gone.list_items(good, "", 1, 10)
    with pytest.raises(StoreUnavailable):
        await gone.create_item(good, thing("x"))


# -- sessions


def forged(token: str, claims: dict | None = None, key: ec.EllipticCurvePrivateKey | None = None
           ) -> str:
    header = jwt.get_unverified_header(token)
    payload = jwt.decode(token, options={"verify_signature": False}) | (claims or {})
    return jwt.encode(payload, key or ec.generate_private_key(ec.SECP256R1()),
                      algorithm="ES256", headers={"kid": header["kid"]})


async def test_resume_trusts_only_a_verified_token(store: SupabaseStore,
                                                   standin: Standin) -> None:
    s = await signed_up(store, standin)
    victim = await signed_up(store, standin)
    assert await store.resume(s) is s

    def with_access(token: str) -> Session:
        return Session(user=s.user, tokens={**s.tokens, "access_token": token})

    # Someone else's id in a token signed with a key that is not in the JWKS.
    assert await store.resume(with_access(forged(s.tokens["access_token"],
                                                 {"sub": victim.user.id}))) is None
    head, body, sig = s.tokens["access_token"].split(".")
    assert await store.resume(with_access(f"{head}.{body}.{sig[::-1]}")) is None
    assert await store.resume(with_access("not a jwt")) is None
    assert await store.resume(Session(user=s.user, tokens={})) is None
    # The cookie's user is not believed: identity comes from the token.
    claimed = Session(user=User(id=victim.user.id, email=victim.user.email, is_admin=True),
                      tokens=s.tokens)
    assert (await store.resume(claimed)).user == s.user  # type: ignore[union-attr]
    # Items see the token's user too.
    mine = await store.create_item(s, thing("mine"))
    assert await store.get_item(victim, mine.id) is None


async def test_refresh_after_expiry_keeps_working(store: SupabaseStore, standin: Standin) -> None:
    clock = standin.config.clock
    assert isinstance(clock, SkewClock)
    clock.offset = -2 * standin.config.access_ttl  # tokens issued already expired
    try:
        s = await signed_up(store, standin)
    finally:
        clock.offset = 0
    assert int(s.tokens["expires_at"]) < time.time()
    before = standin.state.refresh_grants
    renewed = await store.resume(s)
    assert renewed is not None and renewed != s and renewed.user == s.user
    assert renewed.tokens["refresh_token"] != s.tokens["refresh_token"]
    assert standin.state.refresh_grants == before + 1
    item = await store.create_item(renewed, thing("after refresh"))
    assert await store.get_item(renewed, item.id) == item
    assert await store.resume(renewed) is renewed


async def test_expired_jwt_at_postgrest_is_refreshed_and_retried_once(
    store: SupabaseStore, standin: Standin
) -> None:
    clock = standin.config.clock
    assert isinstance(clock, SkewClock)
    clock.offset = -2 * standin.config.access_ttl
    try:
        s = await signed_up(store, standin)
    finally:
        clock.offset = 0
    # The cookie believes the token is good for an hour (clock skew); PostgREST says expired.
    skewed = Session(user=s.user, tokens={**s.tokens, "expires_at": str(int(time.time()) + 3600)})
    before = standin.state.refresh_grants
    made = await store.create_item(skewed, thing("retried"))
    assert standin.state.refresh_grants == before + 1
    assert (await store.list_items(skewed, "retried", 1, 10)).items == [made]  # remembered
    assert standin.state.refresh_grants == before + 1
    # The next request's resume hands over the refreshed session, so the cookie catches up.
    caught_up = await store.resume(skewed)
    assert caught_up is not None and caught_up.tokens["access_token"] != s.tokens["access_token"]
    assert await store.resume(caught_up) is caught_up
    assert standin.state.refresh_grants == before + 1


async def signed_up_expiring_in(seconds: int, store: SupabaseStore,
                                 standin: Standin) -> Session:
    clock = standin.config.clock
    assert isinstance(clock, SkewClock)
    clock.offset = seconds - standin.config.access_ttl
    try:
        return await signed_up(store, standin)
    finally:
        clock.offset = 0


async def test_short_lived_tokens_are_not_refreshed_on_every_request(store: SupabaseStore,
                                                                     standin: Standin) -> None:
    ttl, standin.config.access_ttl = standin.config.access_ttl, 40  # shorter than the 60 s margin
    try:
        s = await signed_up(store, standin)
    finally:
        standin.config.access_ttl = ttl
    assert s.tokens["expires_in"] == "40"
    before = standin.state.refresh_grants
    assert await store.resume(s) is s  # 40 s left of 40: nothing to refresh yet
    assert standin.state.refresh_grants == before
    # Within its last quarter (10 s) it is refreshed.
    due = Session(user=s.user, tokens={**s.tokens, "expires_at": str(int(time.time()) + 8)})
    renewed = await store.resume(due)
    assert renewed is not None and renewed.tokens["refresh_token"] != s.tokens["refresh_token"]
    assert standin.state.refresh_grants == before + 1


async def test_concurrent_resumes_refresh_exactly_once(store: SupabaseStore,
                                                       standin: Standin) -> None:
    s = await signed_up_expiring_in(30, store, standin)  # inside the 60 s refresh margin
    assert 0 < int(s.tokens["expires_at"]) - time.time() <= 30
    before = standin.state.refresh_grants
    results: list[Session | None] = []

    async def resume() -> None:
        results.append(await store.resume(s))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(resume)
    assert standin.state.refresh_grants == before + 1
    assert len(results) == 20 and results[0] is not None
    assert all(r == results[0] for r in results)
    assert results[0].tokens["refresh_token"] != s.tokens["refresh_token"]
    # Within the memory window the old cookie still maps to the same new session.
    assert await store.resume(s) == results[0]
    assert standin.state.refresh_grants == before + 1
    # The new token is good for an hour: resuming it changes nothing.
    assert await store.resume(results[0]) is results[0]


def due_now(s: Session) -> Session:
    """The same session, its cookie saying the access token has expired: resume() refreshes."""
    return Session(user=s.user, tokens={**s.tokens, "expires_at": "0"})


async def test_reusing_a_rotated_refresh_token_late_revokes_the_session(
    standin: Standin, http: httpx.AsyncClient
) -> None:
    now = [0.0]
    store = make_store(standin, http, monotonic=lambda: now[0])
    s = await signed_up_expiring_in(30, store, standin)
    renewed = await store.resume(s)
    assert renewed is not None and renewed != s
    now[0] += 11  # the adapter forgets the old token's result...
    standin.config.reuse_interval = 0  # ...and GoTrue's reuse grace period is over
    try:
        assert await store.resume(s) is None  # theft signal: the session family is revoked
        assert await store.resume(due_now(renewed)) is None
    finally:
        standin.config.reuse_interval = 10.0


async def test_log_out_revokes_the_session(standin: Standin, http: httpx.AsyncClient) -> None:
    store = make_store(standin, http)
    s = await signed_up(store, standin)
    await store.log_out(s)
    assert await store.resume(due_now(s)) is None
    response = await http.get(f"{standin.url}/auth/v1/user", headers={
        "apikey": standin.anon_key, "Authorization": f"Bearer {s.tokens['access_token']}"})
    assert response.status_code == 403
    await store.log_out(s)  # twice is fine


async def test_log_out_is_local_and_log_out_everywhere_is_global(
    standin: Standin, http: httpx.AsyncClient
) -> None:
    store = make_store(standin, http)
    laptop = await signed_up(store, standin)
    phone = await store.log_in(laptop.user.email, "correct horse 1")
    tablet = await store.log_in(laptop.user.email, "correct horse 1")
    someone_else = await signed_up(store, standin)
    await store.log_out(tablet)  # GoTrue /logout?scope=local: this device only
    assert await store.resume(due_now(tablet)) is None
    phone = await store.resume(due_now(phone))  # refreshed: still signed in
    assert phone is not None
    await store.log_out_everywhere(laptop)  # /logout?scope=global
    assert await store.resume(due_now(laptop)) is None
    assert await store.resume(due_now(phone)) is None  # its refresh token is revoked too
    # What docs/deploy.md warns about: an access token that has not expired yet still verifies
    # (JWTs are checked locally) until its expiry, the JWT expiry set in Supabase.
    assert await store.resume(phone) is not None
    assert await store.resume(due_now(someone_else)) is not None


# -- many users, one process


async def test_two_users_concurrently_never_see_each_others_items(
    store: SupabaseStore, standin: Standin, http: httpx.AsyncClient
) -> None:
    users = [await signed_up(store, standin) for _ in range(2)]
    seen: dict[str, set[str]] = {u.user.id: set() for u in users}

    async def work(s: Session, n: int) -> None:
        await store.create_item(s, thing(f"{s.user.id}:{n}"))
        for item in (await store.list_items(s, "", 1, 100)).items:
            seen[s.user.id].add(item.name)

    async with anyio.create_task_group() as tg:
        for n in range(15):
            for u in users:
                tg.start_soon(work, u, n)
    for u in users:
        assert seen[u.user.id] and all(name.startswith(u.user.id) for name in seen[u.user.id])
        assert (await store.list_items(u, "", 1, 100)).total == 15
    # The shared client holds nothing of theirs, and the long-lived verifier never signed in.
    assert "authorization" not in http.headers and len(http.cookies) == 0
    assert await store._verifier.get_session() is None


def test_the_standin_postgrest_leaves_ownership_to_postgresql() -> None:
    import inspect

    from tests.support import supabase_postgrest, supabase_standin

    postgrest_side = inspect.getsource(supabase_postgrest.parse_query) + inspect.getsource(
        supabase_standin.Standin.items) + inspect.getsource(supabase_postgrest.Query)
    assert "user_id" not in postgrest_side and "\"sub\"" not in postgrest_side


# -- RLS decides, and PostgREST errors map


async def test_without_rls_the_isolation_check_fails_and_denials_map_to_permission_error(
    pg: PgCluster, http: httpx.AsyncClient
) -> None:
    pg_db = f"broken_{uuid.uuid4().hex[:8]}"  # a throwaway database: nothing to restore
    prepare_database(pg, pg_db)
    with serve_standin(pg, pg_db) as other:
        store = make_store(other, http)
        alice, bob = await signed_up(store, other), await signed_up(store, other)
        a = await store.create_item(alice, thing("alice's"))
        assert await store.get_item(bob, a.id) is None
        pg.psql("alter table public.items disable row level security", db=pg_db)
        assert await store.get_item(bob, a.id) == a  # the isolation test now fails
        pg.psql("revoke insert on public.items from authenticated", db=pg_db)
        with pytest.raises(PermissionError):
            await store.create_item(bob, thing("denied"))
        with pytest.raises(ValueError):
            await store.update_item(alice, a.id, thing("x" * 201))
