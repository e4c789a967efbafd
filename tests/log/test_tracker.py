import itertools
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from log.core.rows import TaskProgressLog
from log.core.build import format_utc as _format_utc
from log.core.build import encode_json
from log.tasks import TaskTracker

TRACE = "0f8fad5b-d9cb-469f-a165-70867728950e"
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC



def make(rows: list[TaskProgressLog], **kw) -> TaskTracker:
    ids = itertools.count(100)
    ticks = itertools.count()
    options = dict(emit=rows.append, next_id=lambda: next(ids), clock=lambda: T0 + next(ticks) * 0.5)
    options.update(kw)
    return TaskTracker(TRACE, "import_csv", **options)


def summary(rows: list[TaskProgressLog]) -> list[tuple]:
    return [(r.step_name, r.status, r.execution_order) for r in rows]


@pytest.mark.anyio
async def test_success_path_rows():
    rows: list[TaskProgressLog] = []
    tracker = make(rows)
    async with tracker.step("Validation", input={"rows": 10, "file": "a.csv"}) as step:
        step.output = {"valid": 9, "invalid": 1}
    assert summary(rows) == [("Validation", "START", 1), ("Validation", "SUCCESS", 2)]
    start, done = rows
    assert (start.id, done.id) == (100, 101)
    assert {r.trace_id for r in rows} == {TRACE} and {r.task_name for r in rows} == {"import_csv"}
    assert json.loads(start.input_data) == {"rows": 10, "file": "a.csv"} and start.output_data is None
    assert json.loads(done.output_data) == {"valid": 9, "invalid": 1} and done.input_data is None
    assert (done.error_message, done.stack_trace) == (None, None)
    assert start.created_at == "2023-11-14 22:13:20.000"
    assert done.created_at == "2023-11-14 22:13:20.500"


def failing_parser(data):
    raise ValueError(f"bad row {data}")


@pytest.mark.anyio
async def test_failure_path_rows_and_reraise():
    rows: list[TaskProgressLog] = []
    tracker = make(rows)
    with pytest.raises(ValueError, match="bad row 3") as caught:
        async with tracker.step("Parse", input={"n": 3}):
            failing_parser(3)
    assert summary(rows) == [("Parse", "START", 1), ("Parse", "FAILED", 2)]
    failed = rows[1]
    assert failed.error_message == "ValueError: bad row 3"
    assert "failing_parser" in failed.stack_trace and failed.stack_trace.endswith("ValueError: bad row 3\n")
    assert caught.value.args == ("bad row 3",)  # the very exception, unchanged


@pytest.mark.anyio
async def test_progress_rows_and_ordering_across_steps():
    rows: list[TaskProgressLog] = []
    tracker = make(rows)
    async with tracker.step("Load") as step:
        for done in (1, 2):
            step.progress({"done": done, "of": 2})
        step.output = {"loaded": 2}
    with pytest.raises(KeyError):
        async with tracker.step("Save", input=["a", "b"]):
            raise KeyError("b")
    with tracker.step("Cleanup"):  # the sync variant shares the same counter
        pass
    assert summary(rows) == [
        ("Load", "START", 1),
        ("Load", "IN_PROGRESS", 2),
        ("Load", "IN_PROGRESS", 3),
        ("Load", "SUCCESS", 4),
        ("Save", "START", 5),
        ("Save", "FAILED", 6),
        ("Cleanup", "START", 7),
        ("Cleanup", "SUCCESS", 8),
    ]
    assert [json.loads(r.output_data) for r in rows[1:3]] == [{"done": 1, "of": 2}, {"done": 2, "of": 2}]
    assert json.loads(rows[4].input_data) == ["a", "b"]
    assert rows[5].error_message == "KeyError: 'b'"
    assert [r.id for r in rows] == list(range(100, 108))
    assert rows[6].input_data is None and rows[7].output_data is None


def test_sync_failure_reraises():
    rows: list[TaskProgressLog] = []
    with pytest.raises(ZeroDivisionError):
        with make(rows).step("Divide"):
            1 / 0
    assert summary(rows) == [("Divide", "START", 1), ("Divide", "FAILED", 2)]
    assert rows[1].error_message == "ZeroDivisionError: division by zero"


def test_trackers_do_not_share_state():
    rows_a: list[TaskProgressLog] = []
    rows_b: list[TaskProgressLog] = []
    with make(rows_a).step("A"):
        pass
    with make(rows_b).step("B"):
        pass
    assert [r.execution_order for r in rows_a] == [1, 2] == [r.execution_order for r in rows_b]


def test_redaction_applies_to_input_output_and_progress():
    rows: list[TaskProgressLog] = []

    def redact(v):
        return {k: ("[REDACTED]" if k == "password" else x) for k, x in v.items()}

    with make(rows, redact=redact).step("Login", input={"user": "u", "password": "hunter2"}) as step:
        step.progress({"password": "hunter2", "n": 1})
        step.output = {"password": "hunter2"}
    assert all("hunter2" not in (r.input_data or "") + (r.output_data or "") for r in rows)
    assert json.loads(rows[0].input_data) == {"user": "u", "password": "[REDACTED]"}


def test_logging_failures_never_break_the_task():
    def bad_emit(row):
        raise RuntimeError("queue full")

    def bad_redact(v):
        raise RuntimeError("redactor bug")

    tracker = make([], emit=bad_emit)
    with tracker.step("S", input={"a": 1}) as step:
        step.progress(1)
    assert tracker.emit_errors == 3

    rows: list[TaskProgressLog] = []
    tracker = make(rows, redact=bad_redact)
    with tracker.step("S", input={"secret": "s3cr3t"}):
        pass
    assert rows[0].input_data == '"[redaction failed]"' and tracker.redact_errors == 1


class Opaque:
    def __str__(self):
        return "opaque!"


class Hostile:
    def __str__(self):
        raise RuntimeError("no str")


def test_encode_json_handles_anything():
    assert json.loads(encode_json({"o": Opaque(), "d": Decimal("1.5"), "s": {2, 1}})) == {
        "s": [1, 2],
        "d": "1.5",
        "o": "opaque!",
    }
    assert json.loads(encode_json({(1, 2): "tuple key"})) is not None
    assert json.loads(encode_json(Hostile())) == "<unencodable Hostile>"
    loop: list = []
    loop.append(loop)
    assert isinstance(json.loads(encode_json(loop)), str)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
                    lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=20))
def test_encode_json_always_gives_json_text(value):
    text = encode_json(value)
    assert isinstance(text, str)
    json.loads(text)  # raises unless it is JSON text


def test_format_utc():
    assert _format_utc(0) == "1970-01-01 00:00:00.000"
    assert _format_utc(T0 + 0.123) == "2023-11-14 22:13:20.123"
    assert _format_utc(T0 + 0.9996) == "2023-11-14 22:13:21.000"  # rounds, never prints ".1000"


# -- one-row events: record() ---------------------------------------------------------------------


def test_record_writes_one_row_with_its_outcome():
    rows: list[TaskProgressLog] = []
    tracker = make(rows)
    tracker.record("DB_Update_Start", "SUCCESS", input={"name": "Lamp", "password": "hunter2"}, output={"id": 7})
    (row,) = rows
    assert (row.step_name, row.status, row.execution_order, row.id) == ("DB_Update_Start", "SUCCESS", 1, 100)
    assert json.loads(row.input_data) == {"name": "Lamp", "password": "hunter2"}  # make() does not redact
    assert json.loads(row.output_data) == {"id": 7}
    assert (row.error_message, row.stack_trace) == (None, None)


def test_record_counts_on_in_the_run_after_steps():
    rows: list[TaskProgressLog] = []
    tracker = make(rows)
    with tracker.step("Validation"):
        pass
    tracker.record("DB_Commit", "SUCCESS")
    assert summary(rows) == [("Validation", "START", 1), ("Validation", "SUCCESS", 2), ("DB_Commit", "SUCCESS", 3)]


def test_record_an_exception_keeps_its_text_and_traceback():
    rows: list[TaskProgressLog] = []
    tracker = make(rows)
    try:
        failing_parser("x")
    except ValueError as exc:
        tracker.record("DB_Commit", "FAILED", error=exc)
    tracker.record("DB_Commit", "FAILED", error="not found")
    raised, said = rows
    assert raised.error_message == "ValueError: bad row x" and "in failing_parser" in raised.stack_trace
    assert (said.error_message, said.stack_trace) == ("not found", None)


def test_record_refuses_an_unknown_status_and_writes_nothing():
    rows: list[TaskProgressLog] = []
    with pytest.raises(ValueError, match="status must be one of"):
        make(rows).record("DB_Commit", "DONE")
    assert rows == []


def test_record_never_raises_when_emit_fails():
    def broken(row):
        raise OSError("disk full")

    tracker = make([], emit=broken)
    tracker.record("DB_Commit", "SUCCESS")
    assert tracker.emit_errors == 1
