"""log/explorer/spans.py: a trace's rows paired into spans and placed under their requests."""

from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import given
from hypothesis import strategies as st

from log.core.rows import ApiLog, TaskProgressLog
from log.explorer.spans import OPEN, OPEN_SPAN, POINT, SPAN, build, epoch_ms, split_runs

T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
TRACE = "aaaaaaaa-0000-4000-8000-000000000001"
_ids = itertools.count(1)


def at(ms: int) -> str:
    t = T0 + dt.timedelta(milliseconds=ms)
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d}"


def request(ms: int, duration: int | None, user: str | None = "7", endpoint: str = "/items/import") -> ApiLog:
    return ApiLog(id=next(_ids), trace_id=TRACE, method="POST", endpoint=endpoint, request_header=None,
                  request_body=None, response_status=200, response_body=None, duration_ms=duration,
                  ip_address=None, user_id=user, created_at=at(ms))


def task(ms: int, step: str, status: str, order: int, name: str = "Bulk_Import", **extra) -> TaskProgressLog:
    return TaskProgressLog(id=next(_ids), trace_id=TRACE, task_name=name, step_name=step, status=status,
                           input_data=extra.get("input"), output_data=extra.get("output"),
                           error_message=extra.get("error"), stack_trace=extra.get("stack"),
                           execution_order=order, created_at=at(ms))


def import_rows(t: int = 14_000) -> list[TaskProgressLog]:
    """The Bulk_Import of handlers/imports.py: 3 steps, with progress rows, starting at t ms."""
    return [
        task(t, "Validation", "START", 1),
        task(t + 100, "Validation", "IN_PROGRESS", 2, output='{"done":5000}'),
        task(t + 200, "Validation", "IN_PROGRESS", 3, output='{"done":10000}'),
        task(t + 300, "Validation", "SUCCESS", 4),
        task(t + 300, "Transform", "START", 5),
        task(t + 300, "Transform", "IN_PROGRESS", 6),
        task(t + 301, "Transform", "SUCCESS", 7),
        task(t + 301, "DB_Commit", "START", 8),
        task(t + 800, "DB_Commit", "IN_PROGRESS", 9),
        task(t + 1_200, "DB_Commit", "SUCCESS", 10),
    ]


def test_an_import_is_one_span_per_step_under_its_request_with_the_wait_before_it() -> None:
    wf = build([request(0, 15_359)], import_rows())
    assert wf.total == 15_359 and len(wf.requests) == 1 and not wf.orphan_runs
    (bar,) = wf.requests
    assert (bar.start, bar.end) == (0, 15_359)
    (run,) = bar.runs
    assert run.task == "Bulk_Import"
    assert [(s.name, s.shape, s.status, s.start, s.duration, len(s.ticks)) for s in run.steps] == [
        ("Validation", SPAN, "SUCCESS", 14_000, 300, 2),
        ("Transform", SPAN, "SUCCESS", 14_300, 1, 1),
        ("DB_Commit", SPAN, "SUCCESS", 14_301, 899, 1),
    ]
    assert [t.row.output_data for t in run.steps[0].ticks] == ['{"done":5000}', '{"done":10000}']
    assert (run.start, run.end) == (14_000, 15_200)
    # 14 s before the first step is called out; 159 ms after the last (1 % of the request) is not
    assert [(g.start, g.end, g.before) for g in bar.gaps] == [(0, 14_000, "Bulk_Import › Validation")]
    assert bar.gaps[0].next_step is run.steps[0]
    late = build([request(0, 20_000)], import_rows()).requests[0]
    assert [(g.start, g.end, g.before, g.next_step) for g in late.gaps][-1] == (15_200, 20_000, None, None)
    # the table's order: the wait, the steps, the wait for the response
    assert [getattr(e, "name", "gap") for e in late.entries] == ["gap", "Validation", "Transform", "DB_Commit", "gap"]


def test_a_failed_step_keeps_its_end_row_and_a_step_without_one_is_open() -> None:
    rows = [
        task(10, "Validation", "START", 1),
        task(20, "Validation", "FAILED", 2, error="ValueError: bad row", stack="Traceback ..."),
        task(30, "Commit", "START", 3),
        task(40, "Commit", "IN_PROGRESS", 4),
    ]
    wf = build([request(0, 50)], rows)
    failed, open_ = wf.requests[0].runs[0].steps
    assert (failed.shape, failed.status, failed.duration, failed.failed) == (SPAN, "FAILED", 10, True)
    assert failed.outcome.error_message == "ValueError: bad row" and failed.outcome.stack_trace == "Traceback ..."
    assert (open_.shape, open_.status, open_.end, open_.duration, len(open_.ticks)) == (OPEN_SPAN, OPEN, None, None, 1)
    assert wf.requests[0].runs[0].end is None  # a run with an open step has no end yet


def test_one_row_records_are_point_events_each_its_own_run() -> None:
    rows = [
        task(5, "DB_Commit", "SUCCESS", 1, name="Item_Create"),
        task(9, "DB_Commit", "SUCCESS", 1, name="Item_Create"),
        task(12, "unhandled_exception", "FAILED", 0, name="http_request", error="RuntimeError: boom"),
    ]
    wf = build([request(0, 12)], rows)
    runs = wf.requests[0].runs
    assert [(r.task, [(s.shape, s.start, s.duration) for s in r.steps]) for r in runs] == [
        ("Item_Create", [(POINT, 5, None)]), ("Item_Create", [(POINT, 9, None)]),
        ("http_request", [(POINT, 12, None)]),  # the crash row, at the response: inside the window
    ]
    assert runs[2].steps[0].failed and runs[2].failed


def test_runs_split_when_the_execution_order_starts_again() -> None:
    rows = [task(0, "A", "START", 1), task(1, "A", "SUCCESS", 2), task(2, "A", "START", 1),
            task(3, "A", "SUCCESS", 2), task(2, "B", "SUCCESS", 1, name="Other")]
    assert [[r.execution_order for r in run] for run in split_runs(rows)] == [[1, 2], [1, 2], [1]]


def test_requests_in_time_order_each_with_its_own_runs_and_the_rest_kept_apart() -> None:
    page = request(0, 40, endpoint="/items")
    create = request(1_000, 30, endpoint="/items")
    rows = [task(1_020, "DB_Commit", "SUCCESS", 1, name="Item_Create"), task(5_000, "Late", "SUCCESS", 1, name="Cron")]
    wf = build([create, page], rows)
    assert [b.row for b in wf.requests] == [page, create]
    assert wf.requests[0].runs == () and [r.task for r in wf.requests[1].runs] == ["Item_Create"]
    assert [r.task for r in wf.orphan_runs] == ["Cron"]
    assert wf.total == 5_000
    assert [s.name for s in wf.steps] == ["DB_Commit", "Late"]


def test_requests_from_different_users_are_marked() -> None:
    wf = build([request(0, 5, user="7"), request(10, 5, user=None), request(20, 5, user="8"), request(30, 5, user="7")], [])
    assert wf.users == ("7", "8") and wf.mixed_users
    assert [b.other_user for b in wf.requests] == [False, False, True, False]
    same = build([request(0, 5, user="7"), request(10, 5, user=None), request(20, 5, user="7")], [])
    assert not same.mixed_users and not any(b.other_user for b in same.requests)


def test_odd_rows_never_break_the_page() -> None:
    bad = ApiLog(id=1, trace_id=TRACE, method="GET", endpoint="/", request_header=None, request_body=None,
                 response_status=None, response_body=None, duration_ms=None, ip_address=None, user_id=None,
                 created_at="not a time")
    wf = build([bad], [task(0, "Ghost", "IN_PROGRESS", 3), task(0, "Ghost", "SUCCESS", 4)])
    assert wf.total >= 1 and wf.requests[0].start == 0 and wf.requests[0].end == 0
    assert [s.shape for s in wf.steps] == [POINT, POINT]  # a tick or an end with nothing open
    assert build([], []).total == 1
    assert epoch_ms("2026-03-10 12:00:00.250") == round(T0.timestamp() * 1000) + 250
    assert epoch_ms("garbage") is None


# -- properties ------------------------------------------------------------------------------------

STEP_NAMES = st.sampled_from(["Validation", "Transform", "DB_Commit"])


@st.composite
def tracker_runs(draw) -> list[TaskProgressLog]:
    """Rows as TaskTracker writes them: sequential steps, each START, n progress rows, and an end
    row (SUCCESS / FAILED) unless it was cut off; time never goes backwards."""
    rows: list[TaskProgressLog] = []
    t, order = draw(st.integers(0, 1_000)), 0
    for name in draw(st.lists(STEP_NAMES, min_size=1, max_size=4)):
        order += 1
        rows.append(task(t, name, "START", order))
        for _ in range(draw(st.integers(0, 3))):
            t += draw(st.integers(0, 50))
            order += 1
            rows.append(task(t, name, "IN_PROGRESS", order))
        end = draw(st.sampled_from(["SUCCESS", "FAILED", None]))
        if end is None:
            return rows
        t += draw(st.integers(0, 50))
        order += 1
        rows.append(task(t, name, end, order))
    return rows


@given(tracker_runs(), st.integers(0, 3_000))
def test_tracker_rows_make_one_span_per_start_and_lose_no_row(rows, duration) -> None:
    wf = build([request(0, duration)], rows)
    steps = wf.steps
    assert len(steps) == sum(r.status == "START" for r in rows)
    assert all(s.shape in (SPAN, OPEN_SPAN) for s in steps)
    assert sum(len(s.ticks) for s in steps) == sum(r.status == "IN_PROGRESS" for r in rows)
    assert [s.name for s in steps] == [r.step_name for r in rows if r.status == "START"]  # execution order
    for s in steps:
        assert 0 <= s.start <= wf.total
        assert s.end is None or s.start <= s.end <= wf.total
        assert all(s.start <= t.at <= (s.end if s.end is not None else wf.total) for t in s.ticks)
    assert sum(s.shape == OPEN_SPAN for s in steps) == (rows[-1].status in ("START", "IN_PROGRESS"))


ANY_ROW = st.tuples(st.integers(0, 500), STEP_NAMES, st.sampled_from(["START", "IN_PROGRESS", "SUCCESS", "FAILED"]),
                    st.integers(0, 6), st.sampled_from(["T1", "T2"]))


@given(st.lists(ANY_ROW, max_size=30), st.lists(st.tuples(st.integers(0, 500), st.integers(0, 200)), max_size=4))
def test_any_rows_are_each_shown_exactly_once(raw, reqs) -> None:
    rows = [task(ms, step, status, order, name=name) for ms, step, status, order, name in raw]
    wf = build([request(ms, d) for ms, d in reqs], rows)
    shown = [id_ for s in wf.steps for id_ in (s.first.id, s.last.id if s.last else None, *(t.row.id for t in s.ticks))
             if id_ is not None]
    assert sorted(shown) == sorted(r.id for r in rows)
    assert [b.start for b in wf.requests] == sorted(b.start for b in wf.requests)
    for bar in wf.requests:
        for gap in bar.gaps:
            assert bar.start <= gap.start < gap.end <= bar.end


@given(st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9999, 1, 1)))
def test_created_at_reads_as_its_millisecond(t) -> None:
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond // 1000:03d}"
    expected = round(t.replace(microsecond=t.microsecond // 1000 * 1000, tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert epoch_ms(text) == expected
