"""kill -9 (SIGKILL: no shutdown, no flush) of a real uvicorn server at random moments under
load, and right after an import was answered while another import runs: after each restart
every answered request's X-Trace-ID is in the CSV files and in the log database exactly once,
and the task rows written before a kill are kept (the write-ahead record, log/sinks/wal.py)."""

from __future__ import annotations

import collections
import contextlib
import csv
import io
import os
import random
import signal
import time
import uuid
from pathlib import Path

import anyio
import httpx
import pytest

from tests.support.reliability import Result, async_wait_for, csv_rows, db_ids, run_load, scaled, signed_in, start_app, SCALE

pytestmark = [pytest.mark.reliability, pytest.mark.anyio]

RATE = 60.0
KILLS = max(3, round(3 * SCALE))


def import_file(n: int, prefix: str) -> bytes:
    buffer = io.StringIO()
    buffer.write("name,description,quantity\r\n")
    csv.writer(buffer, lineterminator="\r\n").writerows((f"{prefix} {i}", "imported", str(i % 50)) for i in range(n))
    return buffer.getvalue().encode()


async def load_then_kill(app, email: str, seconds: float, *, imports: bool = False) -> tuple[list[Result], str, str]:
    """Fixed-rate load; SIGKILL after `seconds`, or with `imports`, right after a short import
    is answered while a long one runs. (the requests that got their answer, short, long trace ids)."""
    results: list[Result] = []
    killed: list[float] = []
    short, long = str(uuid.uuid4()), str(uuid.uuid4())

    def kill() -> None:
        app.process.send_signal(signal.SIGKILL)
        killed.append(time.monotonic())

    async with signed_in(app.url, email) as client:

        async def upload(trace_id: str, data: bytes):
            return await client.post(
                "/items/import", files={"file": ("items.csv", data, "text/csv")},
                headers=client.htmx(**{"X-Trace-ID": trace_id}),
            )

        async def long_import() -> None:
            with contextlib.suppress(httpx.HTTPError):  # cut by the kill
                await upload(long, import_file(40_000, "long"))

        async def validated(trace_id: str) -> bool:
            page = await client.get("/items/import/progress", params={"trace_id": trace_id}, headers=client.htmx())
            return any(step in page.text for step in ("Validation done", "Transform", "DB_Commit", "Done"))

        async def kill_later() -> None:
            if not imports:
                await anyio.sleep(seconds)  # the random moment of the kill, on the load's schedule
                kill()
                return
            tg.start_soon(long_import)
            # The long import's Validation row is written before the kill (the assertion on it
            # below), whatever the machine's speed: the short import starts once it is.
            deadline = time.monotonic() + 60
            while not await validated(long):
                assert time.monotonic() < deadline, "the long import never finished its validation"
                await anyio.sleep(0.05)  # polling interval while waiting for that step
            response = await upload(short, import_file(2_000, "short"))
            kill()  # right after the answer: its rows are still in memory
            assert response.status_code == 200, response.text[:300]
            assert response.headers["x-trace-id"] == short
            results.append(Result(kind="import", started=0.0, status=200, trace_id=short))

        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_later)
            await run_load(client, rate=RATE, duration=seconds + 30, results=results, stop=lambda: bool(killed))
    return [r for r in results if r.status is not None], short, long


async def test_kill_9_under_load_and_during_an_import_loses_no_answered_request(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    log_dir, data_dir = tmp_path / "logs", tmp_path / "data"
    db_path = data_dir / "logs.db"
    env = {"LOG_SINKS": "csv,turso", "LOG_DIR": str(log_dir)}
    answered: list[Result] = []
    recovered: list[dict] = []
    for n in range(KILLS):  # the last kill comes right after an import is answered
        app = start_app(data_dir, env)
        try:
            if n:
                recovered.append(app.health()["logs"].get("wal", {}))
            moment = rng.uniform(0.3, scaled(2.0, minimum=1.0))
            got, short, long = await load_then_kill(app, f"load{n}@example.com", moment, imports=n == KILLS - 1)
            answered += got
        finally:
            app.stop(signal.SIGKILL)
    app = start_app(data_dir, env)  # recovers the last kill's record, then a clean stop
    recovered.append(app.health()["logs"].get("wal", {}))
    assert app.stop() in (0, -signal.SIGTERM)
    output = app.output()

    note = f"seed {seed}, recovered {recovered}"
    assert len(answered) >= KILLS * 5, (len(answered), note)
    # Every answer needs its row. None is a 500: the import holds the items write lock only for
    # its final copy, so creates under it wait briefly (tests/reliability/test_import_under_load.py).
    assert all(r.trace_id for r in answered), note
    note += f", statuses {collections.Counter(r.status for r in answered)}"
    assert [r for r in answered if r.status is not None and r.status >= 500] == [], note
    assert sum(w.get("rows_new", 0) for w in recovered) > 0, note  # the test did kill with rows in memory
    api = csv_rows(log_dir)
    csv_traces = collections.Counter(row.trace_id for row in api)
    db_traces = collections.Counter(db_ids(db_path, column="trace_id"))
    wanted = [r.trace_id for r in answered]
    assert short in wanted, note
    assert [t for t in wanted if csv_traces[t] != 1] == [], note
    assert [t for t in wanted if db_traces[t] != 1] == [], note
    csv_ids = [row.id for row in api]
    assert len(csv_ids) == len(set(csv_ids)), note
    assert sorted(csv_ids) == sorted(db_ids(db_path)), note  # the same rows in both, none twice
    tasks = csv_rows(log_dir, "task_progress_logs")
    task_ids = [row.id for row in tasks]
    assert len(task_ids) == len(set(task_ids)) and sorted(task_ids) == sorted(db_ids(db_path, "task_progress_logs")), note
    done = {(row.step_name, row.status) for row in tasks if row.trace_id == short}
    assert {("Validation", "SUCCESS"), ("Transform", "SUCCESS"), ("DB_Commit", "SUCCESS")} <= done, (done, note)
    # The long import (cut by the kill, or done just before it): its steps written so far are kept.
    assert any(row.trace_id == long and row.step_name == "Validation" for row in tasks), note
    assert "rows not written at shutdown" not in output, output[-2000:]
    assert list(log_dir.glob("wal.*")) == [], note  # everything written: no record left
    print(f"kill -9 x{KILLS}: {len(answered)} answered requests, each once in CSV and DB; "
          f"{len(api)} api rows, {len(tasks)} task rows; {note}")


def children(pid: int) -> list[int]:
    """uvicorn's worker processes (not multiprocessing's resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    found = []
    for child in path.read_text().split() if path.exists() else []:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
        except OSError:  # ended meanwhile
            continue
    return found


async def test_kill_9_of_one_worker_of_two_its_restarted_successor_recovers_its_rows(tmp_path: Path) -> None:
    """uvicorn --workers 2: one worker killed under load is restarted by uvicorn; the new worker
    takes another worker id (the killed one's lease is held for a minute) and recovers the killed
    one's record at once (its lock is free). Every answered request's row, once, in both sinks."""
    log_dir, data_dir = tmp_path / "logs", tmp_path / "data"
    db_path = data_dir / "logs.db"
    env = {"LOG_SINKS": "csv,turso", "LOG_DIR": str(log_dir), "WEB_CONCURRENCY": "2"}
    app = start_app(data_dir, env, args=("--workers", "2"))
    results: list[Result] = []
    moment = random.uniform(0.5, scaled(1.5, minimum=1.0))
    try:
        workers = children(app.process.pid)
        assert len(workers) == 2, workers
        victim = random.choice(workers)
        events: list[float] = []
        left: list[Path] = []

        async def kill_one() -> None:
            await anyio.sleep(moment)  # the random moment of the kill, on the load's schedule
            # A worker that is still starting holds no record yet: wait until the victim does.
            prefix = await async_wait_for(lambda: record_prefix(victim), 30, "the victim's write-ahead lock")
            os.kill(victim, signal.SIGKILL)
            left.extend(log_dir.glob(f"{prefix}.*.log"))  # the victim's record at its death
            events.append(time.monotonic())
            # Load goes on until uvicorn has started a new worker and it has recovered the record
            # (a victim that had every row written already, or no request at all, left none).
            await async_wait_for(lambda: len(set(children(app.process.pid)) - set(workers)) == 1, 30, "a new worker")
            await async_wait_for(lambda: not left or _recovered(app), 30, "the recovery")
            events.append(time.monotonic())

        async with signed_in(app.url, "two@example.com") as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_one)
                await run_load(client, rate=RATE, duration=moment + 60, results=results,
                               stop=lambda: len(events) == 2 and time.monotonic() > events[1] + 0.5)
    finally:
        code = app.stop()
    output = app.output()
    assert code in (0, -signal.SIGTERM), output[-2000:]
    answered = [r for r in results if r.status is not None]
    assert len(answered) >= RATE * moment * 0.5, len(answered)
    csv_traces = collections.Counter(row.trace_id for row in csv_rows(log_dir))
    db_traces = collections.Counter(db_ids(db_path, column="trace_id"))
    assert [r.trace_id for r in answered if csv_traces[r.trace_id] != 1] == [], output[-3000:]
    assert [r.trace_id for r in answered if db_traces[r.trace_id] != 1] == [], output[-3000:]
    if left:
        assert "recovered" in output, output[-3000:]  # the new worker said what it recovered
    assert list(log_dir.glob("wal.*.log")) == []


def record_prefix(pid: int) -> str | None:
    """The file-name prefix of a worker's write-ahead record, from the lock file it holds open
    (None until the worker has opened its record)."""
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            name = os.path.basename(os.readlink(fd))
        except OSError:
            continue
        if name.startswith("wal.w") and name.endswith(".lock"):
            return name.removesuffix(".lock")
    return None


def _recovered(app) -> bool:
    return "recovered" in app.output()
