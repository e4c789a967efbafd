"""Redaction: secrets (passwords, tokens, cookies, auth headers) never reach a log sink.

Pure functions driven by a frozen RedactionPolicy. A value is replaced by "[REDACTED]" when its
name is sensitive:
  * headers: the name is in `header_names` (exact, case-insensitive) OR matches a key pattern
    (so x-auth-token or x-session-id are caught without listing them);
  * JSON object keys, query and form field names: a key pattern matches anywhere in the name,
    case-insensitively. The whole value is replaced, whatever its type or depth.
  * headers that carry a URL (Referer, Origin, Location, HX-Current-URL, ...): the query string
    and the fragment are redacted like a query string (`?token_hash=`, `#access_token=`).
Over-redaction (e.g. "author" matches "auth") is the accepted price of never leaking.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

import msgspec

REDACTED = "[REDACTED]"

DEFAULT_HEADER_NAMES: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-access-key",
        "x-csrf-token",
        "x-xsrf-token",
        "csrf-token",
    }
)

DEFAULT_KEY_PATTERNS: tuple[str, ...] = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api[-_]?key",
    "access[-_]?key",
    "signature",
    # "sig" alone (signed URLs: ?sig=, Azure SAS), not inside words like "design" or "signup".
    "(?<![a-z0-9])sig(?![a-z0-9])",
    "auth",
    "credential",
    "session",
    "cookie",
    "csrf",
    "xsrf",
    "jwt",
    "private[-_]?key",
    "credit[-_ ]?card",
    "card[-_]?number",
    "cvv",
    "ssn",
)


class RedactionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool = True
    header_names: frozenset[str] = DEFAULT_HEADER_NAMES
    key_patterns: tuple[str, ...] = DEFAULT_KEY_PATTERNS
    # Built once from key_patterns in __post_init__; never pass them yourself.
    key_regex: re.Pattern[str] | None = None
    # Case-sensitive twin for searching lower-cased ASCII text: re.IGNORECASE over a whole body is
    # much slower. None when a pattern has upper-case characters (lower-casing could break it).
    lower_regex: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        joined = "|".join(f"(?:{p})" for p in self.key_patterns) or r"(?!)"  # (?!) never matches
        msgspec.structs.force_setattr(self, "key_regex", re.compile(joined, re.IGNORECASE))
        lower = re.compile(joined) if all(p == p.lower() for p in self.key_patterns) else None
        msgspec.structs.force_setattr(self, "lower_regex", lower)
        msgspec.structs.force_setattr(self, "header_names", frozenset(h.lower() for h in self.header_names))

    def with_extra(self, patterns: Iterable[str]) -> RedactionPolicy:
        """A copy with more key patterns (e.g. from LOG_REDACT_EXTRA="ssn_last4,iban")."""
        extra = tuple(p.strip() for p in patterns if p.strip())
        return RedactionPolicy(
            enabled=self.enabled, header_names=self.header_names, key_patterns=self.key_patterns + extra
        )


def key_is_sensitive(key: str, policy: RedactionPolicy) -> bool:
    assert policy.key_regex is not None
    return policy.enabled and policy.key_regex.search(key) is not None


def header_is_sensitive(name: str, policy: RedactionPolicy) -> bool:
    return policy.enabled and _header_verdict(name, policy.header_names, policy.key_regex)


@functools.lru_cache(maxsize=1024)
def _header_verdict(name: str, header_names: frozenset[str], key_regex: re.Pattern[str] | None) -> bool:
    # Every request repeats the same few header names: judge each once, not per request.
    assert key_regex is not None
    return name.lower() in header_names or key_regex.search(name) is not None


def group_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, str | list[str]]:
    """[(k, v), ...] -> {k: v} with repeated keys kept, in order, as a list."""
    out: dict[str, str | list[str]] = {}
    for key, value in pairs:
        if key not in out:
            out[key] = value
        else:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
    return out


# Request headers whose value is a URL (or, for Origin, could be made to look like one): their
# query strings carry tokens (Referer: .../auth/confirm?token_hash=...; HX-Current-URL:
# ...#access_token=... after an OAuth redirect). Lower-case names.
URL_HEADERS = frozenset(
    {
        "referer",
        "origin",
        "location",
        "content-location",
        "hx-current-url",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-uri",
    }
)


def redact_url(url: str, policy: RedactionPolicy) -> str:
    """A URL with sensitive values in its query string and fragment redacted, the rest as is."""
    base, hash_, fragment = url.partition("#")
    path, question, query = base.partition("?")
    if question:
        base = f"{path}?{redact_query_string(query, policy)}"
    return f"{base}#{redact_query_string(fragment, policy)}" if hash_ else base


def redact_header_pairs(headers: Iterable[tuple[str, str]], policy: RedactionPolicy) -> list[tuple[str, str]]:
    """(name, value) pairs with sensitive values replaced, in order, repeats kept apart."""
    if policy.enabled:  # verdicts memoised per header name (_header_verdict)
        names, regex = policy.header_names, policy.key_regex
        return [
            (n, REDACTED if _header_verdict(n, names, regex) else redact_url(v, policy) if n.lower() in URL_HEADERS else v)
            for n, v in headers
        ]
    return list(headers)


def redact_headers(headers: Iterable[tuple[str, str]], policy: RedactionPolicy) -> dict[str, str | list[str]]:
    return group_pairs(redact_header_pairs(headers, policy))


# What a form or query field name looks like. A sensitive "name" that does not (a JSON text
# posted as a form, "password: hunter2" in a query) may hold the secret itself: it goes too.
_FIELD_NAME = re.compile(r"[\w.\-\[\]]{1,100}")


def _sensitive_key(key: str) -> str:
    return key if _FIELD_NAME.fullmatch(key) else REDACTED


def redact_pairs(pairs: Iterable[tuple[str, str]], policy: RedactionPolicy) -> list[tuple[str, str]]:
    return [(_sensitive_key(k), REDACTED) if key_is_sensitive(k, policy) else (k, v) for k, v in pairs]


def redact_json(value: Any, policy: RedactionPolicy) -> Any:
    """A redacted copy of a parsed JSON value (dicts and lists at any depth)."""
    if not policy.enabled:
        return value
    assert policy.key_regex is not None
    search = policy.key_regex.search
    verdicts: dict[Any, bool] = {}  # lists of objects repeat the same keys: judge each once
    # Iterative, so hostile deeply nested bodies cannot hit the recursion limit.
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]  # (container, index/key) whose slot needs copying
    while stack:
        parent, slot = stack.pop()
        item = parent[slot]
        if isinstance(item, dict):
            copy = {}
            for k, v in item.items():
                sensitive = verdicts.get(k)
                if sensitive is None:
                    sensitive = verdicts[k] = search(str(k)) is not None
                if sensitive:
                    copy[k] = REDACTED
                else:
                    copy[k] = v
                    if isinstance(v, (dict, list)):
                        stack.append((copy, k))
            parent[slot] = copy
        elif isinstance(item, list):
            copy_list = list(item)
            stack.extend((copy_list, i) for i, v in enumerate(copy_list) if isinstance(v, (dict, list)))
            parent[slot] = copy_list
    return root[0]


def may_hold_sensitive_key(text: str, policy: RedactionPolicy) -> bool:
    """False only if no key in this JSON text can be sensitive: then redact_json can be skipped."""
    assert policy.key_regex is not None
    if not policy.enabled:
        return False
    if "\\u" in text:  # a key spelled with escapes ("p\\u0061ssword") hides from a text search
        return True
    if policy.lower_regex is not None and text.isascii():  # non-ASCII: leave case folding to re
        return policy.lower_regex.search(text.lower()) is not None
    return policy.key_regex.search(text) is not None


def redact_query_string(query: str, policy: RedactionPolicy) -> str:
    """Replace sensitive values in a raw query string, keeping everything else byte-for-byte."""
    if not query or not policy.enabled:
        return query
    parts = []
    for part in query.split("&"):
        raw_key, sep, _ = part.partition("=")
        key = unquote_plus(raw_key)
        if key_is_sensitive(key, policy):
            part = f"{raw_key if _FIELD_NAME.fullmatch(key) else REDACTED}={REDACTED}"
        parts.append(part)
    return "&".join(parts)


# Tokens of JSON-ish text: strings (possibly unterminated), punctuation, scalars, whitespace.
# Every character matches some alternative, so the tokens re-join to the exact input.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[:{}\[\],]|[^"\s:{}\[\],]+|\s+', re.DOTALL)
_QUOTED_REDACTED = msgspec.json.encode(REDACTED).decode()


def _key_text(token: str) -> str:
    try:
        return msgspec.json.decode(token, type=str)
    except msgspec.DecodeError:  # unterminated or bad escapes: judge the raw characters
        return token.strip('"')


def redact_json_text(text: str, policy: RedactionPolicy) -> str:
    """Redact JSON text that did not parse (truncated at the capture cap, or malformed).

    Lexical: after any `"sensitive key" :` the next value (string, scalar, or a whole {...}/[...]
    up to its matching bracket or the end of the text) becomes "[REDACTED]".
    """
    if not may_hold_sensitive_key(text, policy):
        return text  # fast path: no sensitive word anywhere, so no sensitive key either
    tokens = _JSON_TOKEN.findall(text)
    out: list[str] = []
    i, n = 0, len(tokens)
    last_key: str | None = None  # the previous non-space token, if it was a string
    while i < n:
        tok = tokens[i]
        i += 1
        out.append(tok)
        if tok.isspace():
            continue
        if tok == ":" and last_key is not None and key_is_sensitive(_key_text(last_key), policy):
            while i < n and tokens[i].isspace():
                out.append(tokens[i])
                i += 1
            i = _skip_value(tokens, i)
            out.append(_QUOTED_REDACTED)
        last_key = tok if tok.startswith('"') else None
    return "".join(out)


def _skip_value(tokens: list[str], i: int) -> int:
    """Index just past the JSON value starting at tokens[i] (or len(tokens) if it is cut off)."""
    if i >= len(tokens):
        return i
    if tokens[i] not in ("{", "["):
        return i + 1 if tokens[i] not in (",", "}", "]") else i
    depth = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok in ("{", "["):
            depth += 1
        elif tok in ("}", "]"):
            depth -= 1
            if depth == 0:
                break
    return i


# HTML kept in logs (error pages, LOG_HTML_BODIES=full) carries the page's secrets: the CSRF
# token in hidden inputs and in hx-headers='{"X-CSRF-Token": "..."}'. Scrub them tag by tag.
# A tag or attribute cut off by the capture cap still counts (up to the end of the text).
_HTML_TAG = re.compile(r"<[a-zA-Z][^>]*(?:>|\Z)")
_HTML_ATTR = re.compile(r"""([^\s=/>"']+)(\s*=\s*)("[^"]*(?:"|\Z)|'[^']*(?:'|\Z)|[^\s>"']+)""")


def redact_html(text: str, policy: RedactionPolicy) -> str:
    """In every tag: a sensitive attribute's value; value/content of an element whose name/id
    is sensitive (<input name="csrf_token" value=...>, <meta name="csrf-token" content=...>);
    sensitive keys inside JSON-valued attributes (hx-headers, hx-vals)."""
    if not policy.enabled or not may_hold_sensitive_key(text, policy):
        return text

    def tag(m: re.Match[str]) -> str:
        source = m.group(0)
        attrs = _HTML_ATTR.findall(source)
        secret_element = any(
            k.lower() in ("name", "id") and key_is_sensitive(v.strip("\"'"), policy) for k, _, v in attrs
        )

        def attr(a: re.Match[str]) -> str:
            name, eq, value = a.groups()
            quote = value[0] if value[0] in "\"'" else '"'
            if key_is_sensitive(name, policy) or (secret_element and name.lower() in ("value", "content")):
                return f"{name}{eq}{quote}{REDACTED}{quote}"
            if value[0] in "\"'" and may_hold_sensitive_key(value, policy):
                inner = value[1:-1] if len(value) > 1 and value[-1] == quote else value[1:]
                if "&" in inner:  # entity-escaped JSON (hx-vals="{&quot;csrf&quot;: ...}")
                    return f"{name}{eq}{quote}{html.escape(redact_json_text(html.unescape(inner), policy))}{quote}"
                return f"{name}{eq}{quote}{redact_json_text(inner, policy)}{quote}"
            return a.group(0)

        return _HTML_ATTR.sub(attr, source)

    return _HTML_TAG.sub(tag, text)
