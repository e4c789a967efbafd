"""The request_header column (log/core/header_column.py), through the row builder: bounded
whatever the client sends, redacted, trace headers checked."""

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from log.core.build import build_api_log
from log.core.header_column import HEADER_VALUE_MAX, LEFT_OUT, column_pairs
from log.core.redact import REDACTED, RedactionPolicy
from tests.log.core.test_build import TRACE, captured

POLICY = RedactionPolicy()


def test_a_16_mb_header_block_becomes_a_column_within_the_cap_with_a_marker() -> None:
    # 8,000 headers of 2,000 bytes: the request, as uvicorn hands it over (raw pairs).
    raw = [(b"host", b"example.test")] + [(b"x-h%d" % i, b"v" * 2000) for i in range(8000)]
    row = build_api_log(captured(request_headers=raw), row_id=1, policy=POLICY, body_cap=1024)
    assert len(row.request_header.encode()) <= 16 * 1024
    headers = msgspec.json.decode(row.request_header)
    names = list(headers)
    assert names[:3] == ["host", "x-h0", "x-h1"]  # in order, from the first
    kept = len(names) - 2  # host and the marker
    assert names[-1] == LEFT_OUT
    left_out = raw[1 + kept :]
    assert headers[LEFT_OUT] == f"{len(left_out)} headers, {sum(len(n) + len(v) for n, v in left_out)} bytes"
    assert 7 <= kept < 8000


@given(
    headers=st.lists(
        st.tuples(st.sampled_from(["a", "cookie", "x-trace-id", "accept", "b" * 40]),
                  st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=3000)),
        max_size=60,
    ),
    cap=st.integers(1024, 20_000),
)
def test_the_header_column_never_exceeds_its_cap(headers: list[tuple[str, str]], cap: int) -> None:
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    row = build_api_log(captured(request_headers=raw), row_id=1, policy=POLICY, body_cap=1024, headers_cap=cap)
    assert len(row.request_header.encode()) <= cap
    decoded = msgspec.json.decode(row.request_header)
    if LEFT_OUT not in decoded:  # nothing left out: every header is there
        assert set(decoded) == {n for n, _ in headers}


def test_invalid_trace_headers_are_stored_as_a_marker_not_as_sent() -> None:
    junk = "not-a-uuid <script>" + "j" * 60
    raw = [(b"x-trace-id", junk.encode()), (b"x-request-id", TRACE.encode()),
           (b"traceparent", b"00-zz-bad"), (b"x-cloud-trace-context", b"0af7651916cd43dd8448eb211c80319c/1;o=1")]
    row = build_api_log(captured(request_headers=raw), row_id=1, policy=POLICY, body_cap=1024)
    headers = msgspec.json.decode(row.request_header)
    assert headers["x-trace-id"] == f"[invalid: {len(junk)} chars]"
    assert headers["traceparent"] == "[invalid: 9 chars]"
    assert headers["x-request-id"] == TRACE  # valid ones stay: they correlate with other systems
    assert headers["x-cloud-trace-context"] == "0af7651916cd43dd8448eb211c80319c/1;o=1"
    assert "not-a-uuid" not in row.request_header


def test_names_are_lower_cased_and_judged_whatever_their_case_or_number() -> None:
    pairs = [("Cookie", "s=1"), ("REFERER", "https://a.example/?token=t1"), ("X-Trace-Id", "junk")]
    assert column_pairs(pairs, POLICY) == [
        ("cookie", REDACTED), ("referer", f"https://a.example/?token={REDACTED}"), ("x-trace-id", "[invalid: 4 chars]"),
    ]
    # Thousands of distinct names (the memo of verdicts is bounded) change no verdict.
    many = [(f"x-n{i}".encode(), b"v") for i in range(3000)] + [(b"authorization", b"Bearer t1")]
    assert column_pairs(many, POLICY)[-1] == ("authorization", REDACTED)


def test_a_long_value_is_cut_and_marked_and_a_secret_is_still_redacted() -> None:
    pairs = column_pairs([(b"user-agent", b"u" * 5000), (b"x-api-key", b"k" * 5000)], POLICY)
    assert pairs == [("user-agent", "u" * HEADER_VALUE_MAX + "…[5000 chars]"), ("x-api-key", REDACTED)]
