"""Which trace id a request belongs to, decided from its headers alone.

Pure functions: the caller passes the id source (`new_uuid`), so tests need no patching.
Anything that came from the client is validated against a strict pattern and re-emitted in
canonical form; a value that does not match is dropped, never echoed, because the trace id ends
up in a response header, in HTML and in every log row (CRLF or megabyte junk must not get there).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from log.core.headers import first_header

# Explicit character classes instead of \w or str.isalnum(): those accept non-ASCII digits.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}")
# W3C Trace Context: version "-" trace-id "-" parent-id "-" flags; lower-case hex only.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL)
# Google: "TRACE_ID/SPAN_ID;o=OPTIONS"; span and options are optional in practice.
_CLOUD = re.compile(r"([0-9a-fA-F]{32})(?:/[0-9]*)?(?:;o=[0-9]*)?")

_ZERO_32 = "0" * 32
_ZERO_16 = "0" * 16

# Checked in this order; the first valid one wins (explicit ids beat propagated ones).
_ID_HEADERS = ("x-trace-id", "x-request-id")
_ALL_TRACE_HEADERS = frozenset({*_ID_HEADERS, "traceparent", "x-cloud-trace-context"})


def _uuid_form(hex32: str) -> str:
    h = hex32.lower()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def canonical_uuid(value: str) -> str | None:
    """`value` as a lower-case 8-4-4-4-12 UUID, or None if it is not one.

    Accepts upper case and the 32-hex form without hyphens; rejects the nil UUID because an
    all-zero id would merge unrelated requests into one trace.
    """
    if not _UUID.fullmatch(value):
        return None
    hex32 = value.replace("-", "")
    return None if hex32 == _ZERO_32 else _uuid_form(hex32)


def traceparent_trace_id(value: str) -> str | None:
    """The 32-hex trace-id of a valid W3C `traceparent` header, else None."""
    m = _TRACEPARENT.fullmatch(value)
    if m is None:
        return None
    version, trace, parent, _flags, rest = m.groups()
    if version == "ff" or trace == _ZERO_32 or parent == _ZERO_16:
        return None
    # Version 00 has exactly four fields; later versions may append more after a "-".
    if version == "00" and rest is not None:
        return None
    return trace


def cloud_context_trace_id(value: str) -> str | None:
    """The 32-hex trace id of a valid `X-Cloud-Trace-Context` header (lower-cased), else None."""
    m = _CLOUD.fullmatch(value)
    if m is None or m.group(1) == _ZERO_32:
        return None
    return m.group(1).lower()


def trace_id_from_headers(headers: Sequence[tuple[str, str]], new_uuid: Callable[[], str]) -> str:
    """The request's trace id as a canonical UUID string.

    Order: X-Trace-ID, X-Request-ID (valid UUIDs), W3C traceparent, X-Cloud-Trace-Context
    (32-hex trace ids shown in UUID form), else a fresh `new_uuid()`.
    """
    # Fast path (every request): one scan for any of the four names, usually finding none.
    if not any(key.lower() in _ALL_TRACE_HEADERS for key, _ in headers):
        return new_uuid()
    for name in _ID_HEADERS:
        value = first_header(headers, name)
        if value is not None and (tid := canonical_uuid(value)) is not None:
            return tid
    hex32 = _from_propagation(headers, prefer_cloud=False)
    if hex32 is not None:
        return _uuid_form(hex32)
    return new_uuid()


def cloud_trace_id(headers: Sequence[tuple[str, str]]) -> str | None:
    """The 32-hex trace id Google Cloud Logging correlates on, if the request carried one."""
    return _from_propagation(headers, prefer_cloud=True)


def _from_propagation(headers: Sequence[tuple[str, str]], *, prefer_cloud: bool) -> str | None:
    parsers = [("traceparent", traceparent_trace_id), ("x-cloud-trace-context", cloud_context_trace_id)]
    if prefer_cloud:
        parsers.reverse()
    for name, parse in parsers:
        value = first_header(headers, name)
        if value is not None and (hex32 := parse(value)) is not None:
            return hex32
    return None


# Each trace header's check: the id it yields, or None when the value is not valid. A row keeps
# an invalid value only as invalid_marker(value) (log/core/header_column.py).
TRACE_HEADER_CHECKS: dict[str, Callable[[str], str | None]] = {
    "x-trace-id": canonical_uuid,
    "x-request-id": canonical_uuid,
    "traceparent": traceparent_trace_id,
    "x-cloud-trace-context": cloud_context_trace_id,
}


def invalid_marker(value: str) -> str:
    return f"[invalid: {len(value)} chars]"
