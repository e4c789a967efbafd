"""What the ASGI capture layer (log/asgi.py) saw of one HTTP exchange.

Raw material only: the pure builder (log/core/build.py: build_api_log) turns it into a redacted
ApiLog. The capture layer hands one Captured to a `record` callback per request; the tracing
assembly (log/tracing.py) wires that callback to build rows and emit them to the fan-out.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

# Request and response headers as the middleware saw them: raw ASGI (bytes, bytes) pairs, which
# the row builder decodes a batch at a time (text_headers), or already decoded (str, str) pairs.
Headers = Sequence[tuple[bytes, bytes]] | Sequence[tuple[str, str]]


class Captured(msgspec.Struct, kw_only=True):
    received_at: float  # time.time() when the request's first ASGI message arrived
    duration_ms: int
    method: str
    path: str
    query_string: str  # raw query string, latin-1 decoded
    request_headers: Headers  # in order; see text_headers()
    request_body: bytes  # first LOG_BODY_MAX_BYTES bytes only
    request_body_size: int  # total bytes the app received
    response_status: int  # 499 on client disconnect, 500 on unhandled exception
    response_headers: Headers
    response_body: bytes  # first LOG_BODY_MAX_BYTES bytes only
    response_body_size: int
    client_ip: str | None
    user_id: str | None
    trace_id: str  # already validated/normalised UUID string
    exception: str | None = None  # "ValueError: boom" for unhandled exceptions
    stack_trace: str | None = None


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
