"""Cloud Logging structured lines (log/cloud_logging.py, pure) and the stdout sink that writes them."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from log.core.build import build_api_log
from log.core.captured import Captured
from log.core.cloud_logging import (
    SPAN_KEY,
    TRACE_KEY,
    encode_line,
    encode_rows,
    entry,
    header_pairs,
    latency,
    severity,
    trace_context,
)
from log.core.redact import RedactionPolicy
from log.core.rows import ApiLog, TaskProgressLog
from log.sinks.base import SinkError
from log.sinks.stdout_sink import StdoutSink

BIG_ID = 2**62 + 12345  # not representable as a double: must survive as a string
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLOUD_HDR = f"{TRACE}/12345;o=1"
PARENT_HDR = f"00-{TRACE}-00f067aa0ba902b7-01"



def api(**kw) -> ApiLog:
    base = dict(
        id=BIG_ID, trace_id="0af76519-16cd-43dd-8448-eb211c80319c", method="GET", endpoint="/items?q=a",
        request_header=json.dumps({"host": "example.run.app", "user-agent": "curl/8", "x-forwarded-proto": "https"}),
        request_body=None, response_status=200, response_body=None, duration_ms=123,
        ip_address="203.0.113.9", user_id=None, created_at="2026-11-27 09:01:02.345",
    )
    return ApiLog(**{**base, **kw})


def task(**kw) -> TaskProgressLog:
    base = dict(
        id=7, trace_id="0af76519-16cd-43dd-8448-eb211c80319c", task_name="import", step_name="parse",
        status="SUCCESS", input_data=None, output_data=None, error_message=None, stack_trace=None,
        execution_order=1, created_at="2026-11-27 09:01:02.345",
    )
    return TaskProgressLog(**{**base, **kw})


# --- pure formatting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "INFO"), (302, "INFO"), (399, "INFO"), (400, "WARNING"), (404, "WARNING"), (499, "WARNING"),
     (500, "ERROR"), (503, "ERROR"), (None, "INFO")],
)
def test_api_severity_follows_status(status, expected) -> None:
    assert severity(api(response_status=status)) == expected


@pytest.mark.parametrize(("status", "expected"), [("FAILED", "ERROR"), ("SUCCESS", "INFO"), ("START", "INFO"), ("IN_PROGRESS", "INFO")])
def test_task_severity(status, expected) -> None:
    assert severity(task(status=status)) == expected


def test_latency_is_a_duration_string() -> None:
    assert latency(123) == "0.123s"
    assert latency(0) == "0.000s"
    assert latency(61_005) == "61.005s"


def test_api_entry_fields() -> None:
    e = entry(api(), project="my-proj")
    assert e["severity"] == "INFO"
    assert e["message"] == "GET /items?q=a 200 123ms"
    assert e["time"] == "2026-11-27T09:01:02.345Z"
    assert e["httpRequest"] == {
        "requestMethod": "GET", "requestUrl": "https://example.run.app/items?q=a", "status": 200,
        "latency": "0.123s", "remoteIp": "203.0.113.9", "userAgent": "curl/8",
    }
    # No Cloud trace context in the headers: the row's trace id, without dashes.
    assert e[TRACE_KEY] == "projects/my-proj/traces/0af7651916cd43dd8448eb211c80319c"
    assert e[SPAN_KEY] == f"{BIG_ID:016x}"
    assert e["logging.googleapis.com/insertId"] == f"api_logs-{BIG_ID}"
    assert e["table"] == "api_logs"
    assert e["row"]["id"] == str(BIG_ID)
    assert {k: v for k, v in e["row"].items() if k != "id"} == {
        k: v for k, v in msgspec.structs.asdict(api()).items() if k != "id"
    }


def test_user_agent_only_when_sent_and_path_only_without_host() -> None:
    e = entry(api(request_header="{}", ip_address=None), project="p")
    assert "userAgent" not in e["httpRequest"] and "remoteIp" not in e["httpRequest"]
    assert e["httpRequest"]["requestUrl"] == "/items?q=a"


def test_cloud_trace_context_links_to_cloud_runs_request_log() -> None:
    headers = json.dumps({"x-cloud-trace-context": CLOUD_HDR, "traceparent": f"00-{'1' * 32}-00f067aa0ba902b7-01"})
    e = entry(api(request_header=headers), project="proj")
    assert e[TRACE_KEY] == f"projects/proj/traces/{TRACE}"
    assert e[SPAN_KEY] == f"{12345:016x}"  # decimal span in, 16 hex digits out
    assert e["logging.googleapis.com/trace_sampled"] is True


def test_traceparent_when_no_cloud_header() -> None:
    e = entry(api(request_header=json.dumps({"traceparent": PARENT_HDR})), project="proj")
    assert e[TRACE_KEY] == f"projects/proj/traces/{TRACE}"
    assert e[SPAN_KEY] == "00f067aa0ba902b7"
    assert e["logging.googleapis.com/trace_sampled"] is True


def test_invalid_context_falls_back_to_the_row_trace_id() -> None:
    e = entry(api(request_header=json.dumps({"x-cloud-trace-context": "junk\r\nx"})), project=None)
    assert e[TRACE_KEY] == "0af7651916cd43dd8448eb211c80319c"  # no project: the bare id


def test_trace_context_pure_cases() -> None:
    assert trace_context([]) is None
    assert trace_context([("x-cloud-trace-context", TRACE)]) == (TRACE, None, None)
    assert trace_context([("x-cloud-trace-context", f"{TRACE}/0;o=0")]) == (TRACE, None, False)
    assert header_pairs('{"a": ["1", "2"], "b": 3}') == [("a", "1"), ("a", "2")]
    assert header_pairs("not json") == [] and header_pairs(None) == []


def test_the_redacted_request_header_keeps_the_trace_headers() -> None:
    # The real builder's redaction must not eat the headers the trace link is made from.
    captured = Captured(
        trace_id="0af76519-16cd-43dd-8448-eb211c80319c", method="GET", path="/", query_string="",
        request_headers=[("x-cloud-trace-context", CLOUD_HDR), ("traceparent", PARENT_HDR),
                         ("authorization", "Bearer s3cr3t"), ("user-agent", "ua")],
        request_body=b"", request_body_size=0, response_status=200, response_headers=[],
        response_body=b"", response_body_size=0, duration_ms=5, client_ip="127.0.0.1",
        user_id=None, received_at=1_790_000_000.0, exception=None, stack_trace=None,
    )
    row = build_api_log(captured, row_id=1, policy=RedactionPolicy(), body_cap=1024)
    e = entry(row, project="proj")
    assert e[TRACE_KEY] == f"projects/proj/traces/{TRACE}"
    assert e["httpRequest"]["userAgent"] == "ua"
    assert "s3cr3t" not in encode_line(e).decode()


def test_failed_task_row_is_an_error_with_its_message() -> None:
    e = entry(task(status="FAILED", error_message="boom"), project="p")
    assert e["severity"] == "ERROR" and e["message"] == "import.parse FAILED: boom"
    assert "httpRequest" not in e and e["row"]["id"] == "7"
    assert e[TRACE_KEY] == "projects/p/traces/0af7651916cd43dd8448eb211c80319c"


def test_crlf_in_values_cannot_forge_lines() -> None:
    forged = '"}\r\n{"severity":"CRITICAL","message":"forged"}\n'
    row = api(endpoint="/x" + forged, request_header=json.dumps({"user-agent": forged, "x": "\u2028\u2029\x85"}))
    data = encode_rows([row, task(error_message=forged, stack_trace="a\nb\r\nc")], project="p")
    lines = data.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert b"\r" not in data
    assert len(data.decode().splitlines()) == 2  # also for readers that split on U+2028 and friends
    assert json.loads(lines[0])["httpRequest"]["userAgent"] == forged
    assert json.loads(lines[1])["row"]["error_message"] == forged


@given(st.text(), st.text())
def test_any_text_stays_one_parseable_line(a: str, b: str) -> None:
    line = encode_line(entry(api(endpoint=a, request_header=json.dumps({"user-agent": b})), project="p"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded = json.loads(line)
    assert decoded["row"]["endpoint"] == a.encode("utf-8", "backslashreplace").decode("utf-8")


# --- the sink ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sink_writes_lines_to_an_injected_binary_stream() -> None:
    out = io.BytesIO()
    sink = StdoutSink(out, project="p")
    await sink.open()
    result = await sink.write("api_logs", [api(), api(id=2, response_status=500)])
    await sink.close()
    assert result.inserted == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["row"]["id"] for line in lines] == [str(BIG_ID), "2"]
    assert [line["severity"] for line in lines] == ["INFO", "ERROR"]
    assert sink.stats() == {"lines_written": 2}


class RecordingText(io.StringIO):
    """A text stream that records which thread wrote and how often it was flushed."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()
        self.flushes = 0

    def write(self, s: str) -> int:
        self.threads.add(threading.get_ident())
        return super().write(s)

    def flush(self) -> None:
        self.flushes += 1


@pytest.mark.anyio
async def test_sink_writes_from_a_worker_thread_and_flushes() -> None:
    out = RecordingText()
    sink = StdoutSink(out)
    await sink.write("task_progress_logs", [task()])
    assert out.threads and threading.get_ident() not in out.threads
    assert out.flushes >= 1
    assert json.loads(out.getvalue())["row"]["task_name"] == "import"


@pytest.mark.anyio
async def test_sink_defaults_to_sys_stdout_at_write_time(capsys) -> None:
    sink = StdoutSink(project="p")
    await sink.write("api_logs", [api()])
    captured = capsys.readouterr().out
    assert json.loads(captured)["row"]["id"] == str(BIG_ID)


@pytest.mark.anyio
async def test_sink_with_a_lock_file(tmp_path: Path) -> None:
    out = io.BytesIO()
    sink = StdoutSink(out, lock_path=tmp_path / "sub" / "stdout.lock")
    await sink.open()
    await sink.write("api_logs", [api()])
    assert (tmp_path / "sub" / "stdout.lock").exists() and out.getvalue().count(b"\n") == 1


@pytest.mark.anyio
async def test_sink_errors_are_sink_errors() -> None:
    out = io.BytesIO()
    out.close()
    sink = StdoutSink(out)
    with pytest.raises(SinkError) as raised:
        await sink.write("api_logs", [api()])
    assert raised.value.retryable
    with pytest.raises(SinkError) as unknown:
        await sink.write("nope", [api()])
    assert not unknown.value.retryable


header_texts = st.one_of(
    st.none(),
    st.just("not json"),
    st.dictionaries(st.sampled_from(["host", "user-agent", "x-forwarded-proto", "traceparent", "x-cloud-trace-context"]),
                    st.text(max_size=60), max_size=4).map(json.dumps),
    st.just(json.dumps({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "host": "h"})),
)
odd_text = st.text(alphabet=st.sampled_from(["a", "\u2028", "\u2029", "\x85", "\n", "\ud800", '"', "é"]), max_size=6)


@given(st.lists(st.tuples(header_texts, odd_text, st.booleans()), max_size=8))
def test_a_batch_is_the_lines_of_its_rows_whatever_came_before(rows) -> None:
    """encode_rows encodes a batch in one call and remembers each header text's facts: its bytes
    must be encode_line's for each row's entry, built from scratch."""
    from log.core import cloud_logging

    batch = [api(id=i + 1, request_header=h, endpoint="/" + text) if is_api else task(id=i + 1, error_message=text)
             for i, (h, text, is_api) in enumerate(rows)]
    got = encode_rows(batch, project="p")
    cloud_logging._facts.clear()
    assert got == b"".join(encode_line(entry(r, project="p")) for r in batch)
    assert got.count(b"\n") == len(batch)


def reference_entry(row: ApiLog | TaskProgressLog, project: str | None) -> dict:
    """entry() written the plain way, from the documented helpers: the fast one must equal it."""
    from log.core.cloud_logging import INSERT_ID_KEY, SAMPLED_KEY, rfc3339
    from log.core.headers import first_header
    from log.core.rows import table_of

    table = table_of(row)
    if isinstance(row, ApiLog):
        ms = "" if row.duration_ms is None else f" {row.duration_ms}ms"
        message = f"{row.method} {row.endpoint} {row.response_status}{ms}"
    else:
        text = f"{row.task_name}.{row.step_name} {row.status}"
        message = f"{text}: {row.error_message}" if row.error_message else text
    out: dict = {"severity": severity(row), "message": message, "time": rfc3339(row.created_at)}
    context = None
    if isinstance(row, ApiLog):
        pairs = header_pairs(row.request_header)
        host = first_header(pairs, "host")
        proto = (first_header(pairs, "x-forwarded-proto") or "http").split(",")[0].strip()
        origin = f"{proto if proto in ('http', 'https') else 'http'}://{host}" if host else ""
        http = {"requestMethod": row.method, "requestUrl": origin + row.endpoint}
        if row.response_status is not None:
            http["status"] = row.response_status
        if row.duration_ms is not None:
            http["latency"] = latency(row.duration_ms)
        if row.ip_address:
            http["remoteIp"] = row.ip_address
        if first_header(pairs, "user-agent") is not None:
            http["userAgent"] = first_header(pairs, "user-agent")
        out["httpRequest"] = http
        context = trace_context(pairs)
    trace, span, sampled = context or (row.trace_id.replace("-", "").lower(), None, None)
    out[TRACE_KEY] = f"projects/{project}/traces/{trace}" if project else trace
    out[SPAN_KEY] = span or f"{row.id & 0xFFFF_FFFF_FFFF_FFFF:016x}"
    if sampled is not None:
        out[SAMPLED_KEY] = sampled
    out[INSERT_ID_KEY] = f"{table}-{row.id}"
    out["table"] = table
    out["row"] = {**msgspec.structs.asdict(row), "id": str(row.id)}
    return out


@given(
    st.lists(
        st.tuples(
            header_texts | st.just(json.dumps({"x-cloud-trace-context": CLOUD_HDR, "host": "h", "x-forwarded-proto": "https"})),
            st.one_of(st.none(), st.sampled_from([200, 399, 400, 499, 500, 599]), st.integers(100, 599)),
            st.one_of(st.none(), st.sampled_from([-1, 0, 1, 999, 1000]), st.integers(-5, 10**7)),
            st.one_of(st.none(), st.just(""), st.just("203.0.113.9")),
            st.booleans(),
            st.sampled_from(["FAILED", "SUCCESS"]),
            st.one_of(st.none(), odd_text),
        ),
        max_size=6,
    ),
    st.sampled_from([None, "", "proj"]),
)
def test_entries_equal_the_plain_construction(rows, project) -> None:
    for i, (header, status, duration, ip, is_api, task_status, message) in enumerate(rows):
        row = (api(id=i, request_header=header, response_status=status, duration_ms=duration, ip_address=ip)
               if is_api else task(id=BIG_ID + i, status=task_status, error_message=message))
        got, want = entry(row, project=project), reference_entry(row, project)
        assert got == want
        assert encode_line(got) == encode_line(want)  # the same keys in the same order
