"""Shutdown loses nothing: every row accepted before the lifespan closes is on disk after it,
in the CSV files and in the log database, in-process and under a real uvicorn (SIGTERM)."""

from __future__ import annotations

import signal
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx
import pytest

from log.sinks.csv_sink import read_rows
from tests.support.app import make_settings, start_server
from tests.app.test_request_logging import Made, csv_rows, db_rows, logged, serving

pytestmark = pytest.mark.anyio



@pytest.mark.parametrize("flush", ["background", "request"])
async def test_every_accepted_row_is_written_by_the_end_of_the_lifespan(tmp_path: Path, flush: str) -> None:
    settings = make_settings(tmp_path, log_sinks=("csv", "turso"), log_flush=flush)
    made: list[Made] = []
    async with serving(settings, made=made) as (client, state):
        await client.signup("dana@example.com")

        async def burst(worker: int) -> None:
            for i in range(20):
                response = await client.get(f"/items?q=w{worker}-{i}")
                assert response.status_code == 200

        async with anyio.create_task_group() as tg:
            for worker in range(25):
                tg.start_soon(burst, worker)
        fanout = state["tracing"].fanout
        accepted = len(logged(made))
        # Most rows are still queued when the lifespan starts to close (batches are 0.2 s apart);
        # the point is that closing writes them, not that they were written already.
    assert accepted == 3 + 25 * 20
    stats = fanout.stats()
    assert stats["rejected_after_close"] == 0
    for name in ("csv", "turso"):
        assert stats["sinks"][name]["unflushed"] == 0 and stats["sinks"][name]["queued"] == 0
    rows = csv_rows(settings)
    assert len(rows) == accepted
    assert {r.trace_id for r in rows} == {m.got_trace for m in logged(made)}
    assert db_rows(settings) == rows


def test_sigterm_writes_every_row_before_uvicorn_exits(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"LOG_SINKS": "csv,turso"})
    traces = [str(uuid.uuid4()) for _ in range(300)]
    try:
        with httpx.Client(base_url=server.url) as client:

            def get(trace: str) -> int:
                return client.get("/", params={"t": trace}, headers={"X-Trace-ID": trace}).status_code

            with ThreadPoolExecutor(6) as pool:
                assert set(pool.map(get, traces)) == {200}
    finally:
        server.process.send_signal(signal.SIGTERM)
        try:
            code = server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            raise
    log = (tmp_path / "server.log").read_text()
    # uvicorn re-raises SIGTERM after a graceful shutdown, so -15 is a clean exit too.
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete." in log, log
    assert "not written at shutdown" not in log
    rows = list(read_rows(tmp_path / "logs", "api_logs"))
    assert sorted(r.trace_id for r in rows) == sorted(traces)  # /health (readiness) is not logged
    settings = make_settings(tmp_path)
    assert db_rows(settings) == rows
