"""Bulk CSV import and export, in-process against the real app, real SQLite and the real log
pipeline: task rows are read back from what was actually written (CSV files and the log DB)."""

from __future__ import annotations

import csv
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
from handlers.imports import Progress, progress_from_row
from log.csv_sink import read_rows
from log.rows import ApiLog, TaskProgressLog
from settings import Settings
from store.base import ItemInput, Session
from tests.conftest import AppClient, make_settings

pytestmark = pytest.mark.anyio

LOGGING = {"log_sinks": ("csv", "turso")}
DEADLINE_S = 15.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
        return await self.state["log_db"].fetch_rows(
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
            rows = await self.state["log_db"].fetch_rows(ApiLog, "trace_id = ?", [trace_id])
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


# happy path, and the task rows it writes ------------------------------------------------------


async def test_import_logs_every_step_to_csv_and_log_db(open_app):
    app = await open_app(**LOGGING)
    alice = await app.client("alice@example.com")
    response, trace_id = await upload(alice, csv_bytes(many_rows(12_000), bom=True))
    assert response.status_code == 200, response.text
    assert "Imported 12,000 items." in response.text
    assert response.headers["x-trace-id"] == trace_id

    rows = await app.settled_task_rows(trace_id, is_commit_end)
    assert {r.task_name for r in rows} == {"Bulk_Import"}
    assert collapse(steps(rows)) == [
        ("Validation", "START"), ("Validation", "IN_PROGRESS"), ("Validation", "SUCCESS"),
        ("Transform", "START"), ("Transform", "SUCCESS"),
        ("DB_Commit", "START"), ("DB_Commit", "IN_PROGRESS"), ("DB_Commit", "SUCCESS"),
    ]
    assert [r.execution_order for r in rows] == list(range(1, len(rows) + 1))
    validation = [output(r) for r in rows if r.step_name == "Validation" and r.status == "IN_PROGRESS"]
    assert validation == [{"done": 5000, "total": 12_000}, {"done": 10_000, "total": 12_000}]
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
    ("row", "expected"),
    [
        (None, Progress(None, "Starting…")),
        ({"step_name": "Validation", "status": "START", "output_data": None}, Progress(0, "Validation…")),
        ({"step_name": "Validation", "status": "IN_PROGRESS", "output_data": '{"done":5000,"total":10000}'}, Progress(25, "Validation…")),
        ({"step_name": "Validation", "status": "IN_PROGRESS", "output_data": "garbage"}, Progress(0, "Validation…")),
        ({"step_name": "Validation", "status": "SUCCESS", "output_data": None}, Progress(50, "Validation done")),
        ({"step_name": "DB_Commit", "status": "IN_PROGRESS", "output_data": '{"done":1,"total":2}'}, Progress(80, "DB_Commit…")),
        ({"step_name": "DB_Commit", "status": "SUCCESS", "output_data": None}, Progress(100, "Done", done=True)),
        ({"step_name": "DB_Commit", "status": "FAILED", "output_data": None}, Progress(60, "DB_Commit failed", done=True, failed=True)),
    ],
)
def test_progress_from_row(row, expected) -> None:
    assert progress_from_row(row) == expected
