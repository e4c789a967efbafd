"""HTTP header helpers for the capture and the row builders: the one home for reading headers.

Headers arrive as raw ASGI (bytes, bytes) pairs, which the row builder decodes a batch at a time
(text_headers), or already decoded (str, str) pairs. Pure functions of plain values.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

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
