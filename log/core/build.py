"""Pure row builders: what the middleware captured -> the redacted, JSON-encoded log rows.

Decisions recorded here:
  * endpoint = the path plus the REDACTED raw query string ("/items?q=abc&token=[REDACTED]");
    the query is part of what was called, and keeping it in one column keeps it greppable.
    Secrets inside path segments (/reset/<token>) cannot be recognised by name and are kept.
  * request_header: see log/core/header_column.py (at most `headers_cap` bytes).
  * bodies: see log/core/bodies.py.
  * route = the template of the route that matched (log/asgi.py: route_template), as captured.
  * created_at = when the request was received, UTC "YYYY-MM-DD HH:MM:SS.fff" (what SQLite's
    STRFTIME('%Y-%m-%d %H:%M:%f') produces, so app rows and DB defaults sort together).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

import msgspec

from log.core.bodies import HtmlMode, body_to_json
from log.core.captured import Captured
from log.core.header_column import HEADERS_MAX_BYTES, raw_size, request_header_json
from log.core.headers import Headers, content_type_of
from log.core.redact import RedactionPolicy, redact_json, redact_query_string
from log.core.rows import TASK_STATUSES, ApiLog, TaskProgressLog

_encoder = msgspec.json.Encoder()


def format_utc(epoch_seconds: float) -> str:
    total_ms = round(epoch_seconds * 1000)  # round, not floor: 0.123 * 1000 is 122.99999...
    seconds, ms = divmod(total_ms, 1000)
    return f"{_utc_second(seconds)}.{ms:03d}"


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    # Every row of the same second shares this text; datetime formatting is most of the cost.
    return f"{dt.datetime.fromtimestamp(seconds, dt.timezone.utc):%Y-%m-%d %H:%M:%S}"


def endpoint_of(path: str, query_string: str, policy: RedactionPolicy) -> str:
    return f"{path}?{redact_query_string(query_string, policy)}" if query_string else path


def build_api_log(
    c: Captured,
    *,
    row_id: int,
    policy: RedactionPolicy,
    body_cap: int,
    html_mode: HtmlMode = "summary",
    headers_cap: int = HEADERS_MAX_BYTES,
) -> ApiLog:
    memo = _memo_of(policy)
    request_header, request_type = _request_headers(c.request_headers, policy, headers_cap, memo)
    return ApiLog(
        id=row_id,
        trace_id=c.trace_id,
        method=c.method,
        endpoint=endpoint_of(c.path, c.query_string, policy),
        request_header=request_header,
        request_body=(
            None  # what body_to_json gives an empty body, without the call
            if c.request_body_size <= 0 and not c.request_body
            else body_to_json(content_type=request_type, data=c.request_body, total_size=c.request_body_size,
                              cap=body_cap, policy=policy, is_response=False)
        ),
        response_status=c.response_status,
        response_body=_response_body(c, policy, body_cap, html_mode, memo),
        duration_ms=c.duration_ms,
        ip_address=c.client_ip,
        user_id=c.user_id,
        created_at=format_utc(c.received_at),
        route=c.route,
    )


# Rows repeat: one client sends the same request headers request after request, and a route
# often answers the same small body. The row builder is pure, so the text it made for an input
# is the text it would make again; the last few are kept (keyed by the raw input, per policy)
# and a repeated input costs one dictionary lookup instead of decoding, redacting and encoding
# again. Bounded: emptied when full, and when a different policy comes along.
MEMO_MAX = 256
SMALL_BODY = 1024  # response bodies up to this many bytes are remembered
SMALL_HEADERS = 4096  # request headers of at most this many bytes (names and values) are remembered
SMALL_HEADER_COUNT = 64  # ... and at most this many headers


class _Memo:
    __slots__ = ("policy", "headers", "bodies")

    def __init__(self, policy: RedactionPolicy | None) -> None:
        self.policy = policy
        self.headers: dict[tuple[object, ...], tuple[str, str | None]] = {}
        self.bodies: dict[tuple[object, ...], str | None] = {}


_memo = _Memo(None)


def _memo_of(policy: RedactionPolicy) -> _Memo:
    global _memo
    if _memo.policy is not policy:
        _memo = _Memo(policy)
    return _memo


def _request_headers(raw: Headers, policy: RedactionPolicy, cap: int, memo: _Memo) -> tuple[str, str | None]:
    """(request_header column, Content-Type) of the raw request headers."""
    key = None
    # Only small header sets are looked up (hashing is a pass over every byte) and kept.
    if len(raw) <= SMALL_HEADER_COUNT and raw_size(raw) <= SMALL_HEADERS:
        key = (cap, tuple(raw))
        try:
            found = memo.headers.get(key)
        except TypeError:  # pairs given as lists (the ASGI spec allows any two-item iterable)
            key = None
        else:
            if found is not None:
                return found
    found = (request_header_json(raw, policy, cap), content_type_of(raw))
    if key is not None:
        if len(memo.headers) >= MEMO_MAX:
            memo.headers.clear()
        memo.headers[key] = found
    return found


def _response_body(c: Captured, policy: RedactionPolicy, body_cap: int, html_mode: HtmlMode, memo: _Memo) -> str | None:
    content_type = content_type_of(c.response_headers)
    key = None
    if len(c.response_body) <= SMALL_BODY and c.response_body.__class__ is bytes:
        key = (c.response_status, content_type, c.response_body, c.response_body_size, body_cap, html_mode)
        if key in memo.bodies:
            return memo.bodies[key]
    text = body_to_json(content_type=content_type, data=c.response_body, total_size=c.response_body_size,
                        cap=body_cap, policy=policy, is_response=True, status=c.response_status, html_mode=html_mode)
    if key is not None:
        if len(memo.bodies) >= MEMO_MAX:
            memo.bodies.clear()
        memo.bodies[key] = text
    return text


def build_exception_row(c: Captured, *, row_id: int, policy: RedactionPolicy | None = None) -> TaskProgressLog | None:
    """A FAILED step for an unhandled exception, sharing the request's trace_id; None if none."""
    if c.exception is None:
        return None
    policy = policy or RedactionPolicy()
    return task_row(
        row_id=row_id,
        trace_id=c.trace_id,
        task_name="http_request",
        step_name="unhandled_exception",
        status="FAILED",
        at=c.received_at + c.duration_ms / 1000,
        input_data={"method": c.method, "endpoint": endpoint_of(c.path, c.query_string, policy)},
        error_message=c.exception,
        stack_trace=c.stack_trace,
        redact=redactor(policy),
    )


def redact_value(value: Any, policy: RedactionPolicy) -> Any:
    """Any Python value -> a redacted JSON-ready copy. Unknown types become their str()."""
    # to_builtins first so Structs/dataclasses become dicts that redaction can see into.
    return redact_json(msgspec.to_builtins(value, enc_hook=str, str_keys=True), policy)


def redactor(policy: RedactionPolicy) -> Callable[[object], object]:
    """`redact_value` bound to a policy: the `redact` callable task rows are built with."""
    return functools.partial(redact_value, policy=policy)


_task_json = msgspec.json.Encoder(enc_hook=str, order="sorted")
REDACT_FAILED = '"[redaction failed]"'  # never fall back to the unredacted value


def encode_json(value: object) -> str:
    """JSON text for any value; unknown types become their str(), nothing raises."""
    try:
        return _task_json.encode(value).decode()
    except Exception:  # unsupported dict keys, str() itself failing, recursion
        try:
            return _task_json.encode(str(value)).decode()
        except Exception:
            return _task_json.encode(f"<unencodable {type(value).__name__}>").decode()


def json_cell(
    value: object, redact: Callable[[object], object], on_redact_error: Callable[[], None] | None = None
) -> str | None:
    """A redacted JSON column (None stays SQL NULL). A redaction failure is reported, never raised."""
    if value is None:
        return None
    try:
        redacted = redact(value)
    except Exception:
        if on_redact_error is not None:
            on_redact_error()
        return REDACT_FAILED
    return encode_json(redacted)


def json_text(value: Any, policy: RedactionPolicy) -> str | None:
    """Any Python value -> redacted JSON text (None stays SQL NULL). Never raises on odd types."""
    return json_cell(value, redactor(policy))


def task_row(
    *,
    row_id: int,
    trace_id: str,
    task_name: str,
    step_name: str,
    status: str,
    at: float,
    redact: Callable[[object], object],
    input_data: Any = None,
    output_data: Any = None,
    error_message: str | None = None,
    stack_trace: str | None = None,
    execution_order: int = 0,
    on_redact_error: Callable[[], None] | None = None,
) -> TaskProgressLog:
    """The one builder of task_progress_logs rows: step trackers and crash rows alike."""
    if status not in TASK_STATUSES:
        raise ValueError(f"status must be one of {sorted(TASK_STATUSES)}, got {status!r}")
    return TaskProgressLog(
        id=row_id,
        trace_id=trace_id,
        task_name=task_name,
        step_name=step_name,
        status=status,
        input_data=json_cell(input_data, redact, on_redact_error),
        output_data=json_cell(output_data, redact, on_redact_error),
        error_message=error_message,
        stack_trace=stack_trace,
        execution_order=execution_order,
        created_at=format_utc(at),
    )
