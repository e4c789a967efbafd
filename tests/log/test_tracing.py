"""Tracing.record takes an id per request and builds the rows in small batches: what must
hold is that every recorded request becomes exactly its row, in order, with the id it was given
when it was recorded, whether the batch is closed by size, by the timer, by a stats read or by
shutdown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import anyio
import pytest

from log.core.captured import Captured
from log.tracing import BUILD_BATCH, BUILD_DELAY, Tracing
from log.core.rows import ApiLog, TaskProgressLog
from log.db.interrupted import INTERRUPTED
from log.sinks.csv_sink import read_rows
from tests.support.app import make_settings
from tests.support.hrana_server import HranaServer, running


class RecordingFanOut:
    """Stands in for FanOut: keeps what is emitted."""

    def __init__(self) -> None:
        self.rows: list[ApiLog | TaskProgressLog] = []

    def emit(self, row) -> None:
        self.rows.append(row)

    def emit_many(self, rows) -> None:
        self.rows.extend(rows)

    def stats(self) -> dict:
        return {"sinks": {}}

    async def aclose(self, deadline: float) -> dict:
        self.closed_with = len(self.rows)  # what had been emitted when the sinks were closed
        return {}


def captured(i: int, **overrides) -> Captured:
    values = dict(
        received_at=time.time(), duration_ms=1, method="GET", path=f"/items?n={i}", query_string="",
        request_headers=[("host", "x")], request_body=b"", request_body_size=0, response_status=200,
        response_headers=[("content-type", "application/json")], response_body=b'{"ok":true}',
        response_body_size=11, client_ip="127.0.0.1", user_id=None,
        trace_id="0f8fad5b-d9cb-469f-a165-70867728950e",
    )
    return Captured(**{**values, **overrides})


def pipeline(tmp_path: Path) -> tuple[Tracing, RecordingFanOut]:
    logs = Tracing(make_settings(tmp_path, log_sinks=("csv",)).tracing)
    fake = RecordingFanOut()
    logs.fanout = fake  # type: ignore[assignment]
    return logs, fake


@pytest.mark.anyio
async def test_a_full_batch_is_built_at_once_in_order_with_the_ids_taken_at_record_time(tmp_path: Path) -> None:
    logs, fake = pipeline(tmp_path)
    for i in range(BUILD_BATCH - 1):
        logs.record(captured(i))
    assert fake.rows == []  # waiting for the batch (or the timer)
    logs.record(captured(BUILD_BATCH - 1))
    assert [r.endpoint for r in fake.rows] == [f"/items?n={i}" for i in range(BUILD_BATCH)]
    ids = [r.id for r in fake.rows]
    assert ids == sorted(ids) and len(set(ids)) == BUILD_BATCH
    # Ids come from record(), not from the build: the next id is above all of them.
    assert logs.next_id() > ids[-1]


@pytest.mark.anyio
async def test_the_timer_builds_a_partial_batch(tmp_path: Path) -> None:
    logs, fake = pipeline(tmp_path)
    logs.record(captured(1))
    logs.record(captured(2))
    with anyio.fail_after(BUILD_DELAY + 5):
        while len(fake.rows) < 2:
            await asyncio.sleep(BUILD_DELAY / 5)
    assert [r.endpoint for r in fake.rows] == ["/items?n=1", "/items?n=2"]


@pytest.mark.anyio
async def test_stats_and_shutdown_include_every_recorded_request(tmp_path: Path) -> None:
    logs, fake = pipeline(tmp_path)
    logs.record(captured(1))
    logs.stats()
    assert [r.endpoint for r in fake.rows] == ["/items?n=1"]
    logs.record(captured(2))
    await logs.aclose(deadline=1)
    assert fake.closed_with == 2  # the pending row was built before the sinks were closed
    logs.record(captured(3))  # a late request: built (and refused by the closed fan-out) at once
    assert [r.endpoint for r in fake.rows] == ["/items?n=1", "/items?n=2", "/items?n=3"]


@pytest.mark.anyio
async def test_a_row_that_cannot_be_built_costs_only_itself(tmp_path: Path) -> None:
    logs, fake = pipeline(tmp_path)
    logs.record(captured(1))
    logs.record(captured(2, request_headers=None))  # type: ignore[arg-type]  # the builder raises
    logs.record(captured(3, exception="ValueError: boom", stack_trace="Traceback ..."))
    logs.build_pending()
    api = [r for r in fake.rows if isinstance(r, ApiLog)]
    tasks = [r for r in fake.rows if isinstance(r, TaskProgressLog)]
    assert [r.endpoint for r in api] == ["/items?n=1", "/items?n=3"]
    assert [t.step_name for t in tasks] == ["unhandled_exception"] and tasks[0].error_message == "ValueError: boom"
    assert logs.record_errors == 1


# -- at start: the task steps of a process that ended are closed ---------------------------------


@pytest.fixture(params=["file", "http"])
def log_database(request: pytest.FixtureRequest, tmp_path: Path):
    """"" (the default file: database under DATA_DIR) or the URL of a Hrana stand-in."""
    if request.param == "file":
        yield ""
        return
    with running(HranaServer(str(tmp_path / "remote.db"))) as server:
        yield server.url


@pytest.mark.anyio
async def test_start_closes_the_steps_an_ended_process_left_open(tmp_path: Path, log_database: str) -> None:
    config = make_settings(tmp_path, log_sinks=("csv", "turso"), turso_database_url=log_database).tracing
    ended, live = Tracing(config), Tracing(config)  # two instances sharing the log database
    await ended.open()
    await live.open()
    assert (ended.interrupted_closed, live.interrupted_closed) == (0, 0)
    task = ended.task("0f8fad5b-d9cb-469f-a165-70867728950e", "Bulk_Import")
    async with task.step("Validation"):
        pass
    task.step("Parse").__enter__()  # the process ends inside this step
    await ended.aclose()  # its rows are written and its worker id is no longer leased
    live_trace = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    live.task(live_trace, "Bulk_Import").step("Load").__enter__()  # still running
    assert live.log_db is not None
    with anyio.fail_after(10):
        while not await live.log_db.select("SELECT id FROM task_progress_logs WHERE trace_id = ?", (live_trace,)):
            await anyio.sleep(0.02)  # until the live instance's sink has written its START

    starting = Tracing(config)
    await starting.open()
    assert starting.interrupted_closed == 1
    await starting.aclose()
    again = Tracing(config)
    await again.open()
    assert again.interrupted_closed == 0  # idempotent: a second start adds nothing
    assert again.log_db is not None
    in_db = await again.log_db.select("SELECT id, step_name FROM task_progress_logs WHERE status = 'FAILED'")
    await again.aclose()
    await live.aclose()

    closing = [r for r in read_rows(config.logs_path, "task_progress_logs") if r.status == "FAILED"]
    assert [(r.step_name, r.error_message, r.execution_order) for r in closing] == [("Parse", INTERRUPTED, 4)]
    assert in_db == [{"id": closing[0].id, "step_name": "Parse"}]  # the same row in CSV and DB



@pytest.mark.anyio
async def test_a_worker_that_ends_while_the_others_run_has_its_steps_closed_once_its_lease_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker processes (WEB_CONCURRENCY): one is killed mid-step and uvicorn starts another at
    # once, while the killed one's lease still runs; the start closes nothing of it. A running
    # worker closes that step once the lease has expired, and leaves its own open step alone.
    import log.tracing

    monkeypatch.setattr(log.tracing, "LEASE_WATCH", 0.05, raising=False)
    config = make_settings(tmp_path, log_sinks=("csv", "turso"), web_concurrency=2).tracing
    running, killed = Tracing(config), Tracing(config)
    await running.open()
    await killed.open()
    running.task("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "Bulk_Import").step("Load").__enter__()
    killed.task("0f8fad5b-d9cb-469f-a165-70867728950e", "Bulk_Import").step("Parse").__enter__()
    assert running.log_db is not None and killed.lease is not None and killed._renewal is not None
    with anyio.fail_after(10):
        while len(await running.log_db.select("SELECT id FROM task_progress_logs")) < 2:
            await anyio.sleep(0.02)  # until both STARTs are written
    killed._renewal.cancel()  # killed: its lease is no longer renewed, and now runs out
    await running.log_db.transaction(
        [("UPDATE log_worker_leases SET expires_at = 0 WHERE worker_id = ?", (killed.lease.worker_id,))]
    )
    with anyio.fail_after(10):
        while not running.interrupted_closed:
            await anyio.sleep(0.02)  # until the running worker's next look at the leases
    failed = await running.log_db.select("SELECT step_name, error_message FROM task_progress_logs WHERE status = 'FAILED'")
    assert failed == [{"step_name": "Parse", "error_message": INTERRUPTED}] and running.interrupted_closed == 1
    await killed.aclose()
    await running.aclose()
