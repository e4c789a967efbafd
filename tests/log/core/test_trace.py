import re
import uuid

from hypothesis import given
from hypothesis import strategies as st

from log.core.trace import cloud_trace_id, trace_id_from_headers

CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FRESH = "00000000-0000-4000-8000-00000000abcd"
TP_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TP_UUID = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"


def fresh() -> str:
    return FRESH


def tid(*headers: tuple[str, str]) -> str:
    return trace_id_from_headers(list(headers), fresh)


def test_no_headers_uses_the_id_source():
    assert tid() == FRESH
    assert tid(("accept", "*/*")) == FRESH


def test_x_trace_id_is_normalised_to_lower_case_canonical_form():
    assert tid(("x-trace-id", "0F8FAD5B-D9CB-469F-A165-70867728950E")) == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert tid(("X-Trace-ID", "0f8fad5bd9cb469fa16570867728950e")) == "0f8fad5b-d9cb-469f-a165-70867728950e"


def test_x_trace_id_beats_x_request_id_beats_traceparent():
    tp = ("traceparent", f"00-{TP_TRACE}-00f067aa0ba902b7-01")
    a = ("x-trace-id", "11111111-1111-1111-1111-111111111111")
    b = ("x-request-id", "22222222-2222-2222-2222-222222222222")
    assert tid(tp, b, a) == a[1]
    assert tid(tp, b) == b[1]
    assert tid(tp) == TP_UUID


def test_invalid_x_trace_id_falls_through_to_next_source():
    assert tid(("x-trace-id", "not-a-uuid"), ("x-request-id", "22222222-2222-2222-2222-222222222222")) == (
        "22222222-2222-2222-2222-222222222222"
    )
    assert tid(("x-trace-id", "00000000-0000-0000-0000-000000000000")) == FRESH
    # Hyphens are all or nothing, surrounding junk is not trimmed away.
    assert tid(("x-trace-id", "0f8fad5b-d9cb469fa16570867728950e")) == FRESH
    assert tid(("x-trace-id", "{0f8fad5b-d9cb-469f-a165-70867728950e}")) == FRESH
    assert tid(("x-trace-id", "0f8fad5b-d9cb-469f-a165-70867728950e\r\nx: y")) == FRESH
    assert tid(("x-trace-id", "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e")) == FRESH


def test_traceparent_rules():
    ok = f"00-{TP_TRACE}-00f067aa0ba902b7-01"
    assert tid(("traceparent", ok)) == TP_UUID
    # Future versions may carry extra fields; version 00 may not.
    assert tid(("traceparent", f"01-{TP_TRACE}-00f067aa0ba902b7-01-extra")) == TP_UUID
    assert tid(("traceparent", ok + "-extra")) == FRESH
    assert tid(("traceparent", f"ff-{TP_TRACE}-00f067aa0ba902b7-01")) == FRESH
    assert tid(("traceparent", f"00-{'0' * 32}-00f067aa0ba902b7-01")) == FRESH
    assert tid(("traceparent", f"00-{TP_TRACE}-{'0' * 16}-01")) == FRESH
    assert tid(("traceparent", ok.upper())) == FRESH  # the spec demands lower-case hex
    assert tid(("traceparent", f"00-{TP_TRACE[:-1]}-00f067aa0ba902b7-01")) == FRESH


def test_cloud_trace_context():
    assert tid(("x-cloud-trace-context", f"{TP_TRACE.upper()}/123;o=1")) == TP_UUID
    assert tid(("x-cloud-trace-context", TP_TRACE)) == TP_UUID
    assert tid(("x-cloud-trace-context", f"{TP_TRACE}/abc;o=1")) == FRESH
    assert tid(("x-cloud-trace-context", "0" * 32 + "/1;o=1")) == FRESH


def test_cloud_trace_id_prefers_the_cloud_header_and_returns_32_hex():
    other = "a" * 32
    assert cloud_trace_id([("x-cloud-trace-context", f"{other}/1;o=1"), ("traceparent", f"00-{TP_TRACE}-00f067aa0ba902b7-01")]) == other
    assert cloud_trace_id([("traceparent", f"00-{TP_TRACE}-00f067aa0ba902b7-01")]) == TP_TRACE
    assert cloud_trace_id([("x-trace-id", TP_UUID)]) is None
    assert cloud_trace_id([("x-cloud-trace-context", "junk")]) is None


header_names = st.sampled_from(["x-trace-id", "x-request-id", "traceparent", "x-cloud-trace-context", "cookie"])
junk = st.one_of(
    st.text(),
    st.text(alphabet="0123456789abcdefABCDEF-/;o=\r\n \t", max_size=80),
    st.text(min_size=1000, max_size=3000),
    st.uuids().map(lambda u: str(u) + "\r\nSet-Cookie: x=1"),
    st.uuids().map(lambda u: "\u00e9" + str(u)),
)


@given(st.lists(st.tuples(header_names, junk), max_size=6))
def test_output_is_always_canonical_uuid(headers):
    out = trace_id_from_headers(headers, lambda: str(uuid.uuid4()))
    assert CANONICAL.fullmatch(out)


@given(st.lists(st.tuples(header_names, junk), max_size=6))
def test_junk_never_passes_through(headers):
    out = trace_id_from_headers(headers, fresh)
    # Whatever came out is either the fresh id or hex digits that were in some header value,
    # re-emitted in canonical form, never a raw header value that is not already canonical.
    assert out == FRESH or any(out.replace("-", "") in v.lower().replace("-", "") for _, v in headers)
    for _, v in headers:
        if not CANONICAL.fullmatch(v):
            assert out != v


@given(st.uuids(), st.booleans(), st.booleans(), st.sampled_from(["x-trace-id", "x-request-id", "X-Request-Id"]))
def test_valid_uuids_are_preserved(u, upper, bare, name):
    if u.int == 0:
        return
    value = u.hex if bare else str(u)
    value = value.upper() if upper else value
    assert trace_id_from_headers([(name, value)], fresh) == str(u)


@given(st.from_regex(r"[0-9a-f]{32}", fullmatch=True), st.from_regex(r"[0-9a-f]{16}", fullmatch=True))
def test_valid_traceparents_are_preserved(trace, parent):
    if trace == "0" * 32 or parent == "0" * 16:
        return
    out = trace_id_from_headers([("traceparent", f"00-{trace}-{parent}-01")], fresh)
    assert out.replace("-", "") == trace
    assert cloud_trace_id([("traceparent", f"00-{trace}-{parent}-01")]) == trace
