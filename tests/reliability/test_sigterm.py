"""SIGTERM in the middle of fixed-rate load: every request that got an answer has its row in
every reachable sink (the CSV file, and the log database: the Hrana stand-in or a file:)."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import anyio
import pytest

from tests.support.reliability import Remote, Result, async_wait_for, csv_rows, db_ids, run_load, scaled, signed_in, start_app

pytestmark = [pytest.mark.reliability, pytest.mark.anyio]

RATE = 50.0



@pytest.mark.parametrize("log_db", ["hrana", "file"])
async def test_sigterm_under_load_keeps_a_row_for_every_answered_request(tmp_path: Path, log_db: str) -> None:
    with contextlib.ExitStack() as stack:
        log_dir = tmp_path / "logs"
        env = {"LOG_SINKS": "csv,turso", "LOG_DIR": str(log_dir)}
        if log_db == "hrana":
            remote = stack.enter_context(Remote(tmp_path / "turso.db"))
            env["TURSO_DATABASE_URL"], db_path = remote.url, remote.db_path
        else:
            db_path = tmp_path / "data" / "logs.db"  # the default: file:DATA_DIR/logs.db
        app = start_app(tmp_path / "data", env)
        stack.callback(app.stop, signal.SIGKILL)
        before = scaled(3.0, minimum=1.5)
        results: list[Result] = []
        sent_at: list[float] = []

        async def terminate() -> None:
            await anyio.sleep(before)  # load runs this long before the signal: the schedule
            sent_at.append(time.monotonic())
            app.process.send_signal(signal.SIGTERM)

        def stop() -> bool:
            # Keep sending for a second after SIGTERM (requests then meet a closing server).
            return bool(sent_at) and time.monotonic() > sent_at[0] + 1.0

        async with signed_in(app.url) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(terminate)
                await run_load(client, rate=RATE, duration=before + 30, results=results, stop=stop)
        code = await anyio.to_thread.run_sync(lambda: app.process.wait(30))
        app.stop()  # already exited: joins the output reader
        output = app.output()
        # uvicorn shuts down gracefully, then re-raises the signal it caught: -15 is a clean exit.
        assert code in (0, -signal.SIGTERM), output[-2000:]
        assert "Application shutdown complete" in output, output[-2000:]

    answered = [r for r in results if r.status is not None]
    assert len(answered) >= RATE * before * 0.8, (len(answered), len(results))
    assert all(r.status == 200 for r in answered), [r for r in answered if r.status != 200][:5]
    assert all(r.trace_id for r in answered)
    csv_traces = {row.trace_id for row in csv_rows(log_dir)}
    missing_csv = [r.trace_id for r in answered if r.trace_id not in csv_traces]
    assert missing_csv == [], (len(missing_csv), output[-2000:])
    # The stand-in outlives the app; nothing may still be arriving, but poll briefly anyway.
    await async_wait_for(lambda: db_path.exists(), 5, "the log database file")
    db_traces = set(db_ids(db_path, column="trace_id"))
    missing_db = [r.trace_id for r in answered if r.trace_id not in db_traces]
    assert missing_db == [], (len(missing_db), output[-2000:])
    csv_ids = [row.id for row in csv_rows(log_dir)]
    assert len(csv_ids) == len(set(csv_ids))
    assert sorted(csv_ids) == sorted(db_ids(db_path))  # the same rows in both sinks, none twice
    assert "rows not written at shutdown" not in output
