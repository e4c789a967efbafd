"""Pure decisions for the Supabase store: PostgREST filter encoding, paging, row decoding,
token-expiry arithmetic and error classification. No I/O here; store/supabase.py does that."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import msgspec

from store.base import AuthError, Item, RateLimited, StoreUnavailable, User

ITEM_COLUMNS = ("id", "name", "description", "quantity", "created_at", "updated_at")
MAX_QUERY_CHARS = 200

# -- search


def like_escape(text: str) -> str:
    """Make `text` match literally inside a LIKE pattern (PostgreSQL's default escape is \\).
    PostgREST turns every `*` in a like/ilike value into `%` and offers no escape for it, so a
    literal `*` becomes `_` (any one character): a search for `a*b` can only over-match."""
    return (text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            .replace("*", "_"))


def postgrest_quote(value: str) -> str:
    """A value for PostgREST's logic-tree syntax: double quotes keep commas, dots and
    parentheses from being read as syntax; inside them \\ escapes the next character."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def normalize_query(q: str) -> str:
    # NUL cannot be stored or compared in PostgreSQL text; over-long input is not a search.
    return q.replace("\x00", "").strip()[:MAX_QUERY_CHARS]


def search_filter(q: str) -> str | None:
    """The `or=(...)` body for an infix, case-insensitive search on name or description, or
    None when there is nothing to search for."""
    q = normalize_query(q)
    if not q:
        return None
    pattern = postgrest_quote("%" + like_escape(q) + "%")
    return f"name.ilike.{pattern},description.ilike.{pattern}"


def page_range(page: int, per_page: int) -> tuple[int, int, int]:
    """(page, first row, last row) with page clamped to >= 1; rows are 0-based, inclusive."""
    page = max(1, page)
    start = (page - 1) * per_page
    return page, start, start + per_page - 1


def utc_text(timestamp: str) -> str:
    """PostgREST's timestamptz ("2026-11-27T08:54:21.73652+00:00", in the database session's
    time zone) as the embedded store writes timestamps: UTC, "2026-11-27 08:54:21.736"."""
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def row_to_item(row: dict) -> Item:
    item = msgspec.convert(row, Item)
    return msgspec.structs.replace(item, created_at=utc_text(item.created_at),
                                   updated_at=utc_text(item.updated_at))


# -- sessions


def refresh_key(refresh_token: str) -> str:
    # The single-flight map is keyed by a digest so it does not index raw refresh tokens.
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def needs_refresh(expires_at: int, now: float, margin: float, lifetime: int | None = None) -> bool:
    """Time to refresh: the token expires within `margin` seconds, or within a quarter of its
    lifetime when that is shorter (a project with 60-second tokens would otherwise refresh on
    every request, rotating the refresh token each time)."""
    if lifetime is not None and lifetime > 0:
        margin = min(margin, lifetime / 4)
    return expires_at - now <= margin


def is_admin(email: str | None, email_confirmed: bool, admin_emails: frozenset[str]) -> bool:
    return bool(email) and email_confirmed and email.strip().lower() in admin_emails


def normalize_admin_emails(emails: frozenset[str] | set[str] | list[str]) -> frozenset[str]:
    return frozenset(e.strip().lower() for e in emails if e.strip())


def user_from_claims(claims: dict, previous: User) -> User | None:
    """The user a verified access token speaks for. Admin status needs a confirmed email,
    which claims do not carry (user_metadata is user-editable), so it is kept from the
    previous, server-confirmed User only while id and email are unchanged."""
    sub, email = claims.get("sub"), claims.get("email") or ""
    if not sub or claims.get("role") != "authenticated":
        return None
    same = previous.id == sub and previous.email == email
    return User(id=str(sub), email=str(email), is_admin=previous.is_admin and same)


# -- errors

AUTH_MESSAGES = {
    "invalid_credentials": "Invalid email or password.",
    "email_not_confirmed": "Please confirm your email address first: "
                           "follow the link we sent you.",
    "user_already_exists": "An account with this email already exists.",
    "email_exists": "An account with this email already exists.",
    "over_request_rate_limit": "Too many attempts. Please wait a minute and try again.",
    "over_email_send_rate_limit": "Too many emails sent. Please wait a while and try again.",
    "otp_expired": "This confirmation link is invalid or has expired.",
    "signup_disabled": "Sign-ups are currently closed.",
    "email_address_invalid": "Please enter a valid email address.",
}

RATE_LIMIT_CODES = frozenset({"over_request_rate_limit", "over_email_send_rate_limit"})

WEAK_REASONS = {
    "length": "it is too short",
    "characters": "it needs a mix of character kinds (letters, digits, symbols)",
    "pwned": "it appears in known data breaches",
}

GENERIC_AUTH = "Something went wrong signing you in. Please try again."


def auth_failure(code: str | None, status: int, message: str,
                 reasons: list[str] | None = None) -> Exception:
    """Classify a GoTrue error (as parsed by supabase_auth) into the exception handlers see."""
    if status == 0 or status >= 500:
        return StoreUnavailable("The sign-in service is unavailable. Please try again soon.")
    if code == "weak_password":
        said = [WEAK_REASONS.get(r, r) for r in reasons or []]
        detail = "; ".join(said) if said else message
        return AuthError(f"Password is too weak: {detail}.")
    if code in RATE_LIMIT_CODES:
        return RateLimited(AUTH_MESSAGES[code])
    if code in AUTH_MESSAGES:
        return AuthError(AUTH_MESSAGES[code])
    if status == 429:
        return RateLimited(AUTH_MESSAGES["over_request_rate_limit"])
    if code == "validation_failed" and "email" in message.lower():
        return AuthError(AUTH_MESSAGES["email_address_invalid"])
    return AuthError(GENERIC_AUTH)


EXPIRED_JWT_CODES = frozenset({"PGRST301", "PGRST303"})
UNAVAILABLE_CODES = frozenset({"PGRST000", "PGRST001", "PGRST002", "PGRST003"})


class PastLastPage(Exception):
    """PostgREST's 416 (PGRST103): the requested offset is beyond the last row."""


def rest_failure(code: str | None, message: str | None) -> Exception:
    """Classify a PostgREST error (not an expired JWT: the caller retries those)."""
    code = code or ""
    if code == "PGRST103":
        return PastLastPage(message)
    if code == "42501":
        return PermissionError(message or "permission denied")
    # A bare HTTP status stands in for the code when the body was not PostgREST's JSON (e.g. a
    # gateway's 502 page); SQLSTATEs are five characters, so the two cannot be confused.
    http_5xx = len(code) == 3 and code.isdigit() and code[0] == "5"
    if code in UNAVAILABLE_CODES or http_5xx:
        return StoreUnavailable("The database is unavailable. Please try again soon.")
    if code in EXPIRED_JWT_CODES or code == "PGRST302":
        return AuthError("Your session has expired. Please log in again.")
    if code[:2] in ("22", "23"):
        return ValueError(message or "invalid data")
    return RuntimeError(f"PostgREST error {code}: {message}")
