import datetime as dt

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from log.core.build import build_api_log, build_exception_row, endpoint_of, format_utc, json_text, redactor, task_row
from log.core.captured import Captured
from log.core.redact import REDACTED, RedactionPolicy

POLICY = RedactionPolicy()
TRACE = "0b9f8c2e-6d1a-4c1e-9a53-2b7f3f1d9e10"


def captured(**overrides) -> Captured:
    values = dict(
        received_at=1_764_230_400.25,  # 2025-11-27 08:00:00.250 UTC
        duration_ms=12,
        method="POST",
        path="/login",
        query_string="next=%2Fhome&token=abc",
        request_headers=[
            ("host", "example.test"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", "session=s1"),
            ("accept", "text/html"),
            ("accept", "application/json"),
        ],
        request_body=b"email=a%40b.c&password=hunter2",
        request_body_size=30,
        response_status=303,
        response_headers=[("content-type", "text/html; charset=utf-8"), ("set-cookie", "session=s2")],
        response_body=b"<html>redirect</html>",
        response_body_size=21,
        client_ip="203.0.113.9",
        user_id="6f1e2d3c-0000-4000-8000-000000000001",
        trace_id=TRACE,
    )
    values.update(overrides)
    return Captured(**values)


def test_build_api_log_full_row():
    row = build_api_log(captured(), row_id=42, policy=POLICY, body_cap=1024, html_mode="summary")
    assert row.id == 42
    assert row.trace_id == TRACE
    assert row.method == "POST"
    assert row.endpoint == f"/login?next=%2Fhome&token={REDACTED}"
    assert msgspec.json.decode(row.request_header) == {
        "host": "example.test",
        "content-type": "application/x-www-form-urlencoded",
        "cookie": REDACTED,
        "accept": ["text/html", "application/json"],
    }
    assert msgspec.json.decode(row.request_body) == {"email": "a@b.c", "password": REDACTED}
    assert row.response_status == 303
    assert msgspec.json.decode(row.response_body)["summary"]["content_type"] == "text/html"
    assert (row.duration_ms, row.ip_address, row.user_id) == (12, "203.0.113.9", "6f1e2d3c-0000-4000-8000-000000000001")
    assert row.created_at == "2025-11-27 08:00:00.250"
    assert "hunter2" not in msgspec.json.encode(row).decode()
    assert "s1" not in row.request_header


def test_empty_bodies_are_null_and_no_query_means_bare_path():
    row = build_api_log(
        captured(
            method="GET", query_string="", request_body=b"", request_body_size=0, response_body=b"", response_body_size=0
        ),
        row_id=1,
        policy=POLICY,
        body_cap=1024,
    )
    assert (row.endpoint, row.request_body, row.response_body) == ("/login", None, None)


def test_error_html_kept_and_body_cap_applied():
    page = b"<h1>Server error</h1>" * 10
    c = captured(response_status=500, response_body=page, response_body_size=len(page))
    row = build_api_log(c, row_id=1, policy=POLICY, body_cap=21, html_mode="summary")
    expected = {"truncated": True, "size": len(page), "kept": 21, "text": "<h1>Server error</h1>"}
    assert msgspec.json.decode(row.response_body) == expected


def test_exception_row():
    assert build_exception_row(captured(), row_id=7) is None
    c = captured(response_status=500, exception="ValueError: boom", stack_trace="Traceback...\nValueError: boom")
    row = build_exception_row(c, row_id=7)
    assert row is not None
    assert (row.id, row.trace_id, row.task_name, row.step_name, row.status) == (
        7, TRACE, "http_request", "unhandled_exception", "FAILED"
    )  # fmt: skip
    assert (row.error_message, row.stack_trace, row.execution_order) == (
        "ValueError: boom", "Traceback...\nValueError: boom", 0
    )  # fmt: skip
    endpoint = f"/login?next=%2Fhome&token={REDACTED}"
    assert msgspec.json.decode(row.input_data) == {"method": "POST", "endpoint": endpoint}
    assert row.created_at == "2025-11-27 08:00:00.262"  # received + duration


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (0, "1970-01-01 00:00:00.000"),
        (0.123, "1970-01-01 00:00:00.123"),
        (1_764_230_400.9996, "2025-11-27 08:00:01.000"),
        (1_764_230_400.001, "2025-11-27 08:00:00.001"),
    ],
)
def test_format_utc_examples(epoch, text):
    assert format_utc(epoch) == text


@given(st.integers(min_value=0, max_value=4_102_444_800_000))  # up to 2100
def test_format_utc_exact_ms(ms):
    text = format_utc(ms / 1000)
    assert len(text) == 23
    parsed = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc)
    assert round(parsed.timestamp() * 1000) == ms


def test_task_row_redacts_and_encodes_any_value():
    class Thing:
        def __str__(self) -> str:
            return "Thing()"

    row = task_row(
        row_id=5, trace_id=TRACE, task_name="import", step_name="fetch", status="IN_PROGRESS", at=0.5,
        redact=redactor(POLICY), input_data={"url": "https://x", "api_key": "k", "obj": Thing(), 3: {"a"}}, output_data=[1, 2],
        execution_order=2,
    )  # fmt: skip
    assert msgspec.json.decode(row.input_data) == {"url": "https://x", "api_key": REDACTED, "obj": "Thing()", "3": ["a"]}
    assert row.output_data == "[1,2]"
    assert (row.error_message, row.stack_trace, row.execution_order, row.created_at) == (None, None, 2, "1970-01-01 00:00:00.500")
    assert json_text(None, POLICY) is None
    with pytest.raises(ValueError):
        task_row(row_id=1, trace_id=TRACE, task_name="t", step_name="s", status="DONE", at=0, redact=redactor(POLICY))


def test_redactor_for_task_tracker():
    import dataclasses

    @dataclasses.dataclass
    class Login:
        email: str
        password: str

    redact = redactor(POLICY)
    assert redact({"user": Login("a@b.c", "hunter2"), "n": 1}) == {"user": {"email": "a@b.c", "password": REDACTED}, "n": 1}
    assert redact(None) is None


def test_endpoint_of():
    assert endpoint_of("/a", "", POLICY) == "/a"
    assert endpoint_of("/a", "x=1&password=2", POLICY) == f"/a?x=1&password={REDACTED}"


def test_long_header_values_are_cut_and_marked_secrets_still_redacted():
    long = "x" * 70_000
    c = msgspec.structs.replace(
        captured(), request_headers=[("user-agent", long), ("x-api-key", "k" * 5000), ("accept", "*/*")]
    )
    row = build_api_log(c, row_id=1, policy=POLICY, body_cap=1024)
    headers = msgspec.json.decode(row.request_header)
    assert headers["user-agent"] == "x" * 2048 + "…[70000 chars]"
    assert headers["x-api-key"] == REDACTED
    assert headers["accept"] == "*/*"
    assert len(row.request_header) < 2300


def test_content_type_is_read_from_raw_or_decoded_headers_last_one_wins() -> None:
    from log.core.headers import content_type_of as _content_type

    raw = [(b"Content-Type", b"text/plain"), (b"x-a", b"1"), (b"content-type", b"application/json; charset=latin-1")]
    assert _content_type(raw) == "application/json; charset=latin-1"
    assert _content_type([("CONTENT-TYPE", "text/html")]) == "text/html"
    assert _content_type([(b"content-typex", b"text/html")]) is None
    assert _content_type([]) is None


# Repeated inputs (one client's headers, a route's small body) are remembered: the rows must be
# exactly those built from scratch, whatever came before, under each policy.
header_sets = st.lists(
    st.tuples(st.sampled_from([b"host", b"cookie", b"authorization", b"content-type", b"x-api-key", b"accept"]),
              st.binary(max_size=12)),
    max_size=4,
)
bodies = st.sampled_from([b"", b'{"ok":true}', b'{"password":"p"}', b"<html>x</html>", b"x" * 2000])


@given(st.lists(st.tuples(header_sets, bodies, st.sampled_from([200, 404, 500]), st.booleans(),
                          st.sampled_from([16384, 120])), max_size=12))
def test_remembered_parts_give_the_rows_built_from_scratch(requests) -> None:
    from log.core import build

    strict = RedactionPolicy(key_patterns=("ok",))  # a second policy: "ok" is a secret there
    for headers, body, status, use_strict, headers_cap in requests:
        policy = strict if use_strict else POLICY
        c = captured(request_headers=headers, request_body=b"", request_body_size=0, response_body=body,
                     response_body_size=len(body), response_status=status,
                     response_headers=[(b"content-type", b"application/json")])
        got = build_api_log(c, row_id=1, policy=policy, body_cap=16384, headers_cap=headers_cap)
        build._memo = build._Memo(None)  # forget everything: the row from scratch
        assert got == build_api_log(c, row_id=1, policy=policy, body_cap=16384, headers_cap=headers_cap)


def test_remembered_headers_stay_redacted_and_large_ones_are_not_kept() -> None:
    from log.core import build

    headers = [(b"authorization", b"Bearer secret"), (b"host", b"h")]
    for _ in range(2):
        row = build_api_log(captured(request_headers=headers), row_id=1, policy=POLICY, body_cap=16384)
        assert "secret" not in row.request_header and REDACTED in row.request_header
    big = [(b"x-big", b"v" * 5000)]
    build_api_log(captured(request_headers=big), row_id=1, policy=POLICY, body_cap=16384)
    kept = [raw for _cap, raw in build._memo.headers]
    assert tuple(big) not in kept and tuple(headers) in kept


def test_header_pairs_given_as_lists_are_built_without_the_memo() -> None:
    headers = [[b"authorization", b"Bearer secret"], [b"host", b"h"]]  # any two-item iterable (ASGI)
    row = build_api_log(captured(request_headers=headers), row_id=1, policy=POLICY, body_cap=16384)
    assert row.request_header == '{"authorization":"[REDACTED]","host":"h"}'
