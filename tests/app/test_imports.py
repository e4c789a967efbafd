"""Bulk CSV import and export, in-process against the real app, real SQLite and the real log
pipeline: task rows are read back from what was actually written (CSV files and the log DB)."""

from __future__ import annotations

import csv
import functools
import io
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import msgspec
import pytest

from app import create_app
from handlers.imports import Progress, progress_of
from log.sinks.csv_sink import read_rows
from log.core.rows import ApiLog, TaskProgressLog
from settings import Settings
from store.base import ItemInput, Session
from tests.support.app import AppClient, make_settings

pytestmark = pytest.mark.anyio

LOGGING = {"log_sinks": ("csv", "turso")}
DEADLINE_S = 15.0



class Harness:
    """One app instance with its lifespan running; `state` is the dict every request copies,
    so a test may swap parts of it (the store) after start-up."""

    def __init__(self, settings: Settings, state: dict, asgi) -> None:
        self.settings = settings
        self.state = state
        self.asgi = asgi
        self.clients: list[AppClient] = []

    async def client(self, email: str | None = None) -> AppClient:
        client = AppClient(transport=httpx.ASGITransport(self.asgi), base_url="http://testserver")
        self.clients.append(client)
        if email is not None:
            response = await client.signup(email)
            assert response.status_code == 303, response.text
        return client

    async def task_rows(self, trace_id: str) -> list[TaskProgressLog]:
        return await self.state["tracing"].log_db.fetch_rows(
            TaskProgressLog, "trace_id = ? ORDER BY execution_order", [trace_id]
        )

    async def settled_task_rows(self, trace_id: str, last: Callable[[TaskProgressLog], bool]) -> list[TaskProgressLog]:
        """The trace's task rows from the log DB once `last(newest row)` holds (the fan-out
        writes in ~200 ms batches, so poll with a deadline)."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            rows = await self.task_rows(trace_id)
            if rows and last(rows[-1]):
                return rows
            assert time.monotonic() < deadline, f"task rows never settled: {rows}"
            await anyio.sleep(0.05)

    async def csv_task_rows(self, trace_id: str, count: int) -> list[TaskProgressLog]:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            rows = [
                r for r in read_rows(self.settings.logs_path, "task_progress_logs")
                if isinstance(r, TaskProgressLog) and r.trace_id == trace_id
            ]
            if len(rows) >= count:
                return sorted(rows, key=lambda r: r.execution_order)
            assert time.monotonic() < deadline, f"CSV task rows never arrived: {rows}"
            await anyio.sleep(0.05)

    async def api_row(self, trace_id: str) -> ApiLog:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            rows = await self.state["tracing"].log_db.fetch_rows(ApiLog, "trace_id = ?", [trace_id])
            if rows:
                return rows[0]
            assert time.monotonic() < deadline, "api_logs row never arrived"
            await anyio.sleep(0.05)


@pytest.fixture
async def open_app(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """open_app(**settings overrides) → a started Harness (one per test is plenty)."""
    contexts, harnesses = [], []

    async def start(**overrides) -> Harness:
        settings = make_settings(tmp_path, **overrides)
        app = create_app(settings)
        ctx = app.router.lifespan_context(app)
        state = await ctx.__aenter__()
        contexts.append(ctx)

        async def with_state(scope, receive, send):
            scope["state"] = dict(state)  # what uvicorn does for every request
            await app(scope, receive, send)

        harness = Harness(settings, state, with_state)
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        for client in harness.clients:
            await client.aclose()
    for ctx in contexts:
        await ctx.__aexit__(None, None, None)


def csv_bytes(rows: list[tuple[str, str, str]], *, bom: bool = False, header: str = "name,description,quantity") -> bytes:
    buffer = io.StringIO()
    buffer.write(header + "\r\n")
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode()


def many_rows(n: int, prefix: str = "Item") -> list[tuple[str, str, str]]:
    return [(f"{prefix} {i}", f"desc {i}", str(i % 50)) for i in range(n)]


async def upload(
    client: AppClient, data: bytes | None, *, strict: bool = False, trace_id: str | None = None,
    filename: str = "items.csv",
) -> tuple[httpx.Response, str]:
    trace_id = trace_id or str(uuid.uuid4())
    files = {"file": (filename, data, "text/csv")} if data is not None else None
    form = {"strict": "on"} if strict else {}
    response = await client.post(
        "/items/import", data=form, files=files, headers=client.htmx(**{"X-Trace-ID": trace_id}),
    )
    return response, trace_id


async def item_names(client: AppClient) -> list[str]:
    response = await client.get("/items/export.csv")
    assert response.status_code == 200
    return [row[0] for row in list(csv.reader(io.StringIO(response.text)))[1:]]


def steps(rows: list[TaskProgressLog]) -> list[tuple[str, str]]:
    return [(r.step_name, r.status) for r in rows]


def collapse(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Runs of IN_PROGRESS rows of one step shown once, so the step shape is easy to compare."""
    out: list[tuple[str, str]] = []
    for pair in pairs:
        if not (out and out[-1] == pair and pair[1] == "IN_PROGRESS"):
            out.append(pair)
    return out


def output(row: TaskProgressLog) -> dict:
    return msgspec.json.decode(row.output_data or "null")


def is_commit_end(row: TaskProgressLog) -> bool:
    return row.step_name == "DB_Commit" and row.status in ("SUCCESS", "FAILED")


def rejected_lines(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td data-line="(\d+)">', html)]


REJECTED_ROW = re.compile(
    r'<td data-line="(\d+)">\d+</td><td class="break-all" data-field="([^"]*)">.*?(?:<code>([^<]*)</code>|empty</em>)</td>'
    r"<td>([^<]*)</td>"
)


def rejected_table(html: str) -> dict[str, tuple[str, str, str]]:
    """line → (field, value, reason) as the result table shows them (HTML-escaped)."""
    return {line: (field, value, reason) for line, field, value, reason in REJECTED_ROW.findall(html)}


async def rejected_download(client: AppClient, trace_id: str) -> httpx.Response:
    return await client.get(f"/items/import/rejected.csv?trace_id={trace_id}")


# happy path, and the task rows it writes ------------------------------------------------------


async def test_import_logs_every_step_to_csv_and_log_db(open_app):
    app = await open_app(**LOGGING)
    alice = await app.client("alice@example.com")
    response, trace_id = await upload(alice, csv_bytes(many_rows(12_000), bom=True))
    assert response.status_code == 200, response.text
    assert "Imported 12,000 items." in response.text
    assert response.headers["x-trace-id"] == trace_id
    # The form that comes back carries a new trace id: the next import is a trace of its own.
    assert 'X-Trace-ID": "' in response.text and trace_id not in response.text

    rows = await app.settled_task_rows(trace_id, is_commit_end)
    assert {r.task_name for r in rows} == {"Bulk_Import"}
    assert collapse(steps(rows)) == [
        ("Validation", "START"), ("Validation", "IN_PROGRESS"), ("Validation", "SUCCESS"),
        ("Transform", "START"), ("Transform", "IN_PROGRESS"), ("Transform", "SUCCESS"),
        ("DB_Commit", "START"), ("DB_Commit", "IN_PROGRESS"), ("DB_Commit", "SUCCESS"),
    ]
    assert [r.execution_order for r in rows] == list(range(1, len(rows) + 1))
    validation = [output(r) for r in rows if r.step_name == "Validation" and r.status == "IN_PROGRESS"]
    assert validation == [{"done": 5000, "total": 12_000}, {"done": 10_000, "total": 12_000}, {"done": 12_000, "total": 12_000}]
    commit = [output(r) for r in rows if r.step_name == "DB_Commit" and r.status == "IN_PROGRESS"]
    assert commit == [{"done": 5000, "total": 12_000}, {"done": 10_000, "total": 12_000}, {"done": 12_000, "total": 12_000}]
    assert output(rows[-1]) == {"imported": 12_000}
    assert msgspec.json.decode(rows[0].input_data)["strict"] is False

    # The CSV sink holds the very same rows (same app-assigned ids, same columns).
    assert await app.csv_task_rows(trace_id, len(rows)) == rows
    # ...and they belong to the request's own api_logs row.
    api = await app.api_row(trace_id)
    assert (api.method, api.endpoint, api.response_status) == ("POST", "/items/import", 200)

    names = await item_names(alice)
    assert len(names) == 12_000 and "Item 0" in names and "Item 11999" in names


async def test_progress_endpoint_follows_the_task_rows(open_app):
    app = await open_app(**LOGGING)
    alice = await app.client("alice@example.com")
    unknown = await alice.get(f"/items/import/progress?trace_id={uuid.uuid4()}", headers=alice.htmx())
    assert unknown.status_code == 200 and "data-percent" not in unknown.text
    assert 'hx-trigger="every 300ms"' in unknown.text  # keeps polling until rows show up

    response, trace_id = await upload(alice, csv_bytes(many_rows(10)))
    assert response.status_code == 200
    await app.settled_task_rows(trace_id, is_commit_end)
    done = await alice.get(f"/items/import/progress?trace_id={trace_id}", headers=alice.htmx())
    assert done.status_code == 286  # htmx stops polling
    assert 'data-percent="100"' in done.text and "every 300ms" not in done.text

    bad = await alice.get("/items/import/progress?trace_id=not-a-uuid", headers=alice.htmx())
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ((None, "START"), Progress(None, "Starting…")),
        (("Validation", "START"), Progress(0, "Validation…")),
        (("Validation", "IN_PROGRESS", 5000, 10000), Progress(25, "Validation…")),
        (("Validation", "IN_PROGRESS", 7, 0), Progress(50, "Validation…")),  # never past the step's end
        (("Validation", "SUCCESS"), Progress(50, "Validation done")),
        (("DB_Commit", "IN_PROGRESS", 1, 2), Progress(80, "DB_Commit…")),
        (("DB_Commit", "SUCCESS"), Progress(100, "Done", done=True)),
        (("DB_Commit", "FAILED"), Progress(60, "DB_Commit failed", done=True, failed=True)),
    ],
)
def test_progress_of(state, expected) -> None:
    assert progress_of(*state) == expected


# rejected rows, strict mode -------------------------------------------------------------------


class RecordingStore:
    """The real store, with every create_items call recorded (and optionally failing)."""

    def __init__(self, store, fail: Exception | None = None) -> None:
        self.store = store
        self.fail = fail
        self.imports: list[list[ItemInput]] = []

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    async def create_items(self, session: Session, rows: list[ItemInput], progress=None) -> int:
        self.imports.append(list(rows))
        if self.fail is not None:
            if progress is not None:
                progress(min(1, len(rows)))
            raise self.fail
        return await self.store.create_items(session, rows, progress=progress)


BAD_FILE = (
    b"name,description,quantity\n"
    b"Good one,fine,1\n"  # line 2
    b",no name,1\n"  # line 3: missing name
    b"Bad qty,,abc\n"  # line 4: bad quantity
    b'"Two\nlines",spans,2\n'  # lines 5-6: valid
    + b"L" * 201 + b",too long,1\n"  # line 7
    b"Broken \xff\xfe bytes,,1\n"  # line 8: bad encoding
    b"Good two,,7\n"  # line 9
)


async def test_non_strict_import_commits_the_valid_rows_and_lists_the_rest(open_app):
    app = await open_app(**LOGGING)
    recorder = app.state["store"] = RecordingStore(app.state["store"])
    alice = await app.client("alice@example.com")
    response, trace_id = await upload(alice, BAD_FILE)
    assert response.status_code == 200, response.text
    assert "Imported 3 items." in response.text
    assert "4 rejected rows" in response.text
    assert rejected_lines(response.text) == [3, 4, 7, 8]
    table = rejected_table(response.text)
    assert table["3"] == ("name", "", "Name is required.")
    assert table["4"] == ("quantity", "abc", "Quantity must be a whole number.")
    field, value, reason = table["7"]
    assert field == "name" and value == "L" * 79 + "…" and "at most 200 characters" in reason
    assert table["8"] == ("name", "Broken \ufffd\ufffd bytes", "Bad encoding: the row is not valid UTF-8.")
    assert f'href="/items/import/rejected.csv?trace_id={trace_id}"' in response.text

    # The download: the file's own columns, each rejected record as it was, plus the error.
    download = await rejected_download(alice, trace_id)
    assert download.status_code == 200
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    assert download.headers["content-disposition"] == 'attachment; filename="rejected-rows.csv"'
    assert list(csv.reader(io.StringIO(download.text, newline=""))) == [
        ["name", "description", "quantity", "error"],
        ["", "no name", "1", "Line 3: Name is required."],
        ["Bad qty", "", "abc", "Line 4: Quantity must be a whole number."],
        ["L" * 201, "too long", "1", "Line 7: Name must be at most 200 characters (got 201)."],
        ["Broken \ufffd\ufffd bytes", "", "1", "Line 8: Bad encoding: the row is not valid UTF-8."],
    ]
    # Another user cannot fetch it.
    bob = await app.client("bob@example.com")
    assert (await rejected_download(bob, trace_id)).status_code == 404
    assert [[r.name for r in rows] for rows in recorder.imports] == [["Good one", "Two\nlines", "Good two"]]
    assert sorted(await item_names(alice)) == ["Good one", "Good two", "Two\nlines"]

    rows = await app.settled_task_rows(trace_id, is_commit_end)
    validation_end = next(r for r in rows if r.step_name == "Validation" and r.status == "SUCCESS")
    assert output(validation_end) == {"valid": 3, "rejected": 4}
    # Even a small file's trace has every step's counts.
    assert [(r.step_name, output(r)) for r in rows if r.status == "IN_PROGRESS"] == [
        ("Validation", {"done": 7, "total": 7}),
        ("Transform", {"done": 3, "total": 3}),
        ("DB_Commit", {"done": 3, "total": 3}),
    ]


async def test_strict_import_with_a_bad_row_commits_nothing(open_app):
    app = await open_app(**LOGGING)
    recorder = app.state["store"] = RecordingStore(app.state["store"])
    alice = await app.client("alice@example.com")
    response, trace_id = await upload(alice, BAD_FILE, strict=True)
    assert response.status_code == 200, response.text
    assert "Nothing imported: 4 rows invalid and strict mode was on." in response.text
    assert rejected_lines(response.text) == [3, 4, 7, 8]
    assert all(rows == [] for rows in recorder.imports)
    assert await item_names(alice) == []

    rows = await app.settled_task_rows(trace_id, is_commit_end)
    transform = next(r for r in rows if r.step_name == "Transform" and r.status == "SUCCESS")
    assert output(transform) == {"rows": 0, "strict_refused": True}
    assert output(rows[-1]) == {"imported": 0}


async def test_strict_import_of_a_clean_file_commits_everything(open_app):
    app = await open_app()
    alice = await app.client("alice@example.com")
    response, _ = await upload(alice, csv_bytes(many_rows(25)), strict=True)
    assert response.status_code == 200, response.text
    assert "Imported 25 items." in response.text and "rejected-rows" not in response.text
    assert len(await item_names(alice)) == 25


async def test_bom_and_no_bom_import_the_same_names(open_app):
    app = await open_app()
    alice = await app.client("alice@example.com")
    rows = [("Café ☕", "naïve", "2"), ("Ünïcödé", "", "0")]
    for bom in (True, False):
        response, _ = await upload(alice, csv_bytes(rows, bom=bom))
        assert response.status_code == 200 and "Imported 2 items." in response.text
    assert sorted(await item_names(alice)) == sorted(["Café ☕", "Ünïcödé"] * 2)


async def test_a_failed_commit_leaves_no_rows_behind(open_app):
    """The real SQLite transaction: a row the database refuses mid-import rolls back the rest."""
    app = await open_app()
    alice = await app.client("alice@example.com")
    real = app.state["store"]

    class PoisonedRows(RecordingStore):
        async def create_items(self, session, rows, progress=None):
            # A name the validator allows but the items table's CHECK refuses, after 6000 good rows.
            return await real.create_items(session, [*rows, ItemInput(name="", description="", quantity=1)], progress)

    app.state["store"] = PoisonedRows(real)
    response, _ = await upload(alice, csv_bytes(many_rows(6000)))
    assert response.status_code == 500
    app.state["store"] = real
    assert await item_names(alice) == []


# failures: whole-file refusals, size limits, a failing step ----------------------------------


async def test_over_10_mb_is_refused_with_413(open_app):
    app = await open_app(**LOGGING)
    recorder = app.state["store"] = RecordingStore(app.state["store"])
    alice = await app.client("alice@example.com")
    line = b"A name that fills the line,some description text here,1\n"
    data = b"name,description,quantity\n" + line * (10 * 1024 * 1024 // len(line) + 1)
    assert len(data) > 10 * 1024 * 1024
    response, trace_id = await upload(alice, data)
    assert response.status_code == 413
    assert "Request too large: the limit for this page is 10 MiB." in response.text
    assert recorder.imports == []
    assert (await app.api_row(trace_id)).response_status == 413
    assert await app.task_rows(trace_id) == []


async def test_exactly_100_000_rows_just_under_10_mb_are_accepted(open_app):
    app = await open_app()
    alice = await app.client("alice@example.com")
    data = b"name,description,quantity\n" + b"".join(b"%096d,,1\n" % i for i in range(100_000))
    assert 9.5 * 1024 * 1024 < len(data) + 1000 < 10 * 1024 * 1024  # the multipart envelope fits too
    response, _ = await upload(alice, data)
    assert response.status_code == 200, response.text[:300]
    assert "Imported 100,000 items." in response.text


async def test_more_than_100_000_rows_is_a_clear_422(open_app):
    app = await open_app(**LOGGING)
    recorder = app.state["store"] = RecordingStore(app.state["store"])
    alice = await app.client("alice@example.com")
    response, trace_id = await upload(alice, b"name\n" + b"a\n" * 100_001)
    assert response.status_code == 422
    assert 'data-error-for="file">Too many rows: the limit is 100,000.<' in response.text
    assert 'id="import-form"' in response.text  # the form comes back, ready for another file
    assert recorder.imports == []
    # The trace says why: Validation failed, nothing after it ran.
    rows = await app.settled_task_rows(trace_id, lambda r: r.status == "FAILED")
    assert steps(rows)[0] == ("Validation", "START") and steps(rows)[-1] == ("Validation", "FAILED")
    assert rows[-1].error_message == "FileRejected: Too many rows: the limit is 100,000."
    progress = await alice.get(f"/items/import/progress?trace_id={trace_id}", headers=alice.htmx())
    assert progress.status_code == 286 and "Validation failed" in progress.text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "Choose a CSV file to import."),
        (b"", "Choose a CSV file to import."),
        (b"\n", "The first row must be a header with a &#39;name&#39; column."),
        (b"title,qty\nLamp,1\n", "The first row must be a header with a &#39;name&#39; column."),
    ],
)
async def test_no_file_or_no_header_is_a_422(open_app, data, message):
    app = await open_app()
    recorder = app.state["store"] = RecordingStore(app.state["store"])
    alice = await app.client("alice@example.com")
    response, _ = await upload(alice, data)
    assert response.status_code == 422
    assert f'data-error-for="file">{message}<' in response.text
    assert recorder.imports == []


async def test_a_failing_commit_is_a_clear_500_and_a_failed_step_with_its_traceback(open_app):
    app = await open_app(**LOGGING)
    app.state["store"] = RecordingStore(app.state["store"], fail=RuntimeError("disk on fire"))
    alice = await app.client("alice@example.com")
    response, trace_id = await upload(alice, csv_bytes(many_rows(20)))
    assert response.status_code == 500
    assert "Traceback" not in response.text and "disk on fire" not in response.text
    assert 'id="error-message"' in response.text
    assert "The import failed and no items were saved." in response.text
    assert f'data-testid="error-reference">Reference: {trace_id}<' in response.text

    rows = await app.settled_task_rows(trace_id, is_commit_end)
    failed = rows[-1]
    assert (failed.step_name, failed.status) == ("DB_Commit", "FAILED")
    assert failed.error_message == "RuntimeError: disk on fire"
    assert failed.stack_trace and "Traceback" in failed.stack_trace and "create_items" in failed.stack_trace
    assert ("Validation", "SUCCESS") in steps(rows) and ("Transform", "SUCCESS") in steps(rows)
    assert (await app.api_row(trace_id)).response_status == 500
    assert await app.csv_task_rows(trace_id, len(rows)) == rows

    progress = await alice.get(f"/items/import/progress?trace_id={trace_id}", headers=alice.htmx())
    assert progress.status_code == 286
    assert "progress-error" in progress.text and "DB_Commit failed" in progress.text


async def test_a_failing_commit_without_htmx_is_a_full_error_page(open_app):
    app = await open_app()
    app.state["store"] = RecordingStore(app.state["store"], fail=RuntimeError("disk on fire"))
    alice = await app.client("alice@example.com")
    response = await alice.post(
        "/items/import", data={"csrf_token": alice.csrf},
        files={"file": ("a.csv", b"name\nLamp\n", "text/csv")},
    )
    assert response.status_code == 500
    assert response.text.lstrip().lower().startswith("<!doctype html>")
    assert "The import failed and no items were saved." in response.text and "Traceback" not in response.text


# progress: live whatever the log sinks, and only for its owner ------------------------------------


class HeldCommit(RecordingStore):
    """The real store, but the commit reports half its rows done and then waits for `release`,
    so a test can poll the bar mid-import."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.halfway = anyio.Event()
        self.release = anyio.Event()

    async def create_items(self, session: Session, rows: list[ItemInput], progress=None) -> int:
        progress(len(rows) // 2)
        self.halfway.set()
        await self.release.wait()
        return await self.store.create_items(session, rows, progress=progress)


async def poll(client: AppClient, trace_id: str) -> httpx.Response:
    return await client.get(f"/items/import/progress?trace_id={trace_id}", headers=client.htmx())


class UnreachableLogDb:
    async def select(self, sql: str, args=()) -> list[dict]:
        raise httpx.ConnectError("log database unreachable")

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("sinks", [(), ("csv",), ("stdout",), ("csv", "turso"), ("csv", "unreachable turso")])
async def test_progress_is_live_whatever_the_log_sinks(open_app, sinks):
    """The bar follows the import in this process: no log sink (nor a reachable log DB) needed."""
    app = await open_app(log_sinks=tuple(s.split()[-1] for s in sinks))
    if "unreachable turso" in sinks:
        app.state["tracing"].log_db = UnreachableLogDb()
    held = app.state["store"] = HeldCommit(app.state["store"])
    alice = await app.client("alice@example.com")
    trace_id = str(uuid.uuid4())
    before = await poll(alice, trace_id)  # the upload has not arrived yet: keep asking
    assert before.status_code == 200 and "every 300ms" in before.text and "data-percent" not in before.text

    async with anyio.create_task_group() as tg:
        responses = []

        async def run_upload() -> None:
            responses.append((await upload(alice, csv_bytes(many_rows(7000)), trace_id=trace_id))[0])

        tg.start_soon(run_upload)
        with anyio.fail_after(DEADLINE_S):
            await held.halfway.wait()
        during = await poll(alice, trace_id)
        # DB_Commit spans 60–100 %: half its rows done is 80 %.
        assert during.status_code == 200 and 'data-percent="80"' in during.text, during.text
        assert "DB_Commit…" in during.text and "every 300ms" in during.text
        # Once the bar shows a value, its polls say so: a poll that reaches another worker
        # process (which has no such run) leaves the bar as it is instead of resetting it.
        assert f'hx-get="/items/import/progress?trace_id={trace_id}&amp;seen=1"' in during.text
        elsewhere = await alice.get(f"/items/import/progress?trace_id={uuid.uuid4()}&seen=1", headers=alice.htmx())
        assert elsewhere.status_code == 204 and elsewhere.text == ""
        held.release.set()

    assert responses[0].status_code == 200 and "Imported 7,000 items." in responses[0].text
    done = await poll(alice, trace_id)
    assert done.status_code == 286 and 'data-percent="100"' in done.text and "every 300ms" not in done.text


async def test_an_import_progress_is_404_for_another_user(open_app):
    app = await open_app(log_sinks=("csv", "turso"))
    held = app.state["store"] = HeldCommit(app.state["store"])
    alice = await app.client("alice@example.com")
    bob = await app.client("bob@example.com")
    trace_id = str(uuid.uuid4())
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(upload, alice, csv_bytes(many_rows(10)), trace_id=trace_id))
        with anyio.fail_after(DEADLINE_S):
            await held.halfway.wait()
        mid = await poll(bob, trace_id)
        assert mid.status_code == 404 and "data-percent" not in mid.text
        held.release.set()
    await app.settled_task_rows(trace_id, is_commit_end)  # the log DB has the rows too now
    after = await poll(bob, trace_id)
    assert after.status_code == 404 and "data-percent" not in after.text and "Done" not in after.text
    assert (await poll(alice, trace_id)).status_code == 286
    # Bob's own import under the same trace id is his alone; Alice's stays hers.
    response, _ = await upload(bob, csv_bytes(many_rows(3)), trace_id=trace_id)
    assert response.status_code == 200
    assert 'data-percent="100"' in (await poll(bob, trace_id)).text


# export -----------------------------------------------------------------------------------------


async def export(client: AppClient) -> tuple[httpx.Response, list[list[str]]]:
    response = await client.get("/items/export.csv")
    return response, list(csv.reader(io.StringIO(response.text, newline="")))


async def test_export_is_the_users_items_only_with_formula_safe_cells(open_app):
    app = await open_app()
    alice = await app.client("alice@example.com")
    bob = await app.client("bob@example.com")
    rows = [("=HYPERLINK(\"http://evil\")", "+1", "3"), ("@SUM(A1)", "-2+3", "0"), ("Plain, \"quoted\"\nname", "é ☕", "12")]
    assert (await upload(alice, csv_bytes(rows)))[0].status_code == 200
    assert (await upload(bob, csv_bytes([("Bob's secret", "", "1")])))[0].status_code == 200

    response, table = await export(alice)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="items.csv"'
    assert table[0] == ["name", "description", "quantity", "created_at", "updated_at"]
    assert sorted(r[:3] for r in table[1:]) == sorted([
        ["'=HYPERLINK(\"http://evil\")", "'+1", "3"],
        ["'@SUM(A1)", "'-2+3", "0"],
        ["Plain, \"quoted\"\nname", "é ☕", "12"],
    ])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", r[3]) for r in table[1:])
    assert "Bob" not in response.text

    _, bobs = await export(bob)
    assert [r[:3] for r in bobs[1:]] == [["Bob's secret", "", "1"]]


async def test_export_spans_pages_and_reimports(open_app):
    app = await open_app()
    alice = await app.client("alice@example.com")
    assert (await upload(alice, csv_bytes(many_rows(2500))))[0].status_code == 200
    response, table = await export(alice)
    assert table.count(table[0]) == 1  # one header, even across the 1000-item pages
    assert len(table) == 2501 and len({r[0] for r in table[1:]}) == 2500

    # The export is itself a valid import (extra columns are ignored).
    bob = await app.client("bob@example.com")
    again, _ = await upload(bob, response.content)
    assert "Imported 2,500 items." in again.text
    _, copy = await export(bob)
    assert sorted(r[:3] for r in copy[1:]) == sorted(r[:3] for r in table[1:])


async def test_empty_export_is_just_the_header(open_app):
    app = await open_app()
    alice = await app.client("alice@example.com")
    response, table = await export(alice)
    assert response.status_code == 200 and table == [["name", "description", "quantity", "created_at", "updated_at"]]


@pytest.mark.parametrize(("method", "path"), [("GET", "/items/import"), ("GET", "/items/export.csv")])
async def test_signed_out_users_go_to_login(open_app, method, path):
    app = await open_app()
    client = await app.client()
    response = await client.request(method, path)
    assert response.status_code == 303 and response.headers["location"] == "/login"


async def test_signed_out_import_post_goes_to_login_and_stores_nothing(open_app):
    app = await open_app()
    recorder = app.state["store"] = RecordingStore(app.state["store"])
    client = await app.client()
    await client.refresh_csrf()
    response, _ = await upload(client, b"name\nLamp\n")
    assert response.status_code == 204 and response.headers["hx-redirect"] == "/login"
    assert recorder.imports == []
    progress = await client.get(f"/items/import/progress?trace_id={uuid.uuid4()}", headers=client.htmx())
    assert progress.status_code == 286 and "data-percent" not in progress.text


async def test_import_page_gives_each_form_a_fresh_trace_id_that_its_bar_polls(open_app):
    app = await open_app()
    alice = await app.client("alice@example.com")
    pattern = re.compile(r'hx-headers=\'\{"X-Trace-ID": "([0-9a-f-]{36})"\}\'')
    pages = [(await alice.get("/items/import")).text for _ in range(2)]
    ids = [pattern.findall(page) for page in pages]
    assert [len(found) for found in ids] == [1, 1] and ids[0] != ids[1]
    assert f'hx-get="/items/import/progress?trace_id={ids[0][0]}"' in pages[0]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "cp1252"])
async def test_a_file_that_is_not_utf8_says_so(open_app, encoding):
    app = await open_app()
    alice = await app.client("alice@example.com")
    header = "nàme,description,quantity" if encoding == "cp1252" else "name,description,quantity"
    response, _ = await upload(alice, f"{header}\r\nCafé,crème,1\r\n".encode(encoding))
    assert response.status_code == 422
    assert "The file is not UTF-8 text: save it as &#34;CSV UTF-8&#34; and try again." in response.text


async def test_a_latin1_row_in_a_utf8_file_is_rejected_alone(open_app):
    app = await open_app()
    alice = await app.client("alice@example.com")
    data = "name,description,quantity\r\nCafé,ok,1\r\n".encode() + "Crème,bad,2\r\n".encode("latin-1") + b"Tea,,3\r\n"
    response, _ = await upload(alice, data)
    assert response.status_code == 200 and "Imported 2 items." in response.text
    assert rejected_lines(response.text) == [3]
    assert sorted(await item_names(alice)) == ["Café", "Tea"]


async def test_a_long_rejection_list_is_cut_at_200_with_the_total(open_app):
    app = await open_app()
    alice = await app.client("alice@example.com")
    rows = [("Fine", "", "1")] + [("", "no name", "1")] * 250
    response, _ = await upload(alice, csv_bytes(rows))
    assert response.status_code == 200
    assert "Imported 1 item." in response.text and "250 rejected rows" in response.text
    assert rejected_lines(response.text) == list(range(3, 203))
    assert "Showing the first 200." in response.text


async def test_a_header_only_file_imports_nothing_and_says_so(open_app):
    app = await open_app()
    recorder = app.state["store"] = RecordingStore(app.state["store"])
    alice = await app.client("alice@example.com")
    response, _ = await upload(alice, b"name,description,quantity\r\n\r\n")
    assert response.status_code == 200 and "Imported 0 items." in response.text
    assert recorder.imports == [[]]
