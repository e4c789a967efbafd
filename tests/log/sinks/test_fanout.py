import asyncio
import threading

import pytest

from log.sinks.csv_sink import CsvSink, read_rows
from log.sinks.fanout import FanOut
from log.core.rows import ApiLog, TaskProgressLog
from log.sinks.base import SinkError, WriteResult



def api(i: int) -> ApiLog:
    return ApiLog(
        id=i, trace_id="t", method="GET", endpoint=f"/{i}", request_header=None, request_body=None,
        response_status=200, response_body=None, duration_ms=1, ip_address=None, user_id=None,
        created_at="2025-11-27 08:00:00.000",
    )  # fmt: skip


def task(i: int) -> TaskProgressLog:
    return TaskProgressLog(
        id=i, trace_id="t", task_name="n", step_name="s", status="START", input_data=None, output_data=None,
        error_message=None, stack_trace=None, execution_order=0, created_at="2025-11-27 08:00:00.000",
    )  # fmt: skip


class RecordingSink:
    def __init__(self, name: str = "csv") -> None:
        self.name = name
        self.batches: list[tuple[str, list]] = []
        self.opened = self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def write(self, table, rows):
        self.batches.append((table, list(rows)))
        return WriteResult(inserted=len(rows))

    async def close(self) -> None:
        self.closed = True

    def ids(self, table: str = "api_logs") -> list[int]:
        return [r.id for t, rows in self.batches if t == table for r in rows]


class FailingSink(RecordingSink):
    """Fails the first `failures` writes (forever if None), then records."""

    def __init__(self, name: str = "turso", failures: int | None = None, retryable: bool = True) -> None:
        super().__init__(name)
        self.failures, self.retryable, self.attempts = failures, retryable, 0

    async def write(self, table, rows):
        self.attempts += 1
        if self.failures is None or self.attempts <= self.failures:
            raise SinkError(f"attempt {self.attempts} failed", retryable=self.retryable)
        return await super().write(table, rows)


class StuckSink(RecordingSink):
    """Every write hangs until released: a remote database that stopped answering."""

    def __init__(self, name: str = "turso") -> None:
        super().__init__(name)
        self.release = asyncio.Event()
        self.in_write = 0

    async def write(self, table, rows):
        self.in_write += 1
        await self.release.wait()
        return await super().write(table, rows)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def until(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.002)


@pytest.mark.anyio
async def test_batches_by_size_then_by_time_with_injected_clock():
    clock, sink = FakeClock(), RecordingSink()
    fan = FanOut([sink], batch_size=3, flush_interval=0.2, clock=clock)
    for i in range(7):
        fan.emit(api(i))
    await fan.flush_due()
    assert [len(rows) for _, rows in sink.batches] == [3, 3]  # the 7th row is neither full nor old
    clock.now = 0.19
    await fan.flush_due()
    assert len(sink.batches) == 2
    clock.now = 0.2
    await fan.flush_due()
    assert sink.ids() == list(range(7))
    assert [len(rows) for _, rows in sink.batches] == [3, 3, 1]
    assert fan.stats()["sinks"]["csv"]["written"] == 7


@pytest.mark.anyio
async def test_batch_grouped_by_table_in_order():
    clock, sink = FakeClock(), RecordingSink()
    fan = FanOut([sink], batch_size=10, clock=clock)
    for row in [api(1), task(2), api(3), task(4), api(5)]:
        fan.emit(row)
    clock.now = 1
    await fan.flush_due()
    written = [(t, [r.id for r in rows]) for t, rows in sink.batches]
    assert written == [("api_logs", [1, 3, 5]), ("task_progress_logs", [2, 4])]


@pytest.mark.anyio
async def test_background_task_flushes_by_time():
    sink = RecordingSink()
    async with FanOut([sink], batch_size=100, flush_interval=0.01) as fan:
        fan.emit(api(1))
        await until(lambda: sink.ids() == [1])
        fan.emit(api(2))
        await until(lambda: sink.ids() == [1, 2])
    assert sink.opened and sink.closed


@pytest.mark.anyio
async def test_failing_sink_does_not_stop_others_and_keeps_its_rows():
    good, bad = RecordingSink("csv"), FailingSink("turso")
    reports: list[str] = []
    fan = FanOut([bad, good], batch_size=5, flush_interval=0.001, backoff_base=0.001, backoff_max=0.002, report=reports.append)
    await fan.start()
    for i in range(20):
        fan.emit(api(i))
    await until(lambda: good.ids() == list(range(20)))
    await until(lambda: bad.attempts >= 3)
    stats = fan.stats()["sinks"]["turso"]
    assert stats["queued"] == 20 and stats["written"] == 0 and stats["failed_batches"] >= 3
    assert stats["last_error"].startswith("SinkError: attempt ")
    assert len([r for r in reports if "turso" in r]) == 1  # one report per failure streak, not per retry
    await fan.aclose(deadline=0.05)
    assert fan.stats()["sinks"]["turso"]["unflushed"] == 20


@pytest.mark.anyio
async def test_retryable_failures_back_off_exponentially_then_deliver_in_order():
    clock, sink = FakeClock(), FailingSink(failures=3)
    fan = FanOut([sink], batch_size=2, clock=clock, jitter=lambda: 1.0, backoff_base=0.5, backoff_max=1.5, report=lambda m: None)
    for i in range(4):
        fan.emit(api(i))
    schedule = []
    for t in [0.0, 0.4, 0.5, 1.4, 1.5, 2.9, 3.0]:
        clock.now = t
        await fan.flush_due()
        schedule.append(sink.attempts)
    # Attempts at 0 (fails, wait 0.5), 0.5 (fails, wait 1.0), 1.5 (fails, wait capped at 1.5), 3.0 (works).
    assert schedule == [1, 1, 2, 2, 3, 3, 5]
    assert sink.ids() == [0, 1, 2, 3]


@pytest.mark.anyio
async def test_jitter_spreads_retries_between_half_and_full_delay():
    clock, sink = FakeClock(), FailingSink()
    fan = FanOut([sink], batch_size=1, clock=clock, jitter=lambda: 0.0, backoff_base=2.0, report=lambda m: None)
    fan.emit(api(1))
    await fan.flush_due()
    assert sink.attempts == 1
    assert fan._lane("turso").retry_at == 1.0  # 2.0 * (0.5 + 0.5 * 0.0)


@pytest.mark.anyio
async def test_non_retryable_error_reported_once_rows_kept_until_resume():
    clock, sink, reports = FakeClock(), FailingSink(failures=1, retryable=False), []
    fan = FanOut([sink], batch_size=2, clock=clock, report=reports.append)
    fan.emit(api(1))
    fan.emit(api(2))
    for t in range(5):
        clock.now = 100.0 * t
        await fan.flush_due()
    assert sink.attempts == 1 and len(reports) == 1 and "not retryable" in reports[0]
    stats = fan.stats()["sinks"]["turso"]
    assert stats["blocked"] and stats["queued"] == 2 and stats["failed_batches"] == 1
    await fan.flush_due()
    assert sink.attempts == 1  # a blocked lane stays blocked: no retry storm


@pytest.mark.anyio
async def test_slow_sink_never_delays_emit_or_other_sinks():
    fast, slow = RecordingSink("csv"), StuckSink("turso")
    fan = FanOut([fast, slow], batch_size=50, flush_interval=0.001)
    await fan.start()
    for i in range(1000):
        fan.emit(api(i))  # synchronous: returns without awaiting any sink
    await until(lambda: fast.ids() == list(range(1000)))
    await until(lambda: slow.in_write == 1)
    assert slow.ids() == []
    stats = await fan.aclose(deadline=0.05)  # the stuck write is cancelled at the deadline
    assert stats["sinks"]["turso"]["unflushed"] == 1000
    assert stats["sinks"]["csv"]["written"] == 1000 and stats["sinks"]["csv"]["unflushed"] == 0


@pytest.mark.anyio
async def test_shutdown_flushes_every_accepted_row_to_real_csv_files(tmp_path):
    csv = CsvSink(tmp_path)
    fan = FanOut([csv], batch_size=400, flush_interval=60.0)  # nothing would be due by time
    await fan.start()
    rows = [api(i) if i % 3 else task(i) for i in range(2500)]
    for row in rows:
        fan.emit(row)
    stats = await fan.aclose(deadline=8.0)
    assert list(read_rows(tmp_path, "api_logs")) == [r for r in rows if isinstance(r, ApiLog)]
    assert list(read_rows(tmp_path, "task_progress_logs")) == [r for r in rows if isinstance(r, TaskProgressLog)]
    assert stats["sinks"]["csv"]["written"] == 2500 and stats["sinks"]["csv"]["rows_lost_to_rotation"] == 0
    fan.emit(api(9999))
    assert fan.stats()["rejected_after_close"] == 1


@pytest.mark.anyio
async def test_request_mode_never_started_still_drains_on_close(tmp_path):
    fan = FanOut([CsvSink(tmp_path)], batch_size=10, flush_interval=60.0)
    for i in range(25):
        fan.emit(api(i))
    await fan.flush_due()  # two full batches written inline, five rows wait for their time
    assert [r.id for r in read_rows(tmp_path, "api_logs")] == list(range(20))
    await fan.aclose()
    assert [r.id for r in read_rows(tmp_path, "api_logs")] == list(range(25))


@pytest.mark.anyio
async def test_overload_defers_to_csv_and_guards_csv_rotation():
    clock, csv, remote = FakeClock(), RecordingSink("csv"), FailingSink("turso")
    fan = FanOut([csv, remote], batch_size=10, max_queue=10, clock=clock, report=lambda m: None)
    for i in range(10):
        fan.emit(api(i))
    await fan.flush_due()  # csv took the batch; the remote failed and holds 10 pending rows
    for i in range(10, 15):
        fan.emit(api(i))
    stats = fan.stats()["sinks"]
    assert stats["turso"]["deferred_to_csv"] == 5 and stats["turso"]["dropped"] == 0
    assert stats["turso"]["deferred_from_id"] == {"api_logs": 10}
    assert stats["csv"]["queued"] == 5
    assert not fan.csv_can_delete("api_logs", 0)  # row 0 is still pending for turso
    assert fan.csv_can_delete("task_progress_logs", 10**9)
    remote.failures = 0
    clock.now = 100
    await fan.flush_due()
    assert remote.ids() == list(range(10))
    assert fan.csv_can_delete("api_logs", 9)
    assert not fan.csv_can_delete("api_logs", 10)  # deferred rows live only in the CSV files


@pytest.mark.anyio
async def test_real_csv_rotation_waits_for_the_remote_sink(tmp_path):
    clock, remote = FakeClock(), FailingSink("turso")
    csv = CsvSink(tmp_path, max_bytes=600, keep=1, hard_keep=50)
    fan = FanOut([csv, remote], batch_size=2, clock=clock, report=lambda m: None)
    csv.can_delete = fan.csv_can_delete  # the wiring app.py does
    for i in range(20):
        fan.emit(api(i))
        await fan.flush_due()  # every write of 2 rows may rotate; the remote keeps failing
    assert [r.id for r in read_rows(tmp_path, "api_logs")] == list(range(20))  # nothing deleted
    assert len(list(tmp_path.glob("api_logs*.csv"))) > 2
    remote.failures = 0
    for i in range(20, 40):
        clock.now += 100
        fan.emit(api(i))
        await fan.flush_due()
    clock.now += 100
    await fan.flush_due()  # the odd last row, due by time
    assert remote.ids() == list(range(40))
    ids = [r.id for r in read_rows(tmp_path, "api_logs")]
    assert ids == list(range(40 - len(ids), 40)) and len(ids) < 40  # acked files could go
    assert len(list(tmp_path.glob("api_logs*.csv"))) == 2 and csv.rows_lost_to_rotation == 0


def test_overload_without_durable_copy_counts_drops():
    fan = FanOut([RecordingSink("turso")], max_queue=3)
    for i in range(5):
        fan.emit(api(i))
    assert fan.stats()["sinks"]["turso"]["dropped"] == 2
    assert fan.stats()["sinks"]["turso"]["queued"] == 3


def test_emit_never_raises():
    fan = FanOut([RecordingSink()])
    fan.emit("not a row")  # type: ignore[arg-type]
    assert fan.stats()["emit_errors"] == 1 and fan.stats()["sinks"]["csv"]["queued"] == 0


@pytest.mark.anyio
async def test_emit_from_worker_thread_wakes_the_loop():
    sink = RecordingSink()
    async with FanOut([sink], batch_size=5, flush_interval=3600.0) as fan:
        thread = threading.Thread(target=lambda: [fan.emit(api(i)) for i in range(5)])
        thread.start()
        await until(lambda: sink.ids() == list(range(5)))  # a full batch, woken from the thread
        thread.join()
    assert sink.ids() == list(range(5))


@pytest.mark.anyio
async def test_conflicts_counted_and_reported_and_open_retried():
    class ConflictSink(RecordingSink):
        opens = 0

        async def open(self) -> None:
            self.opens += 1
            if self.opens == 1:
                raise SinkError("tables not ready", retryable=True)

        async def write(self, table, rows):
            await super().write(table, rows)
            return WriteResult(inserted=len(rows) - 1, already_present=0, conflicts=1)

    clock, sink, reports = FakeClock(), ConflictSink("turso"), []
    fan = FanOut([sink], batch_size=2, clock=clock, jitter=lambda: 1.0, report=reports.append)
    fan.emit(api(1))
    fan.emit(api(2))
    await fan.flush_due()
    assert sink.opens == 1 and sink.batches == []
    clock.now = 10
    await fan.flush_due()
    stats = fan.stats()["sinks"]["turso"]
    assert (sink.opens, stats["written"], stats["conflicts"]) == (2, 1, 1)
    assert any("already held other content" in r for r in reports)


@pytest.mark.anyio
async def test_emit_many_queues_like_emit_row_by_row_and_falls_back_when_a_lane_is_full() -> None:
    one, many = RecordingSink("csv"), RecordingSink("csv")
    rows = [api(i) for i in range(1, 8)]
    by_one, by_many = FanOut([one], batch_size=3, max_queue=5), FanOut([many], batch_size=3, max_queue=5)
    for row in rows:
        by_one.emit(row)
    by_many.emit_many(rows[:2])
    by_many.emit_many(rows[2:])  # 5 more than fit: row by row, the last two over the cap
    assert [list(lane.queue) for lane in by_many._lanes] == [list(lane.queue) for lane in by_one._lanes]
    assert by_many.stats() == by_one.stats()
