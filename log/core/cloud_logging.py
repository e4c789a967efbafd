"""Log rows as Google Cloud Logging structured entries: one JSON object per line on stdout.

Cloud Run's logging agent parses each stdout line that is a JSON object and lifts these keys
into the LogEntry (everything else becomes jsonPayload):
  severity, message, time, httpRequest, logging.googleapis.com/trace, .../spanId,
  .../trace_sampled, .../insertId.
Pure functions of plain values; the stdout sink (log/sinks/stdout_sink.py) only writes the bytes.

Decisions:
  * severity: api rows by status (<400 INFO, 4xx WARNING, 5xx ERROR; no status INFO), task rows
    ERROR when FAILED, else INFO.
  * trace: the request's own Cloud trace context (X-Cloud-Trace-Context, else traceparent) as
    kept in the row's request_header JSON, so the entry nests under Cloud Run's request log;
    otherwise the row's trace_id without dashes. Task rows carry no headers, so they use their
    trace_id: the same trace whenever the request's trace id came from that context (the
    capture layer prefers traceparent/X-Cloud-Trace-Context unless the client sent X-Trace-ID).
  * spanId: the context's span (X-Cloud-Trace-Context spans are decimal; Cloud Logging wants
    16 hex digits), else the row id in hex (unique per row).
  * the row itself rides along under "row", with its id as a STRING: Cloud Logging stores JSON
    numbers as doubles, and Snowflake ids above 2**53 would come back rounded.
  * insertId = "<table>-<id>": a row replayed after a retry is de-duplicated by Cloud Logging.
  * one line per entry whatever the values hold: JSON escapes CR/LF and other control
    characters; U+2028, U+2029 and U+0085 (line breaks to some readers) are escaped too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec
from msgspec.structs import asdict

from log.core.headers import first_header
from log.core.rows import ApiLog, LogRow, TaskProgressLog
from log.core.trace import cloud_context_trace_id, cloud_trace_id, traceparent_trace_id

TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"
INSERT_ID_KEY = "logging.googleapis.com/insertId"

_encoder = msgspec.json.Encoder()
_headers_decoder = msgspec.json.Decoder(dict[str, Any])
_CLOUD_SPAN = re.compile(r"[0-9a-fA-F]{32}/([0-9]+)(?:;o=([0-9]+))?")
_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def severity(row: LogRow) -> str:
    if isinstance(row, TaskProgressLog):
        return "ERROR" if row.status == "FAILED" else "INFO"
    status = row.response_status
    if status is None or status < 400:
        return "INFO"
    return "WARNING" if status < 500 else "ERROR"


def latency(duration_ms: int) -> str:
    """Milliseconds as a protobuf Duration string: 123 -> "0.123s" (integer math, no float drift)."""
    seconds, ms = divmod(max(duration_ms, 0), 1000)
    return f"{seconds}.{ms:03d}s"


def rfc3339(created_at: str) -> str:
    """The rows' UTC "YYYY-MM-DD HH:MM:SS.fff" as RFC 3339 ("YYYY-MM-DDTHH:MM:SS.fffZ")."""
    return created_at.replace(" ", "T", 1) + "Z"


def header_pairs(request_header: str | None) -> list[tuple[str, str]]:
    """The row's redacted request_header JSON back into (name, value) pairs; junk gives []."""
    if not request_header:
        return []
    try:
        headers = _headers_decoder.decode(request_header)
    except msgspec.DecodeError:
        return []
    pairs: list[tuple[str, str]] = []
    for name, value in headers.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str):
                pairs.append((name.lower(), v))
    return pairs


def trace_context(pairs: Sequence[tuple[str, str]]) -> tuple[str, str | None, bool | None] | None:
    """(trace 32-hex, span 16-hex or None, sampled or None) from the request's Cloud trace
    context headers; the same precedence as log.core.trace.cloud_trace_id (Google's header first)."""
    trace = cloud_trace_id(pairs)
    if trace is None:
        return None
    cloud = first_header(pairs, "x-cloud-trace-context")
    if cloud is not None and cloud_context_trace_id(cloud) == trace:
        m = _CLOUD_SPAN.fullmatch(cloud)
        if m is None:
            return trace, None, None
        span = int(m.group(1))
        span_hex = f"{span:016x}" if 0 < span < 2**64 else None
        return trace, span_hex, None if m.group(2) is None else m.group(2) == "1"
    parent = first_header(pairs, "traceparent") or ""
    if traceparent_trace_id(parent) == trace:
        _, _, span_id, flags = parent.split("-")[:4]
        return trace, span_id, bool(int(flags, 16) & 1)
    return trace, None, None  # pragma: no cover - cloud_trace_id only reads those two headers


def _request_url(endpoint: str, pairs: Sequence[tuple[str, str]]) -> str:
    return (_origin(pairs) or "") + endpoint


def _origin(pairs: Sequence[tuple[str, str]]) -> str | None:
    """"proto://host" the request was sent to, or None without a Host header."""
    host = first_header(pairs, "host")
    if not host:
        return None
    proto = (first_header(pairs, "x-forwarded-proto") or "http").split(",")[0].strip()
    return f"{proto if proto in ('http', 'https') else 'http'}://{host}"


# What an entry takes from a row's request headers: (origin, user agent, trace context).
HeaderFacts = tuple[str | None, str | None, tuple[str, str | None, bool | None] | None]
# One client sends the same headers request after request, and the row builder then hands the
# same request_header text: its facts are kept, keyed by that text (a pure function of it),
# at most FACTS_MAX of them, texts up to FACTS_TEXT_MAX characters.
FACTS_MAX, FACTS_TEXT_MAX = 256, 4096
_facts: dict[str | None, HeaderFacts] = {}


def header_facts(request_header: str | None) -> HeaderFacts:
    found = _facts.get(request_header)
    if found is None:
        pairs = header_pairs(request_header)
        found = (_origin(pairs), first_header(pairs, "user-agent"), trace_context(pairs))
        if request_header is None or len(request_header) <= FACTS_TEXT_MAX:
            if len(_facts) >= FACTS_MAX:
                _facts.clear()
            _facts[request_header] = found
    return found


def _row_payload(row: LogRow) -> dict[str, Any]:
    payload = msgspec.structs.asdict(row)
    payload["id"] = str(row.id)
    return payload


def _message(row: LogRow) -> str:
    if isinstance(row, ApiLog):
        ms = "" if row.duration_ms is None else f" {row.duration_ms}ms"
        return f"{row.method} {row.endpoint} {row.response_status}{ms}"
    text = f"{row.task_name}.{row.step_name} {row.status}"
    return f"{text}: {row.error_message}" if row.error_message else text


def entry(row: LogRow, *, project: str | None) -> dict[str, Any]:
    """The structured entry for one row (a plain dict; see encode_line). Written out per table,
    with the small helpers above inlined: it runs for every row on the stdout lane."""
    if row.__class__ is ApiLog or isinstance(row, ApiLog):
        return _api_entry(row, project)  # type: ignore[arg-type]
    return _task_entry(row, project)  # type: ignore[arg-type]


def _api_entry(row: ApiLog, project: str | None) -> dict[str, Any]:
    status, duration, endpoint = row.response_status, row.duration_ms, row.endpoint
    origin, agent, context = header_facts(row.request_header)
    http: dict[str, Any] = {"requestMethod": row.method, "requestUrl": endpoint if origin is None else origin + endpoint}
    if status is None:
        severity_ = "INFO"
    else:
        http["status"] = status
        severity_ = "INFO" if status < 400 else "WARNING" if status < 500 else "ERROR"
    if duration is None:
        message = f"{row.method} {endpoint} {status}"
    else:
        seconds, ms = divmod(duration, 1000) if duration > 0 else (0, 0)
        http["latency"] = f"{seconds}.{ms:03d}s"
        message = f"{row.method} {endpoint} {status} {duration}ms"
    if row.ip_address:
        http["remoteIp"] = row.ip_address
    if agent is not None:
        http["userAgent"] = agent
    row_id = row.id
    payload = asdict(row)
    payload["id"] = str(row_id)
    if context is None:
        trace = row.trace_id.replace("-", "").lower()
        out = {
            "severity": severity_, "message": message, "time": row.created_at.replace(" ", "T", 1) + "Z",
            "httpRequest": http,
            # Without a project the trace cannot be a resource name; the bare id still groups entries.
            TRACE_KEY: f"projects/{project}/traces/{trace}" if project else trace,
            SPAN_KEY: f"{row_id & 0xFFFF_FFFF_FFFF_FFFF:016x}",
        }
    else:
        trace, span, sampled = context
        out = {
            "severity": severity_, "message": message, "time": row.created_at.replace(" ", "T", 1) + "Z",
            "httpRequest": http,
            TRACE_KEY: f"projects/{project}/traces/{trace}" if project else trace,
            SPAN_KEY: span or f"{row_id & 0xFFFF_FFFF_FFFF_FFFF:016x}",
        }
        if sampled is not None:
            out[SAMPLED_KEY] = sampled
    out[INSERT_ID_KEY] = f"api_logs-{row_id}"
    out["table"] = "api_logs"
    out["row"] = payload
    return out


def _task_entry(row: TaskProgressLog, project: str | None) -> dict[str, Any]:
    trace = row.trace_id.replace("-", "").lower()
    return {
        "severity": severity(row),
        "message": _message(row),
        "time": rfc3339(row.created_at),
        TRACE_KEY: f"projects/{project}/traces/{trace}" if project else trace,
        SPAN_KEY: f"{row.id & 0xFFFF_FFFF_FFFF_FFFF:016x}",
        INSERT_ID_KEY: f"task_progress_logs-{row.id}",
        "table": "task_progress_logs",
        "row": _row_payload(row),
    }


def encode_line(obj: dict[str, Any]) -> bytes:
    """One JSON object and a newline; never more than one line, never raises on odd strings."""
    try:
        data = _encoder.encode(obj)
    except UnicodeEncodeError:  # lone surrogates (e.g. from an exception text): escape them
        data = _encoder.encode(_clean(obj))
    return _escape_breaks(data) + b"\n"


# U+2028, U+2029 and U+0085 as UTF-8: searched in the bytes (C-speed), decoded only if found.
_BREAK_BYTES = tuple(ch.encode("utf-8") for ch in _LINE_BREAKS)


def _escape_breaks(data: bytes) -> bytes:
    # All three are non-ASCII: ASCII-only bytes (one C pass, most batches) hold none of them.
    if data.isascii() or not any(b in data for b in _BREAK_BYTES):
        return data
    text = data.decode("utf-8")
    for ch, escaped in _LINE_BREAKS.items():
        text = text.replace(ch, escaped)  # only inside strings, where \\uXXXX means the same
    return text.encode("utf-8")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def encode_rows(rows: Sequence[LogRow], *, project: str | None) -> bytes:
    """The rows' lines, encoded in one call for the batch (encode_line's bytes, line by line)."""
    entries = [entry(row, project=project) for row in rows]
    try:
        data = _encoder.encode_lines(entries)
    except UnicodeEncodeError:  # a lone surrogate somewhere: each line on its own, as encode_line does
        return b"".join(map(encode_line, entries))
    return _escape_breaks(data)
