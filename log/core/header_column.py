"""The request_header column: a request's headers as the redacted JSON object a row stores.

Pure. Whatever the client sends, the column is at most `max_bytes` bytes (LOG_HEADERS_MAX_BYTES):
  * each header, in order, as (lower-case name, value); repeated names become a list;
  * a value longer than HEADER_VALUE_MAX characters is cut and marked "…[N chars]";
  * sensitive headers are "[REDACTED]", URL-valued ones have their query string and fragment
    redacted (log/core/redact.py); a trace header that fails its check is "[invalid: N chars]"
    (log/core/trace.py), never the value as sent;
  * past the cap, one LEFT_OUT entry says how many headers were left out and their raw size;
    only the headers that could fit are decoded at all, so 16 MB of headers costs no more
    than the cap.
One pass over the headers, one judgement per header name (memoised): this runs for every row.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import msgspec

from log.core.headers import Headers, text_headers
from log.core.redact import REDACTED, URL_HEADERS, RedactionPolicy, group_pairs, header_is_sensitive, redact_url
from log.core.trace import TRACE_HEADER_CHECKS, invalid_marker

# A header value longer than this is cut, with a marker saying how long it was: uvicorn accepts
# request headers of any size, and one 64 KiB header must not become a 64 KiB column in every sink.
HEADER_VALUE_MAX = 2048
HEADERS_MAX_BYTES = 16 * 1024  # LOG_HEADERS_MAX_BYTES' default
# The marker's name cannot be a real header's: "(" and ")" are not allowed in one.
LEFT_OUT = "(headers left out)"
# Room kept for the marker: ',"(headers left out)":"N headers, M bytes"' with 19-digit numbers.
_MARKER_ROOM = 96
# Up to this many headers are decoded without first checking which could fit (the usual case).
_FEW = 64
_PLAIN, _SECRET, _URL, _TRACE = range(4)
_KINDS_MAX = 1024

_encoder = msgspec.json.Encoder()


def _kind(name: str, policy: RedactionPolicy) -> int:
    if policy.enabled and header_is_sensitive(name, policy):
        return _SECRET
    if policy.enabled and name in URL_HEADERS:
        return _URL
    return _TRACE if name in TRACE_HEADER_CHECKS else _PLAIN


@functools.lru_cache(maxsize=8)
def _kinds(enabled: bool, header_names: frozenset[str], key_regex: re.Pattern[str] | None) -> dict[str, int]:
    # Every request repeats the same few header names: each is judged once per policy (this
    # dict), not per request; the policy is looked up once per row, not once per header.
    return {}


def column_pairs(headers: Headers, policy: RedactionPolicy) -> list[tuple[str, str]]:
    """(lower-case name, value as stored) for each header, in order."""
    pairs = text_headers(headers)
    if pairs and not isinstance(headers[0][0], bytes):
        pairs = [(name.lower(), value) for name, value in pairs]
    kinds = _kinds(policy.enabled, policy.header_names, policy.key_regex)
    for i, (name, value) in enumerate(pairs):
        kind = kinds.get(name)
        if kind is None:
            if len(kinds) >= _KINDS_MAX:  # names are the client's choice: keep the memo bounded
                kinds.clear()
            kind = kinds[name] = _kind(name, policy)
        if kind == _PLAIN and len(value) <= HEADER_VALUE_MAX:
            continue  # the usual case: kept as it came
        if kind == _SECRET:
            value = REDACTED
        elif kind == _URL:
            value = redact_url(value, policy)
        elif kind == _TRACE and TRACE_HEADER_CHECKS[name](value.strip(" \t")) is None:
            value = invalid_marker(value)
        if len(value) > HEADER_VALUE_MAX:
            value = f"{value[:HEADER_VALUE_MAX]}…[{len(value)} chars]"
        pairs[i] = (name, value)
    return pairs


def left_out_marker(count: int, size: int) -> tuple[str, str]:
    return LEFT_OUT, f"{count} headers, {size} bytes"


def raw_size(headers: Headers) -> int:
    """Bytes of names and values, as received."""
    return sum(len(name) + len(value) for name, value in headers)


def fitting_prefix(headers: Headers, max_bytes: int) -> int:
    """How many leading headers could possibly fit in a column of `max_bytes` (cheap, on raw
    pairs): each takes at least its quoted name, a colon, a comma and its value or "[REDACTED]"."""
    total = 1  # the braces, less the missing last comma
    shortest = len(REDACTED)
    for i, (name, value) in enumerate(headers):
        total += len(name) + min(len(value), shortest) + 6
        if total > max_bytes:
            return i
    return len(headers)


def capped_pairs(pairs: Sequence[tuple[str, str]], raw: Headers, max_bytes: int) -> list[tuple[str, str]]:
    """The leading `pairs` whose JSON object fits in `max_bytes` with room left for the marker,
    then the marker counting the headers of `raw` (the request's headers, in the same order, of
    which `pairs` are the first) that are left out, and their raw size.

    Each entry is measured as its encoded name and value plus ":" and ","; grouping repeated
    names into a list only makes the object shorter."""
    budget = max_bytes - _MARKER_ROOM - 1
    kept: list[tuple[str, str]] = []
    used = 0
    for name, value in pairs:
        used += len(_encoder.encode(name)) + len(_encoder.encode(value)) + 2
        if used > budget:
            break
        kept.append((name, value))
    rest = raw[len(kept) :]
    return [*kept, left_out_marker(len(rest), raw_size(rest))]


def request_header_json(headers: Headers, policy: RedactionPolicy, max_bytes: int = HEADERS_MAX_BYTES) -> str:
    """The request_header column: at most `max_bytes` bytes of JSON, whatever the client sent."""
    n = len(headers) if len(headers) <= _FEW else fitting_prefix(headers, max_bytes)
    pairs = column_pairs(headers[:n] if n < len(headers) else headers, policy)
    text = _encoder.encode(group_pairs(pairs))
    if len(text) > max_bytes or n < len(headers):
        text = _encoder.encode(group_pairs(capped_pairs(pairs, headers, max_bytes)))
    return text.decode()
