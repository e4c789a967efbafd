"""The trace page through the real app (in-process): the waterfall's markup from known rows."""

from __future__ import annotations

import datetime as dt
import math
import re
import sqlite3
from pathlib import Path

import pytest

from log.core.rows import ApiLog, TaskProgressLog, columns
from log.explorer.queries import SNOWFLAKE_EPOCH_MS, UTC, stamp

pytestmark = pytest.mark.anyio

TRACE = "cccccccc-0000-4000-8000-00000000000c"
BUSY = "dddddddd-0000-4000-8000-00000000000d"


def insert(data_dir: Path, api: list[ApiLog], steps: list[TaskProgressLog]) -> None:
    conn = sqlite3.connect(data_dir / "logs.db", isolation_level=None)
    for row_type, rows in ((ApiLog, api), (TaskProgressLog, steps)):
        cols = columns(row_type)
        table = "api_logs" if row_type is ApiLog else "task_progress_logs"
        conn.executemany(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                         [[getattr(r, c) for c in cols] for r in rows])
    conn.close()


class Rows:
    """Rows of one trace at known offsets from t0 (ms), with unique snowflake ids."""

    def __init__(self, trace: str, t0: dt.datetime) -> None:
        self.trace, self.t0, self.seq = trace, t0, 0

    def _id(self, at: dt.datetime) -> int:
        self.seq += 1
        return ((math.floor(at.timestamp() * 1000) - SNOWFLAKE_EPOCH_MS) << 22) | self.seq

    def request(self, ms: int, duration: int, user: str | None, endpoint: str, status: int = 200) -> ApiLog:
        at = self.t0 + dt.timedelta(milliseconds=ms)
        return ApiLog(id=self._id(at), trace_id=self.trace, method="POST", endpoint=endpoint, request_header="{}",
                      request_body=None, response_status=status, response_body=None, duration_ms=duration,
                      ip_address="10.0.0.1", user_id=user, created_at=stamp(at))

    def step(self, ms: int, name: str, status: str, order: int, **extra: str | None) -> TaskProgressLog:
        at = self.t0 + dt.timedelta(milliseconds=ms)
        return TaskProgressLog(id=self._id(at), trace_id=self.trace, task_name="Bulk_Import", step_name=name,
                               status=status, input_data=extra.get("input"), output_data=extra.get("output"),
                               error_message=extra.get("error"), stack_trace=extra.get("stack"),
                               execution_order=order, created_at=stamp(at))


@pytest.fixture
async def admin(make_client, tmp_path):
    client = await make_client()
    await client.signup("admin@example.com")  # the first account is the admin
    t0 = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    r = Rows(TRACE, t0)
    api = [r.request(0, 15_359, "1", "/items/import"), r.request(16_000, 12, "99", "/items?q=x")]
    steps = [
        r.step(14_000, "Validation", "START", 1, input='{"rows":3}'),
        r.step(14_100, "Validation", "IN_PROGRESS", 2, output='{"done":2,"total":3}'),
        r.step(14_300, "Validation", "SUCCESS", 3),
        r.step(14_300, "Transform", "START", 4),
        r.step(14_301, "Transform", "SUCCESS", 5),
        r.step(14_301, "DB_Commit", "START", 6),
        r.step(14_900, "DB_Commit", "FAILED", 7, error="IntegrityError: UNIQUE constraint failed: items.name",
               stack='Traceback (most recent call last):\n  File "store.py", line 9\nIntegrityError'),
    ]
    insert(tmp_path, api, steps)
    return client


async def test_the_tab_title_names_the_trace_by_its_random_end(admin) -> None:
    # New trace ids begin with their time: traces of the same minute share the first groups.
    page = await admin.get(f"/logs/traces/{TRACE}")
    assert "<title>Trace 00000000000c" in page.text


def items(html: str, kind: str) -> list[str]:
    return re.findall(rf'<li [^>]*data-kind="{kind}"[^>]*>', html)


async def test_an_import_is_one_bar_per_step_under_its_request(admin) -> None:
    page = await admin.get(f"/logs/traces/{TRACE}")
    assert page.status_code == 200
    html = page.text
    assert len(items(html, "request")) == 2 and len(items(html, "task")) == 1
    steps = items(html, "step")
    assert [re.search(r'data-status="(\w+)"', s)[1] for s in steps] == ["SUCCESS", "SUCCESS", "FAILED"]
    assert all('data-shape="span"' in s for s in steps)
    assert html.index(">Validation<") < html.index(">Transform<") < html.index(">DB_Commit<")
    # durations beside the bars, the 14 s before the first step called out
    for text in ("15,359 ms</text>", "300 ms</text>", "1 ms</text>", "599 ms</text>", "gap 14,000 ms</text>",
                 "no step running<span class=\"sr-only\"> for 14,000 ms, before Bulk_Import › Validation"):
        assert text in html
    assert html.index('data-kind="gap"') < html.index('data-kind="task"')  # the wait comes first
    rows = re.findall(r'<tr data-row="(\w+)"><td>[^<]*</td><td[^>]*>([^<]*)<', html)
    assert rows == [("request", "POST /items/import"), ("gap", "no step running, before Bulk_Import › Validation"),
                    ("step", "Bulk_Import › Validation"), ("step", "Bulk_Import › Transform"),
                    ("step", "Bulk_Import › DB_Commit"), ("request", "POST /items?q=x")]
    # the progress row is a tick with its payload, not an entry of its own
    assert "IN_PROGRESS" not in html and 'data-ticks="1"' in html
    assert '+14,100 ms</span> <span class="break-all">{&#34;done&#34;:2,&#34;total&#34;:3}' in html
    # the failure: open by default, with its error and stack
    failed = html[html.index('data-status="FAILED"'):]
    assert re.match(r'data-status="FAILED">\s*<details class="group" open>', failed)
    assert "IntegrityError: UNIQUE constraint failed: items.name" in failed
    assert "File &#34;store.py&#34;, line 9" in failed


async def test_requests_from_different_users_are_marked(admin, monkeypatch) -> None:
    from store.sqlite import SqliteStore

    async def user_emails(self, user_ids: set[str]) -> dict[str, str]:  # what the store knows
        return {"1": "admin@example.com"} if "1" in user_ids else {}

    monkeypatch.setattr(SqliteStore, "user_emails", user_emails, raising=False)
    html = (await admin.get(f"/logs/traces/{TRACE}")).text
    assert 'data-testid="mixed-users"' in html
    # by email where the store can tell, by id otherwise
    assert re.search(r"requests from 2 users share this trace\s+\(admin@example.com, 99\)", html)
    assert re.findall(r'data-testid="request-user">([^<]+)<', html) == ["admin@example.com", "99"]
    requests = re.split(r'(?=<li data-kind="request")', html)[1:]
    marked = [r for r in requests if 'data-testid="other-user"' in r]
    assert len(requests) == 2 and len(marked) == 1 and 'data-user="99"' in marked[0]


async def test_a_trace_of_thousands_of_progress_rows_stays_small(admin, tmp_path) -> None:
    b = Rows(BUSY, dt.datetime.now(UTC) - dt.timedelta(minutes=5))
    steps = [b.step(0, "DB_Commit", "START", 1)]
    steps += [b.step(i, "DB_Commit", "IN_PROGRESS", i + 1, output=f'{{"done":{i}}}') for i in range(1, 5_001)]
    insert(tmp_path, [b.request(0, 6_000, "1", "/items/import")], steps)
    page = await admin.get(f"/logs/traces/{BUSY}")
    assert page.status_code == 200
    html = page.text
    assert 'data-ticks="5000"' in html and "The first 100 of 5000." in html
    assert len(re.findall('data-kind="tick"', html)) == 100
    assert 'data-shape="open"' in html and "No end row" in html
    assert len(html) < 200_000


async def test_a_log_database_that_does_not_answer_is_a_503_with_its_message(admin, monkeypatch) -> None:
    from log import LogDatabaseError
    from log.explorer import LogReader

    async def down(self, trace_id):
        raise LogDatabaseError("connection refused")

    monkeypatch.setattr(LogReader, "trace", down)
    page = await admin.get(f"/logs/traces/{TRACE}")
    assert page.status_code == 503
    assert "The log database did not answer: connection refused" in page.text
    assert 'data-testid="waterfall"' not in page.text


async def test_a_running_import_shows_its_steps_before_its_request_row_exists(admin, tmp_path) -> None:
    running = "ffffffff-0000-4000-8000-00000000000f"
    r = Rows(running, dt.datetime.now(UTC) - dt.timedelta(seconds=3))
    insert(tmp_path, [], [r.step(0, "Validation", "START", 1), r.step(10, "Validation", "SUCCESS", 2),
                          r.step(10, "Transform", "START", 3), r.step(900, "Transform", "IN_PROGRESS", 4)])
    html = (await admin.get(f"/logs/traces/{running}")).text
    assert not items(html, "request") and len(items(html, "orphans")) == 1
    assert "a request still running has no row yet" in html
    shapes = re.findall(r'data-kind="step" data-shape="(\w+)" data-status="(\w+)"', html)
    assert shapes == [("span", "SUCCESS"), ("open", "OPEN")]
    assert "open, ≥ 890 ms</text>" in html


def test_every_class_the_svg_tracks_and_the_rows_use_is_in_the_built_css() -> None:
    """The Tailwind build scans views/ only: classes written by log/explorer/waterfall.py and
    trace_rows.py must be listed in the trace template, or the committed CSS lacks them."""
    from log.explorer import spans, trace_rows, waterfall
    from tests.log.explorer.test_spans import import_rows, request, task

    css = (Path(__file__).resolve().parents[2] / "views" / "static" / "app.css").read_text()
    wf = spans.build([request(0, 20_000), request(30_000, 5, user=None), request(40_000, 5, user="9")],
                     import_rows() + [task(19_000, "Open", "START", 1, name="Other"),
                                      task(19_500, "Rec", "FAILED", 1, name="Third", stack="tb", input="{}"),
                                      task(19_600, "Tick", "START", 1, name="Fourth"),
                                      task(19_700, "Tick", "IN_PROGRESS", 2, name="Fourth", output="{}"),
                                      task(50_000, "Late", "SUCCESS", 1, name="Orphan")])
    bar = wf.requests[0]
    markup = "".join(str(m) for m in [
        waterfall.axis_track(wf.total), waterfall.request_track(bar, wf.total),
        *(waterfall.run_track(r, wf.total) for r in bar.runs), *(waterfall.gap_track(g, wf.total) for g in bar.gaps),
        *(waterfall.step_track(s, wf.total) for s in wf.steps),
        trace_rows.waterfall_items(wf, {"7": "seven@example.com"}), trace_rows.table_rows(wf, {}),
        *(trace_rows.status_badge(s) for s in (None, 200, 302, 404, 500)),
        *(trace_rows.step_badge(s) for s in ("START", "IN_PROGRESS", "SUCCESS", "FAILED", "OTHER")),
    ])
    used = {c for attr in re.findall(r'class="([^"]*)"', markup) for c in attr.split()}
    assert {"group-open:rotate-90", "bg-error/10", "md:pl-10", "badge-info", "text-error"} <= used  # all shapes drawn
    used |= {waterfall.request_color(s) for s in (None, 200, 404, 500)} | {f"{c}-content" for c in
             ("text-primary", "text-success", "text-error", "text-warning", "text-info")}
    missing = sorted(c for c in used if "." + re.sub(r"([^\w-])", r"\\\1", c) not in css)  # CSS-escaped
    assert not missing, missing


def test_the_rows_badges_are_the_status_macros_markup() -> None:
    """trace_rows writes the badges the list page's macros write (views/_logs_status.html)."""
    import jinja2

    from handlers.templating import macros_of
    from log.explorer import trace_rows

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).resolve().parents[2] / "views"), autoescape=True)
    macros = macros_of(env, "_logs_status.html")
    for status in (None, 100, 200, 302, 404, 500, 599):
        assert trace_rows.status_badge(status) == str(macros["status_badge"](status)), status
    for status in ("START", "IN_PROGRESS", "SUCCESS", "FAILED", "<odd>"):
        assert trace_rows.step_badge(status) == str(macros["step_badge"](status)), status
