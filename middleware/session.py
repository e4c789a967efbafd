"""Signed-cookie sessions: who is signed in, and the CSRF token, for every HTTP request.

The cookie holds {"csrf": token, "s": Session | None}, signed and timestamped by itsdangerous'
URLSafeTimedSerializer; it expires after max_age. A returning browser's cookie is verified
once, then found in a small per-instance cache. The cache remembers signature checks only,
never that a session is still valid: each request, the store re-validates the session
(`store.resume`: on the embedded default the session row still exists, one indexed lookup in
the database every worker process shares, so a logout anywhere is seen by the next request;
Supabase verifies and refreshes tokens), and the result lands in scope["state"]: `session`,
`user`, `csrf_token`.
Handlers change the session only through `set_session()`; the cookie is re-sent when anything in
it changed. A visitor without a cookie gets one with the first HTML response (pages carry the
CSRF token); other responses do not mint one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import msgspec
from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from log import PathPrefixes
from store.base import Session, StoreUnavailable

COOKIE = "session"
# Verified cookies remembered per middleware: enough for every browser active at once on a small
# deployment; past it the oldest entry goes (costing one signature check when that browser returns).
CACHE_SIZE = 2048
_UNCHANGED = object()


def set_session(conn: HTTPConnection, session: Session | None) -> None:
    """Log in (a Session) or out (None) for the response being built."""
    conn.state.new_session = session
    if session is not None:  # the request's log row names who just signed in
        conn.state.user = session.user


def _is_html(start: Message) -> bool:
    content_type = Headers(raw=start.get("headers", [])).get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == "text/html"


class SessionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        secret_key: str,
        max_age: int,
        https_only: bool = False,
        clock: Callable[[], float] = time.time,
        cache_size: int = CACHE_SIZE,
        skip_prefixes: tuple[str, ...] = (),
    ) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.app = app
        self.clock = clock
        self.serializer = signing(secret_key, clock)
        self.max_age = max_age
        self.https_only = https_only
        self.cache_size = cache_size
        # Paths that never use a session (static files, health probes): no cookie read, no
        # store.resume() (a database query, or a call to Supabase Auth), no cookie minted for a
        # cookie-less client, so their responses stay cacheable.
        self.skip = PathPrefixes(skip_prefixes)
        # cookie value -> (signed-at timestamp, payload). Only cookies whose signature checked
        # out get in, so a flood of forged cookies costs a check each and never evicts anything.
        # A hit skips the signature check, never store.resume: a logged-out session's cookie
        # stays here, verified, and is signed out by the store on its next request.
        # The payload dicts are shared between requests: read them, never change them.
        self.verified: dict[str, tuple[int, dict[str, Any]]] = {}

    def load(self, scope: Scope) -> dict[str, Any] | None:
        """The request's cookie payload when it is ours and not expired (read-only), else None."""
        raw = _cookie(scope, COOKIE)
        if not raw:
            return None
        hit = self.verified.get(raw)
        if hit is not None:
            # Age is checked on every request, cached or not: a cookie expires on time.
            if 0 <= int(self.clock()) - hit[0] <= self.max_age:
                return hit[1]
            del self.verified[raw]
            return None
        try:
            payload, signed_at = self.serializer.loads(raw, max_age=self.max_age, return_timestamp=True)
        except BadData:  # forged, tampered with, expired, or not our format
            return None
        except (ValueError, OverflowError, OSError):
            # itsdangerous builds a datetime for an expired signature's timestamp; one far out
            # of range (only a holder of the key can sign it) fails there instead.
            return None
        if not isinstance(payload, dict):
            return None
        if len(self.verified) >= self.cache_size:
            # dicts keep insertion order: the first key is the oldest entry.
            del self.verified[next(iter(self.verified))]
        self.verified[raw] = (int(signed_at.timestamp()), payload)
        return payload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        payload = self.load(scope) or {}
        csrf = payload.get("csrf") if isinstance(payload.get("csrf"), str) else None
        new_token = csrf is None
        csrf = csrf or secrets.token_urlsafe(32)
        session = _decode_session(payload.get("s"))
        changed = False
        if session is not None:
            try:
                resumed = await state["store"].resume(session)
            except StoreUnavailable:
                await _send_503(scope, send)
                return
            changed = resumed != session
            session = resumed
        state.update(session=session, user=session.user if session else None, csrf_token=csrf)
        state["new_session"] = _UNCHANGED

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                new = state.get("new_session", _UNCHANGED)
                # A token minted for this request only needs keeping when the response is a
                # page or fragment (they carry it for their forms); a JSON, CSV or redirect
                # response to a cookie-less client stays cookie-less and cacheable.
                page = new_token and _is_html(message)
                if new is not _UNCHANGED or changed or page:
                    final = session if new is _UNCHANGED else new
                    # A new login gets a fresh CSRF token too.
                    token = csrf if new is _UNCHANGED else secrets.token_urlsafe(32)
                    headers = [
                        *message.get("headers", []),
                        (b"set-cookie", self.cookie_header(scope, token, final).encode("latin-1")),
                        (b"cache-control", b"private, no-store"),
                    ]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def cookie_header(self, scope: Scope, csrf: str, session: Session | None) -> str:
        value = self.serializer.dumps(
            {"csrf": csrf, "s": msgspec.to_builtins(session) if session else None}
        )
        secure = "; Secure" if self.https_only or scope.get("scheme") == "https" else ""
        return f"{COOKIE}={value}; Path=/; Max-Age={self.max_age}; HttpOnly; SameSite=Lax{secure}"


def signing(secret_key: str, clock: Callable[[], float]) -> URLSafeTimedSerializer:
    """itsdangerous' URLSafeTimedSerializer (salt "session"), its timestamps read from `clock`."""

    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return URLSafeTimedSerializer(secret_key, salt="session", signer=Signer)


def _decode_session(raw: object) -> Session | None:
    if raw is None:
        return None
    try:
        return msgspec.convert(raw, Session)
    except msgspec.ValidationError:
        return None


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope["headers"]:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name:
                    return v
    return None


_UNAVAILABLE = (
    '<div class="alert alert-error" role="alert" id="error-message">The account service is '
    "unreachable right now. Please try again shortly.</div>"
)
# A whole page for a browser navigation (this runs before the app's templates could render one;
# no user data in it), the bare alert for htmx requests.
_UNAVAILABLE_PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    "<title>Unavailable · BackEndZeroSecondThink</title>"
    '<link rel="stylesheet" href="/static/app.css"></head>'
    '<body class="min-h-screen bg-base-200"><main class="max-w-4xl mx-auto p-4 sm:p-6">'
    f'{_UNAVAILABLE}<p class="mt-4"><a class="link" href="">Try again</a></p>'
    "</main></body></html>"
)


async def _send_503(scope: Scope, send: Send) -> None:
    headers = dict(scope["headers"])
    htmx = headers.get(b"hx-request") == b"true" and headers.get(b"hx-boosted") != b"true"
    body = (_UNAVAILABLE if htmx else _UNAVAILABLE_PAGE).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"retry-after", b"5")],
        }
    )
    await send({"type": "http.response.body", "body": body})
