"""Sustained fixed-rate load against a real uvicorn app while the Turso stand-in misbehaves
for the middle third of the run: down, then 500s, then 429s, then 5-second stalls.

Users must not notice (every request answered, none failed), the CSV copy must hold exactly
one row per request as it goes, and once Turso is back it must catch up to exactly the same
rows, with no id twice anywhere.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import anyio
import pytest

from tests.support.reliability import (
    Remote,
    Result,
    app_process,
    async_wait_for,
    csv_rows,
    db_ids,
    percentile,
    run_load,
    scaled,
    signed_in,
)

pytestmark = [pytest.mark.reliability, pytest.mark.anyio]

RATE = 50.0  # requests per second
EXPECTED = {"list": 200, "create": 200, "search": 200}



async def fault_schedule(remote: Remote, duration: float, timeline: list[tuple[float, str]]) -> None:
    """Healthy for the first third, failing in four ways through the middle third, then healthy."""
    t0 = time.monotonic()
    phase = duration / 3 / 4

    async def at(offset: float) -> None:
        await anyio.sleep(max(0.0, t0 + offset - time.monotonic()))  # the schedule, not a wait

    await at(duration / 3)
    timeline.append((time.monotonic() - t0, "down"))
    await anyio.to_thread.run_sync(remote.down)
    await at(duration / 3 + phase)
    remote.fail("500")
    await anyio.to_thread.run_sync(remote.up)
    timeline.append((time.monotonic() - t0, "500"))
    await at(duration / 3 + 2 * phase)
    remote.clear()
    remote.fail("429")
    timeline.append((time.monotonic() - t0, "429"))
    await at(duration / 3 + 3 * phase)
    remote.clear()
    remote.fail("delay", delay=5.0)
    timeline.append((time.monotonic() - t0, "stall"))
    await at(2 * duration / 3)
    remote.clear()
    timeline.append((time.monotonic() - t0, "healthy"))


async def test_turso_faults_mid_run_lose_nothing_and_fail_no_user_request(tmp_path: Path) -> None:
    duration = scaled(20.0, minimum=6.0)
    with Remote(tmp_path / "turso.db") as remote:
        log_dir = tmp_path / "logs"
        env = {"LOG_SINKS": "csv,turso", "LOG_DIR": str(log_dir), "TURSO_DATABASE_URL": remote.url}
        with app_process(tmp_path / "data", env) as app:
            async with signed_in(app.url) as client:
                results: list[Result] = []
                timeline: list[tuple[float, str]] = []
                async with anyio.create_task_group() as tg:
                    tg.start_soon(fault_schedule, remote, duration, timeline)
                    await run_load(client, rate=RATE, duration=duration, results=results)
                # Requests the client made before the load (sign-up, CSRF page loads) have rows too.
                served = len(results) + 3
                failed = [r for r in results if r.error or r.status != EXPECTED[r.kind]]
                assert not failed, (len(failed), failed[:5], timeline)
                assert len(results) == int(RATE * duration)
                assert [m for _, m in timeline] == ["down", "500", "429", "stall", "healthy"]

                # The durable copy keeps up during the fault; Turso catches up once it is healthy.
                await async_wait_for(lambda: len(csv_rows(log_dir)) >= served, 30, "CSV rows")
                await async_wait_for(
                    lambda: len(db_ids(remote.db_path)) >= served, scaled(60, minimum=45), "Turso to catch up"
                )
                stats = app.sink_stats("turso")
                csv_stats = app.sink_stats("csv")
        output = app.output()

    csv_ids = [row.id for row in csv_rows(log_dir)]
    turso_ids = db_ids(remote.db_path)
    assert len(csv_ids) == served, (len(csv_ids), served)
    assert len(turso_ids) == served, (len(turso_ids), served)
    assert [i for i, n in collections.Counter(csv_ids).items() if n > 1] == []
    assert set(csv_ids) == set(turso_ids)  # the same app-assigned ids in both sinks
    # The fault really happened and was survived by retrying, not by dropping.
    assert stats["failed_batches"] > 0, stats
    assert stats["dropped"] == 0 and stats["conflicts"] == 0, stats
    assert csv_stats["failed_batches"] == 0, csv_stats
    assert "log sink turso failing, will retry" in output
    # Every served request's trace id is in the rows (no row for one request stood in for another).
    traces = {row.trace_id for row in csv_rows(log_dir)}
    assert {r.trace_id for r in results} <= traces
    print(
        f"\n{len(results)} requests in {duration:.0f}s; p50 {percentile([r.latency for r in results], 50) * 1000:.1f} ms,"
        f" p99 {percentile([r.latency for r in results], 99) * 1000:.1f} ms; turso {stats}"
    )
