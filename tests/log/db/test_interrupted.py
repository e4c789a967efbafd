"""Task runs left open by a process that ended get one FAILED "interrupted" row, on both
backends; runs of a live lease holder are never touched, and closing is idempotent and
race-free between two instances starting together."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from log.core.ids import SnowflakeIds, decode
from log.core.rows import TaskProgressLog, columns
from log.db.database import FileLogDatabase, HttpLogDatabase, LogDatabase
from log.db.interrupted import INTERRUPTED, LOOKBACK_HOURS, close_interrupted, close_steps, first_id_at, open_steps
from log.db.lease import acquire_worker_id
from log.db.schema import apply_schema
from log.tasks import TaskTracker
from tests.support.hrana_server import HranaServer, Running, running

pytestmark = pytest.mark.anyio

NOW = 1_780_000_000.0  # 2026-05-28, a fixed "now" for leases, ids and the look-back window
COLS = columns(TaskProgressLog)
INSERT = f"INSERT INTO task_progress_logs ({','.join(COLS)}) VALUES ({','.join('?' * len(COLS))})"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    with running(HranaServer(str(tmp_path / "remote.db"))) as r:
        yield r


@pytest.fixture(params=["http", "file"])
async def make_db(request: pytest.FixtureRequest, server: Running, tmp_path: Path) -> AsyncIterator:
    """Each call: another instance's own connection to the same log database (schema applied)."""
    opened: list[FileLogDatabase] = []
    async with httpx.AsyncClient() as client:
        async def make() -> LogDatabase:
            if request.param == "http":
                db: LogDatabase = HttpLogDatabase(client, server.url)
            else:
                file_db = FileLogDatabase(str(tmp_path / "logs.db"))
                opened.append(file_db)
                db = file_db
            await apply_schema(db)
            return db

        yield make
    for db in opened:
        db.close()


def tracker(worker: int, at: float, trace: str, task: str = "Bulk_Import") -> tuple[TaskTracker, list[TaskProgressLog]]:
    """A tracker as a process with this worker id would run it, its rows timed from `at`."""
    ticks = itertools.count()
    ids = SnowflakeIds(worker, now_ms=lambda: int(at * 1000) + next(ticks))
    rows: list[TaskProgressLog] = []
    return TaskTracker(trace, task, emit=rows.append, next_id=ids.next, clock=lambda: at), rows


async def store(db: LogDatabase, rows: list[TaskProgressLog]) -> None:
    await db.transaction([(INSERT, tuple(getattr(r, c) for c in COLS)) for r in rows])


async def all_rows(db: LogDatabase) -> list[dict]:
    return await db.select(f"SELECT {','.join(COLS)} FROM task_progress_logs ORDER BY id")


def ids_at(worker: int, at: float = NOW) -> Callable[[], int]:
    return SnowflakeIds(worker, now_ms=lambda: int(at * 1000)).next


async def dead_and_live_runs(db: LogDatabase) -> tuple[int, int]:
    """A live instance (leased worker id) and a dead one (its lease expired long ago), each with
    an open run, a finished run and a run whose last row is IN_PROGRESS. -> (dead, live) ids."""
    live = (await acquire_worker_id(db, "live", now=NOW - 10, ttl=60)).worker_id
    dead = 7
    await db.transaction([("INSERT INTO log_worker_leases VALUES (?, 'dead', ?)", (dead, NOW - 3540))])
    for worker, name, at in [(dead, "dead", NOW - 3700), (live, "live", NOW - 5)]:
        t, rows = tracker(worker, at, f"{name}-trace")
        async with t.step("Validation") as step:
            step.output = {"valid": 3}
        t.step("Parse").__enter__()  # cut off here: START, no end row
        await store(db, rows)
        done, rows = tracker(worker, at + 1, f"{name}-done")  # a second later: ids of its own
        async with done.step("Validation"):
            pass
        busy = done.step("Commit")
        busy.__enter__()
        busy.progress({"rows": 10})  # cut off after a progress row
        await store(db, rows)
    return dead, live


async def test_a_dead_workers_open_steps_get_one_failed_row_each(make_db) -> None:
    db = await make_db()
    dead, live = await dead_and_live_runs(db)
    me = await acquire_worker_id(db, "me", now=NOW, ttl=60)
    before = await all_rows(db)

    closed = await close_interrupted(db, worker_id=me.worker_id, leased_at=NOW, now=NOW, next_id=ids_at(me.worker_id))

    assert sorted((r.trace_id, r.step_name, r.execution_order) for r in closed) == [
        ("dead-done", "Commit", 5), ("dead-trace", "Parse", 4),
    ]
    assert {(r.status, r.error_message, r.task_name) for r in closed} == {("FAILED", INTERRUPTED, "Bulk_Import")}
    after = await all_rows(db)
    assert all(r in after for r in before)  # nothing already written changed
    new = [r for r in after if r not in before]
    assert sorted(r["id"] for r in new) == sorted(r.id for r in closed)
    assert {decode(r["id"])[1] for r in new} == {me.worker_id}  # written under our own worker id
    # the live instance's open steps are untouched
    live_rows = [r for r in after if decode(r["id"])[1] == live]
    assert [r["status"] for r in live_rows if r["trace_id"] == "live-trace"] == ["START", "SUCCESS", "START"]
    assert len({dead, live, me.worker_id}) == 3


async def test_a_second_start_adds_nothing(make_db) -> None:
    db = await make_db()
    await dead_and_live_runs(db)
    me = await acquire_worker_id(db, "me", now=NOW, ttl=60)
    first = await close_interrupted(db, worker_id=me.worker_id, leased_at=NOW, now=NOW, next_id=ids_at(me.worker_id))
    count = len(await all_rows(db))
    again = await close_interrupted(db, worker_id=me.worker_id, leased_at=NOW + 1, now=NOW + 1,
                                    next_id=ids_at(me.worker_id, NOW + 1))
    assert len(first) == 2 and again == [] and len(await all_rows(db)) == count


async def test_two_instances_starting_together_close_each_step_once(make_db) -> None:
    db_a, db_b = await make_db(), await make_db()
    await dead_and_live_runs(db_a)
    a = await acquire_worker_id(db_a, "a", now=NOW, ttl=60)
    b = await acquire_worker_id(db_b, "b", now=NOW, ttl=60)
    # Both read the open steps before either writes: the insert's own check must stop the second.
    found_a = await open_steps(db_a, worker_id=a.worker_id, leased_at=NOW, now=NOW)
    found_b = await open_steps(db_b, worker_id=b.worker_id, leased_at=NOW, now=NOW)
    assert len(found_a) == len(found_b) == 2
    closed_a = await close_steps(db_a, found_a, now=NOW, next_id=ids_at(a.worker_id))
    closed_b = await close_steps(db_b, found_b, now=NOW, next_id=ids_at(b.worker_id))
    failed = [r for r in await all_rows(db_a) if r["status"] == "FAILED"]
    assert (len(closed_a), closed_b, len(failed)) == (2, [], 2)
    assert sorted(r["step_name"] for r in failed) == ["Commit", "Parse"]


async def test_own_worker_id_closes_only_a_previous_holders_steps(make_db) -> None:
    db = await make_db()
    me = await acquire_worker_id(db, "me", now=NOW, ttl=60)
    old, old_rows = tracker(me.worker_id, NOW - 600, "before-me")  # a crashed holder of the same id
    old.step("Load").__enter__()
    mine, my_rows = tracker(me.worker_id, NOW + 1, "mine")  # this process's own run, in flight
    mine.step("Load").__enter__()
    await store(db, old_rows + my_rows)
    closed = await close_interrupted(db, worker_id=me.worker_id, leased_at=NOW, now=NOW + 2, next_id=ids_at(me.worker_id))
    assert [r.trace_id for r in closed] == ["before-me"]


async def test_steps_older_than_the_look_back_are_left_alone(make_db) -> None:
    db = await make_db()
    me = await acquire_worker_id(db, "me", now=NOW, ttl=60)
    ancient, rows = tracker(900, NOW - (LOOKBACK_HOURS + 1) * 3600, "ancient")
    ancient.step("Load").__enter__()
    recent, more = tracker(900, NOW - (LOOKBACK_HOURS - 1) * 3600, "recent")
    recent.step("Load").__enter__()
    await store(db, rows + more)
    closed = await close_interrupted(db, worker_id=me.worker_id, leased_at=NOW, now=NOW, next_id=ids_at(me.worker_id))
    assert [r.trace_id for r in closed] == ["recent"]


def test_first_id_at_is_the_lowest_id_of_that_millisecond() -> None:
    at = NOW
    ids = SnowflakeIds(1023, lambda: int(at * 1000))
    assert first_id_at(at) <= ids.next() < first_id_at(at + 1)
    assert first_id_at(0) == 0
