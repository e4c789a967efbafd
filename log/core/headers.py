"""HTTP header helpers for the capture and the row builders: the one home for reading headers.

Headers arrive as raw ASGI (bytes, bytes) pairs, which the row builder decodes a batch at a time
(text_headers), or already decoded (str, str) pairs. Pure functions of plain values.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence

Headers = Sequence[tuple[bytes, bytes]] | Sequence[tuple[str, str]]


def text_headers(headers: Headers) -> list[tuple[str, str]]:
    """(lower-case name, value) str pairs, latin-1 decoded; str pairs are taken as they are."""
    if headers and isinstance(headers[0][0], bytes):
        return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers]  # type: ignore[union-attr]
    return list(headers)  # type: ignore[arg-type]


_CONTENT_TYPE = frozenset({"content-type", b"content-type"})


def content_type_of(headers: Headers) -> str | None:
    """The last Content-Type, from raw ASGI or decoded pairs, without decoding the other headers."""
    found = None
    for name, value in headers:
        if name.lower() in _CONTENT_TYPE:
            found = value
    return found.decode("latin-1") if isinstance(found, bytes) else found


def is_html(content_type: str | None) -> bool:
    """A Content-Type value naming an HTML document (any parameters, any case)."""
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == "text/html"


def media_type(content_type: str | None) -> tuple[str, str]:
    """-> (lower-case media type, charset)."""
    if not content_type:
        return "", "utf-8"
    media, *params = content_type.split(";")
    charset = "utf-8"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            candidate = value.strip().strip('"')
            try:
                charset = codecs.lookup(candidate).name
            except LookupError:
                pass
    return media.strip().lower(), charset


def first_header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """First value of `name` (lower-case; names compared case-insensitively), stripped of
    optional whitespace."""
    for key, value in headers:
        if key.lower() == name:
            return value.strip(" \t")
    return None


# The request_header column has a size limit (LOG_HEADERS_MAX_BYTES), whatever the client sends:
# headers are kept in order until the cap, then this one entry says how many were left out and
# how big they were. Its name cannot be a real header's: "(" and ")" are not allowed in one.
LEFT_OUT = "(headers left out)"
# Room kept for the marker entry: ',"(headers left out)":"N headers, M bytes"' with 19-digit numbers.
_MARKER_ROOM = 96
# The fewest bytes a redacted value can take in the column: "[REDACTED]" (build.py's value cut
# only makes values longer than what it keeps).
_SHORTEST_VALUE = 10


def left_out_marker(count: int, size: int) -> tuple[str, str]:
    return LEFT_OUT, f"{count} headers, {size} bytes"


def raw_size(headers: Headers) -> int:
    """Bytes of names and values, as received."""
    return sum(len(name) + len(value) for name, value in headers)


def fitting_prefix(headers: Headers, max_bytes: int) -> int:
    """How many leading headers could possibly fit in a column of `max_bytes` (cheap, on raw
    pairs): each takes at least its quoted name, a colon, a comma and its value or "[REDACTED]".
    Only these are decoded and redacted, so a flood of headers costs no more than the cap."""
    total = 1  # the braces, less the missing last comma
    for i, (name, value) in enumerate(headers):
        total += len(name) + min(len(value), _SHORTEST_VALUE) + 6
        if total > max_bytes:
            return i
    return len(headers)


def capped_pairs(
    pairs: Sequence[tuple[str, str]],
    raw: Headers,
    max_bytes: int,
    encode: Callable[[object], bytes],
) -> list[tuple[str, str]]:
    """The leading (redacted) `pairs` whose JSON object fits in `max_bytes` with room left for
    the marker, then the marker counting the headers of `raw` (the request's headers, in the
    same order, of which `pairs` are the first) that are left out, and their raw size.

    Each entry is measured as its encoded name and value plus ":" and ","; grouping repeated
    names into a list only makes the object shorter."""
    budget = max_bytes - _MARKER_ROOM - 1
    kept: list[tuple[str, str]] = []
    used = 0
    for name, value in pairs:
        used += len(encode(name)) + len(encode(value)) + 2
        if used > budget:
            break
        kept.append((name, value))
    rest = raw[len(kept) :]
    return [*kept, left_out_marker(len(rest), raw_size(rest))]
