"""What the ASGI capture layer (log/asgi.py) saw of one HTTP exchange.

Raw material only: the pure builder (log/core/build.py: build_api_log) turns it into a redacted
ApiLog. The capture layer hands one Captured to a `record` callback per request; the tracing
assembly (log/tracing.py) wires that callback to build rows and emit them to the fan-out.
"""

from __future__ import annotations

import msgspec

from log.core.headers import Headers


class Captured(msgspec.Struct):
    # Built once per request: log/asgi.py passes the values positionally (keywords cost about
    # a microsecond more per request), in this order.
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
    route: str | None = None  # the matched route's template, read from the scope after the app ran
    # Ids given by the write-ahead record (log/sinks/wal.py) when the response completed, so the
    # row built later, or rebuilt at recovery after a crash, has them; 0: not given yet.
    row_id: int = 0
    crash_id: int = 0  # the FAILED task row's id, when there is an exception
