"""The production Store over Supabase (GoTrue for auth, PostgREST for items).

Safe for many users in one process:
- One httpx.AsyncClient, owned by the app's lifespan (timeouts are set there), is shared by
  every call. It never carries a user's token: each request's token goes in that request's
  headers only.
- Nothing long-lived ever signs a user in. supabase-py clients remember the session they signed
  in (supabase-py #828, #806, #1095: a shared client leaks one user's session to the next), so
  sign-in, sign-up, verification and refresh each use a fresh GoTrue client that is dropped
  right after. The one long-lived GoTrue client only verifies tokens it is handed
  (get_claims(jwt), with its JWKS cache) and never holds a session.
- Items go through a PostgREST client built per call around the user's access token, so
  PostgreSQL's row level security runs as that user. The adapter never filters by owner.

Why the lower-level clients (postgrest.AsyncPostgrestClient, supabase_auth.AsyncGoTrueClient)
rather than supabase.acreate_client: the umbrella AsyncClient adds a realtime client and an
auth-state listener per instance (it spawns a background task on every sign-in), both useless
for a per-request client; the pieces it composes accept the shared http_client directly. Never
call close() on them: GoTrue's close() would close the shared httpx client.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import httpx
from postgrest import APIError, AsyncPostgrestClient
from postgrest.types import CountMethod, ReturnMethod
from supabase_auth import AsyncGoTrueClient
from supabase_auth.errors import (
    AuthApiError,
    AuthError as GoTrueError,
    AuthInvalidJwtError,
    AuthRetryableError,
    AuthUnknownError,
    AuthWeakPasswordError,
)
from supabase_auth.types import Session as GoTrueSession
from supabase_auth.types import User as GoTrueUser

from store.base import AuthError, Item, ItemInput, ItemPage, Session, StoreUnavailable, User
from store.supabase_flight import SingleFlight
from store.supabase_rules import (
    EXPIRED_JWT_CODES,
    ITEM_COLUMNS,
    PastLastPage,
    auth_failure,
    is_admin,
    needs_refresh,
    normalize_admin_emails,
    page_range,
    refresh_key,
    rest_failure,
    row_to_item,
    search_filter,
    user_from_claims,
)

T = TypeVar("T")

UNAVAILABLE = "The service is unavailable. Please try again soon."
CONFIRM_TYPES = frozenset({"signup", "email"})
# GoTrue's answer to a sign-up for a registered address when confirmations are off.
EXISTING_ACCOUNT_CODES = frozenset({"user_already_exists", "email_exists"})


def _map_gotrue(error: GoTrueError) -> Exception:
    if isinstance(error, AuthRetryableError | AuthUnknownError):
        return StoreUnavailable(UNAVAILABLE)
    reasons = error.reasons if isinstance(error, AuthWeakPasswordError) else None
    status = getattr(error, "status", 400)
    return auth_failure(error.code, status, error.message, reasons)


def parse_admin_emails(raw: str) -> frozenset[str]:
    """ADMIN_EMAILS as written in the environment: comma or whitespace separated."""
    return normalize_admin_emails(raw.replace(",", " ").split())


def store_from_env(env: Mapping[str, str], http: httpx.AsyncClient) -> SupabaseStore | None:
    """The Supabase store when SUPABASE_URL and SUPABASE_ANON_KEY are both set, else None
    (the app then uses its embedded default)."""
    url, key = env.get("SUPABASE_URL", "").strip(), env.get("SUPABASE_ANON_KEY", "").strip()
    if not (url and key):
        return None
    return SupabaseStore(url, key, http,
                         admin_emails=parse_admin_emails(env.get("ADMIN_EMAILS", "")))


class SupabaseStore:
    def __init__(
        self,
        url: str,
        anon_key: str,
        http: httpx.AsyncClient,
        *,
        admin_emails: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        refresh_margin: float = 60.0,
        refresh_memory: float = 10.0,
    ) -> None:
        base = url.rstrip("/")
        self._auth_url = f"{base}/auth/v1"
        self._rest_url = f"{base}/rest/v1"
        self._anon_key = anon_key
        self._http = http
        self._admin_emails = normalize_admin_emails(admin_emails)
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._flights: SingleFlight[Session | None] = SingleFlight(refresh_memory, monotonic)
        # Verification only (get_claims with an explicit token): holds a JWKS cache, no session.
        self._verifier = self._gotrue()

    # -- clients

    def _gotrue(self) -> AsyncGoTrueClient:
        return AsyncGoTrueClient(
            url=self._auth_url,
            headers={"apikey": self._anon_key, "Authorization": f"Bearer {self._anon_key}"},
            http_client=self._http,
            auto_refresh_token=False,
            persist_session=False,
            flow_type="implicit",
        )

    def _items(self, access_token: str) -> Any:
        client = AsyncPostgrestClient(
            self._rest_url,
            headers={"apikey": self._anon_key, "Authorization": f"Bearer {access_token}"},
            http_client=self._http,
            # Fail fast into a friendly 503 instead of sleeping through retries mid-request.
            retry_enabled=False,
        )
        return client.from_("items")

    async def _auth_call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except GoTrueError as e:
            raise _map_gotrue(e) from None
        except httpx.HTTPError as e:
            raise StoreUnavailable(UNAVAILABLE) from e

    def _session(self, s: GoTrueSession) -> Session:
        return Session(
            user=self._user(s.user),
            tokens={
                "access_token": s.access_token,
                "refresh_token": s.refresh_token,
                "expires_at": str(s.expires_at or int(self._clock()) + s.expires_in),
                "expires_in": str(s.expires_in),
            },
        )

    def _user(self, u: GoTrueUser) -> User:
        confirmed = u.email_confirmed_at is not None
        return User(id=u.id, email=u.email or "",
                    is_admin=is_admin(u.email, confirmed, self._admin_emails))

    # -- auth

    async def sign_up(self, email: str, password: str) -> Session | None:
        """None when Supabase wants the email confirmed first (its default): show "check your
        email". For an address that already has an account Supabase answers the same way, so
        the page does not reveal who is registered. A project with confirmations off says
        "already registered" instead; that too becomes None, the same "check your email"."""
        try:
            response = await self._gotrue().sign_up({"email": email, "password": password})
        except GoTrueError as e:
            if getattr(e, "code", None) in EXISTING_ACCOUNT_CODES:
                return None
            raise _map_gotrue(e) from None
        except httpx.HTTPError as e:
            raise StoreUnavailable(UNAVAILABLE) from e
        return self._session(response.session) if response.session else None

    async def verify_email(self, token_hash: str, type: str) -> Session:
        """For /auth/confirm?token_hash=...&type=...: confirm the address and sign in."""
        if type not in CONFIRM_TYPES or not token_hash:
            raise AuthError("This confirmation link is invalid or has expired.")
        response = await self._auth_call(
            self._gotrue().verify_otp({"token_hash": token_hash, "type": type}))  # type: ignore[arg-type, typeddict-item]
        if response.session is None:
            raise AuthError("This confirmation link is invalid or has expired.")
        return self._session(response.session)

    async def log_in(self, email: str, password: str) -> Session:
        response = await self._auth_call(
            self._gotrue().sign_in_with_password({"email": email, "password": password}))
        if response.session is None:
            raise AuthError("Invalid email or password.")
        return self._session(response.session)

    async def resume(self, session: Session) -> Session | None:
        access = session.tokens.get("access_token", "")
        refresh = session.tokens.get("refresh_token", "")
        try:
            expires_at = int(session.tokens.get("expires_at", "0"))
            lifetime = int(session.tokens["expires_in"]) if "expires_in" in session.tokens else None
        except ValueError:
            return None
        if not access or not refresh:
            return None
        # Refreshed moments ago (by a concurrent request, or by an item call whose JWT had
        # expired): hand over that result so this response's cookie carries the new tokens.
        if (recent := self._flights.remembered(refresh_key(refresh))) is not None:
            return recent
        if needs_refresh(expires_at, self._clock(), self._refresh_margin, lifetime):
            return await self._refresh(refresh)
        try:
            claims = await self._verifier.get_claims(jwt=access)
        except AuthInvalidJwtError as e:
            # Expired despite the cookie's clock (skew): refreshing may still save the session.
            return await self._refresh(refresh) if "expired" in e.message else None
        except GoTrueError as e:
            return self._signed_out_unless_unavailable(e)
        except httpx.HTTPError as e:
            raise StoreUnavailable(UNAVAILABLE) from e
        user = user_from_claims(dict(claims["claims"]) if claims else {}, session.user)
        if user is None:
            return None
        return session if user == session.user else Session(user=user, tokens=session.tokens)

    async def _refresh(self, refresh_token: str) -> Session | None:
        return await self._flights.run(refresh_key(refresh_token),
                                       lambda: self._refresh_now(refresh_token))

    async def _refresh_now(self, refresh_token: str) -> Session | None:
        try:
            response = await self._gotrue().refresh_session(refresh_token)
        except GoTrueError as e:
            # Revoked, reused or unknown refresh token: signed out. An outage is not.
            return self._signed_out_unless_unavailable(e)
        except httpx.HTTPError as e:
            raise StoreUnavailable(UNAVAILABLE) from e
        return self._session(response.session) if response.session else None

    @staticmethod
    def _signed_out_unless_unavailable(error: GoTrueError) -> None:
        mapped = _map_gotrue(error)
        if isinstance(mapped, StoreUnavailable):
            raise mapped from None
        return None

    async def log_out(self, session: Session) -> None:
        """Revokes this session's refresh tokens (GoTrue /logout?scope=local: the user's other
        devices stay signed in). A copied cookie still passes until its access token expires
        (the JWT expiry; docs/deploy.md). Raises StoreUnavailable when Supabase cannot be
        reached; clear the cookie anyway."""
        await self._sign_out(session, "local")

    async def log_out_everywhere(self, session: Session) -> None:
        """Revokes every session of the user (GoTrue /logout?scope=global)."""
        await self._sign_out(session, "global")

    async def _sign_out(self, session: Session, scope: Literal["local", "global"]) -> None:
        current = await self.resume(session)
        if current is None:
            return
        try:
            await self._gotrue().admin.sign_out(current.tokens["access_token"], scope)
        except AuthApiError as e:
            if e.status not in (401, 403, 404):  # those mean: already signed out
                raise _map_gotrue(e) from None
        except GoTrueError as e:
            raise _map_gotrue(e) from None
        except httpx.HTTPError as e:
            raise StoreUnavailable(UNAVAILABLE) from e

    # -- items

    async def _rest(self, session: Session, query: Callable[[Any], Awaitable[T]]) -> T:
        """Run `query` on the items table as the session's user. An expired JWT is refreshed
        and the query retried once."""
        token = session.tokens.get("access_token", "")
        for attempt in (1, 2):
            try:
                return await query(self._items(token))
            except APIError as e:
                if e.code in EXPIRED_JWT_CODES and attempt == 1:
                    renewed = await self._refresh(session.tokens.get("refresh_token", ""))
                    if renewed is None:
                        raise AuthError("Your session has expired. Please log in again.") from None
                    token = renewed.tokens["access_token"]
                    continue
                raise rest_failure(e.code, e.message) from None
            except httpx.HTTPError as e:
                raise StoreUnavailable(UNAVAILABLE) from e
        raise AssertionError("unreachable")

    async def list_items(self, session: Session, q: str, page: int, per_page: int) -> ItemPage:
        page, first, last = page_range(page, per_page)
        wanted = search_filter(q)

        def select(table: Any, lo: int, hi: int) -> Any:
            builder = table.select(*ITEM_COLUMNS, count=CountMethod.exact)
            if wanted:
                builder = builder.or_(wanted)
            return builder.order("id", desc=True).range(lo, hi)

        try:
            response = await self._rest(session, lambda t: select(t, first, last).execute())
        except PastLastPage:
            # Past the last page (PostgREST answers 416): an empty page, with the real total.
            response = await self._rest(session, lambda t: select(t, 0, 0).execute())
            return ItemPage(items=[], total=response.count or 0, page=page, per_page=per_page)
        items = [row_to_item(row) for row in response.data]
        return ItemPage(items=items, total=response.count or 0, page=page, per_page=per_page)

    async def get_item(self, session: Session, item_id: int) -> Item | None:
        response = await self._rest(
            session, lambda t: t.select(*ITEM_COLUMNS).eq("id", item_id).limit(1).execute())
        return row_to_item(response.data[0]) if response.data else None

    async def create_item(self, session: Session, data: ItemInput) -> Item:
        # No user_id: the column defaults to auth.uid() of the verified JWT.
        row = {"name": data.name, "description": data.description, "quantity": data.quantity}
        response = await self._rest(
            session, lambda t: t.insert(row).select(*ITEM_COLUMNS).execute())
        if not response.data:  # inserted but not readable back: the policies disagree
            raise PermissionError("the new item is not visible to its owner")
        return row_to_item(response.data[0])

    async def create_items(self, session: Session, rows: list[ItemInput],
                           progress: Callable[[int], None] | None = None) -> int:
        """Bulk import, all or nothing: PostgREST runs one request as one statement in one
        transaction, so every row lands or none does. For the same reason progress can only
        be reported once, when the rows are in."""
        if not rows:
            return 0
        payload = [{"name": r.name, "description": r.description, "quantity": r.quantity}
                   for r in rows]
        response = await self._rest(session, lambda t: t.insert(
            payload, count=CountMethod.exact, returning=ReturnMethod.minimal).execute())
        done = response.count if response.count is not None else len(rows)
        if progress is not None:
            progress(done)
        return done

    async def update_item(self, session: Session, item_id: int, data: ItemInput) -> Item | None:
        row = {"name": data.name, "description": data.description, "quantity": data.quantity}
        response = await self._rest(
            session,
            lambda t: t.update(row).eq("id", item_id).select(*ITEM_COLUMNS).execute())
        # Zero rows: no such item, or RLS hid someone else's. Both are a 404 to the user.
        return row_to_item(response.data[0]) if response.data else None

    async def delete_item(self, session: Session, item_id: int) -> bool:
        response = await self._rest(
            session, lambda t: t.delete().eq("id", item_id).select("id").execute())
        return bool(response.data)

    async def close(self) -> None:
        # The shared httpx client belongs to the app's lifespan, which closes it.
        self._flights.clear()
