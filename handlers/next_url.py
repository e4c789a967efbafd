"""Where to go after logging in: the `next` parameter, kept only when it is a path on this site."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

MAX_NEXT = 2000


def safe_next(value: str | None) -> str | None:
    """`value` if it is a same-origin path ("/items?q=x"), else None.

    Refused: anything not starting with a single "/" ("//evil.com" and "/\\evil.com" are other
    hosts to a browser, which reads a backslash as a slash), schemes ("https://evil",
    "javascript:"), control characters and whitespace (browsers strip tabs and newlines
    inside URLs, so "/\\t/evil.com" would become "//evil.com"), and overlong values."""
    if not value or len(value) > MAX_NEXT or not value.startswith("/"):
        return None
    if value.startswith("//") or "\\" in value:
        return None
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def login_url(path: str, query: str = "") -> str:
    """/login with `next` set to this page (path and query string)."""
    here = path + ("?" + query if query else "")
    if safe_next(here) is None:
        return "/login"
    return "/login?next=" + quote(here, safe="/")
