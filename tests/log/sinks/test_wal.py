"""The write-ahead record (log/sinks/wal.py) and its recovery by Tracing.open: a process killed
after answering requests whose rows were still in memory loses none of them; recovery writes
each row once to the CSV files and the log database, with its original id, however often it
runs; segments are deleted once every sink wrote their rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from log.core.captured import Captured
from log.core.rows import TaskProgressLog
from log.sinks.csv_sink import read_rows
from log.sinks.wal import WriteAhead, claim, csv_ids, read_records, wal_files
from log.tracing import Tracing
from tests.support.app import make_settings
from tests.support.reliability import db_ids

ROOT = Path(__file__).resolve().parents[3]


def captured(row_id: int, status: int = 200, **overrides) -> Captured:
    values = dict(
        received_at=1_796_000_000.5, duration_ms=2, method="GET", path="/items", query_string="",
        request_headers=[(b"host", b"x")], request_body=b"", request_body_size=0, response_status=status,
        response_headers=[(b"content-type", b"application/json")], response_body=b"{}", response_body_size=2,
        client_ip="127.0.0.1", user_id=None, trace_id=f"0f8fad5b-d9cb-469f-a165-{row_id:012d}", row_id=row_id,
    )
    return Captured(**{**values, **overrides})


def task(row_id: int) -> TaskProgressLog:
    return TaskProgressLog(
        id=row_id, trace_id="t", task_name="Bulk_Import", step_name="Commit", status="SUCCESS",
        input_data=None, output_data=None, error_message=None, stack_trace=None, execution_order=1,
        created_at="2026-12-01 00:00:00.000",
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Lanes:
    """Stands in for the fan-out's marks: rows handed over, rows written."""

    def __init__(self) -> None:
        self.handed = self.written = 0

    def mark(self) -> int:
        return self.handed

    def reached(self, mark: int) -> bool:
        return self.written >= mark


def test_a_segment_goes_once_its_rows_are_handed_over_and_written(tmp_path: Path) -> None:
    clock, lanes = Clock(), Lanes()
    wal = WriteAhead(tmp_path, 3, clock=clock, segment_seconds=1.0)
    wal.append_answered(captured(10))
    wal.append_task(task(11), lambda row: None)
    lanes.handed = 1
    clock.now = 2.0
    wal.checkpoint(lanes.mark, lanes.reached)  # sealed, but row 10 is not handed over yet
    assert len(wal_files(tmp_path)) == 1 and wal.stats()["segments"] == 1
    wal.release(10)
    lanes.handed = 2
    wal.checkpoint(lanes.mark, lanes.reached)  # marked at 2, not written yet
    assert len(wal_files(tmp_path)) == 1
    lanes.written = 2
    wal.checkpoint(lanes.mark, lanes.reached)
    assert wal_files(tmp_path) == [] and wal.stats()["segments_deleted"] == 1
    wal.append_answered(captured(12))  # a new segment
    wal.close(everything_written=False)
    assert [r.row_id for r in read_records([p for *_, p in wal_files(tmp_path)]).answered.values()] == [12]
    wal.close(everything_written=True)
    assert wal_files(tmp_path) == []


def test_the_oldest_segments_go_past_the_size_cap(tmp_path: Path) -> None:
    clock, lanes = Clock(), Lanes()
    wal = WriteAhead(tmp_path, 1, clock=clock, segment_seconds=0.0, max_bytes=1)
    for i in range(3):
        wal.append_answered(captured(i + 1))
        clock.now += 1
        wal.checkpoint(lanes.mark, lanes.reached)
    assert wal_files(tmp_path) == [] and wal.stats()["segments_dropped"] == 3


def test_a_live_segment_is_read_back_whole_and_a_sealed_one_is_cut_to_its_records(tmp_path: Path) -> None:
    clock = Clock()
    wal = WriteAhead(tmp_path, 1, clock=clock, segment_seconds=1.0)
    for row_id in (1, 2, 3):
        wal.append_answered(captured(row_id))
    (_, _, live), = wal_files(tmp_path)
    assert live.stat().st_size >= wal.segment_bytes  # its room is reserved up front (zeros)
    found = read_records([live])  # what recovery reads after a kill: the mapped pages, as written
    assert sorted(found.answered) == [1, 2, 3] and found.torn_bytes == 0
    clock.now = 2.0
    wal.checkpoint(lambda: 0, lambda mark: False)  # old enough: sealed, not deletable yet
    assert live.stat().st_size == wal.stats()["size"] < wal.segment_bytes
    assert sorted(read_records([live]).answered) == [1, 2, 3]
    wal.close(everything_written=False)


def test_a_full_disk_fails_the_record_when_a_segment_opens_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import log.sinks.wal as wal_module

    def no_space(fd: int, size: int) -> None:
        raise OSError(28, "No space left on device")

    wal = WriteAhead(tmp_path, 1)
    with monkeypatch.context() as m:
        m.setattr(wal_module, "_reserve", no_space)
        with pytest.raises(OSError):
            wal.append_answered(captured(1))
        assert wal_files(tmp_path) == [] and wal.stats()["write_errors"] == 1
    wal.append_answered(captured(2))  # space again: the next record opens a segment
    assert sorted(read_records([p for _, _, p in wal_files(tmp_path)]).answered) == [2]
    wal.close(everything_written=False)


def test_claim_takes_ended_workers_files_once_and_the_last_record_of_an_id_wins(tmp_path: Path) -> None:
    ended, alive = WriteAhead(tmp_path, 1), WriteAhead(tmp_path, 2)
    for wal, row_id in ((ended, 100), (alive, 200)):
        wal.append_answered(captured(row_id))
        wal.append_answered(captured(row_id, status=499))  # the outcome changed afterwards
    ended.close(everything_written=False)  # as a killed process: the kernel lets its lock go
    with (tmp_path / "wal.w1.1.log").open("wb") as f:  # a torn frame of an older segment
        f.write(b"\x10\x00\x00\x00\x9c")  # its length and one byte of its checksum
    # Worker 2 still holds its lock: alive, whatever the leases say.
    claimer = WriteAhead(tmp_path, 7)  # holds its lock before it claims: its files are never taken
    paths = claim(tmp_path, 7, lambda owner: True)
    assert [p.name.split(".")[1] for p in paths] == ["w7", "w7"]
    assert claim(tmp_path, 8, lambda owner: True) == []  # already claimed, 2 still alive
    found = read_records(paths)
    assert {i: c.response_status for i, c in found.answered.items()} == {100: 499}
    assert found.torn_bytes == 5
    assert sorted(owner for _, owner, _ in wal_files(tmp_path)) == [2, 7, 7]
    alive.close(everything_written=False)
    claimer.close(everything_written=False)
    # Both ended now (their locks are free): the leases are not asked where there are locks.
    assert [p.name.split(".")[1] for p in claim(tmp_path, 8, lambda owner: False)] == ["w8"] * 3
    assert list(tmp_path.glob("*.lock")) == []  # the ended writers' lock files went with their files
    WriteAhead(tmp_path, 9).close(everything_written=False)  # killed before it wrote anything
    assert len(claim(tmp_path, 8, lambda owner: False)) == 3  # its own, again: nothing else
    assert list(tmp_path.glob("*.lock")) == []


def test_csv_ids_finds_the_wanted_rows_in_each_files_tail_down_to_the_margin(tmp_path: Path) -> None:
    from log.core.csv_codec import encode_rows, header_line
    from log.core.rows import ApiLog
    from log.sinks.wal import CSV_SCAN_MARGIN_IDS as M

    def rows(*ids: int) -> str:
        return encode_rows([ApiLog(id=i, trace_id="t", method="GET", endpoint="/", request_header=None,
                                   request_body=None, response_status=200, response_body=None, duration_ms=1,
                                   ip_address=None, user_id=None, created_at="2026-12-01 00:00:00.000")
                            for i in ids])

    torn = rows(M + 70)[:20]  # a crash cut the last line: readers skip it, so it is not there
    (tmp_path / "api_logs.csv").write_text(header_line(ApiLog) + rows(5, 6, M + 50, M + 60) + torn)
    (tmp_path / "api_logs.w3.csv").write_text(header_line(ApiLog) + rows(7))
    wanted = {5, 6, 7, M + 50, M + 60, M + 65, M + 70}
    assert csv_ids(tmp_path, {M + 55, M + 60, M + 65, M + 70})["api_logs"] == {M + 60}
    # The lowest wanted id sets how far back each file is read: 6 - M is below every id here.
    assert csv_ids(tmp_path, wanted)["api_logs"] == {5, 6, 7, M + 50, M + 60}
    assert csv_ids(tmp_path, wanted)["task_progress_logs"] == set()


# -- a process killed with rows in memory, and its successors ------------------------------------

KILLED = textwrap.dedent("""
    import asyncio, os, signal, sys, time
    from pathlib import Path
    from log.core.captured import Captured
    from log.tracing import Tracing
    from tests.support.app import make_settings

    def captured(i, **more):
        return Captured(
            received_at=time.time(), duration_ms=2, method="GET", path=f"/items/{i}", query_string="",
            request_headers=[(b"host", b"x")], request_body=b"", request_body_size=0, response_status=200,
            response_headers=[], response_body=b"{}", response_body_size=2, client_ip="127.0.0.1",
            user_id=None, trace_id=f"0f8fad5b-d9cb-469f-a165-{i:012d}", **more)

    async def main():
        settings = make_settings(Path(sys.argv[1]), log_sinks=("csv", "turso"), web_concurrency=int(sys.argv[2]))
        logs = Tracing(settings.tracing)
        await logs.open()
        # Requests 0-2: answered and written to every sink before the kill.
        for i in range(3):
            c = captured(i)
            logs.ahead(c)
            logs.record(c)
        logs.task("0f8fad5b-d9cb-469f-a165-000000000000", "Bulk_Import").record("Commit", "SUCCESS")
        logs.build_pending()
        while logs.fanout.stats()["sinks"]["turso"]["written"] < 4 or logs.fanout.stats()["sinks"]["csv"]["written"] < 4:
            await asyncio.sleep(0.02)
        # Requests 3-5 answered (the record is on disk), their rows still in memory; 6 crashed
        # (its page answered); a task row emitted; then the kill.
        for i in range(3, 6):
            c = captured(i)
            logs.ahead(c)
            logs.record(c)
        c = captured(6, exception="ValueError: boom", stack_trace="Traceback: boom")
        logs.ahead(c)
        logs.task("0f8fad5b-d9cb-469f-a165-000000000006", "Bulk_Import").record("Validation", "SUCCESS")
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
""")


@pytest.mark.anyio
@pytest.mark.parametrize("workers", [1, 2])
async def test_a_killed_process_rows_are_recovered_once_with_their_ids(tmp_path: Path, workers: int) -> None:
    """With 2 workers the killed one's worker-id lease is still held (60 s): its free lock says
    it ended, and its rows are in its own CSV files (.w0), not the recovering worker's."""
    done = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path), str(workers)], cwd=ROOT, capture_output=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    logs_dir, db = tmp_path / "logs", tmp_path / "logs.db"
    assert {r.trace_id[-1] for r in read_rows(logs_dir, "api_logs")} == {"0", "1", "2"}
    recorded = read_records([p for *_, p in wal_files(logs_dir)])
    expected_ids = sorted([*recorded.answered, recorded.answered[max(recorded.answered)].crash_id])
    assert len(expected_ids) == 8  # 7 requests, 1 crash row

    settings = make_settings(tmp_path, log_sinks=("csv", "turso"), web_concurrency=workers)
    for start in range(2):  # recovery, then a start with nothing left to recover
        logs = Tracing(settings.tracing)
        await logs.open()
        stats = logs.stats()
        await logs.aclose()
        if start == 0:
            assert stats["wal"]["rows_new"] == 6  # requests 3-6, the crash row of 6, the second task row
            assert stats["wal"]["rows_in_csv"] == 4  # requests 0-2 and the first task row
        else:
            assert "rows_new" not in stats["wal"]
        assert wal_files(logs_dir) == []  # everything written: no record left
        csv_api = [r.id for r in read_rows(logs_dir, "api_logs")]
        assert sorted(csv_api) == sorted(recorded.answered) == sorted(db_ids(db))
        statuses = {r.trace_id[-1]: r.response_status for r in read_rows(logs_dir, "api_logs")}
        assert statuses == {str(i): 200 for i in range(7)}
        tasks = [(r.id, r.step_name) for r in read_rows(logs_dir, "task_progress_logs")]
        assert sorted(r[1] for r in tasks) == ["Commit", "Validation", "unhandled_exception"]
        assert len({i for i, _ in tasks}) == 3 and sorted(i for i, _ in tasks) == sorted(db_ids(db, "task_progress_logs"))
        crash = recorded.answered[max(recorded.answered)].crash_id
        assert crash in {i for i, _ in tasks}


@pytest.mark.anyio
async def test_a_running_process_deletes_its_record_once_every_sink_wrote_the_rows(tmp_path: Path) -> None:
    from tests.support.reliability import async_wait_for

    logs = Tracing(make_settings(tmp_path, log_sinks=("csv", "turso")).tracing)
    await logs.open()
    try:
        for i in range(5):
            c = captured(0, received_at=1_796_000_000.5 + i)
            logs.ahead(c)
            logs.record(c)
        logs.task("0f8fad5b-d9cb-469f-a165-000000000001", "Bulk_Import").record("Commit", "SUCCESS")
        assert len(wal_files(tmp_path / "logs")) == 1
        assert logs.stats()["wal"]["records"] == 6
        # Sealed after SEGMENT_SECONDS, deleted at a checkpoint once CSV and the log DB have the rows.
        await async_wait_for(lambda: not wal_files(tmp_path / "logs"), 15, "the record to be deleted")
        assert len(db_ids(tmp_path / "logs.db")) == 5 and len(list(read_rows(tmp_path / "logs", "api_logs"))) == 5
        assert logs.stats()["wal"]["segments_deleted"] == 1
    finally:
        await logs.aclose()


def test_a_claim_between_a_starting_workers_open_and_lock_does_not_leave_it_unseen(tmp_path: Path, monkeypatch) -> None:
    # Worker processes start together (WEB_CONCURRENCY): worker 1 has opened (created) its lock
    # file but not locked it yet when worker 0's claim finds that file free, and deletes it as
    # an ended worker's. Worker 1's lock must still be on the file its lock path names: a lock
    # on a deleted file is invisible, and the next claim (a worker restarted later) would take
    # worker 1's live record.
    import fcntl

    real_flock, claimed = fcntl.flock, []

    def flock(fd: int, operation: int) -> None:
        if not claimed:  # the first lock taken is worker 1's own: worker 0 claims just before
            claimed.append(None)
            claimed[0] = claim(tmp_path, 0, lambda owner: False)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    starting = WriteAhead(tmp_path, 1)
    monkeypatch.setattr(fcntl, "flock", real_flock)
    starting.append_answered(captured(10))
    assert claimed == [[]]
    assert [p.name for p in claim(tmp_path, 2, lambda owner: False)] == []  # worker 1 is alive: nothing of it is taken
    assert (tmp_path / "wal.w1.lock").exists()
    starting.close(everything_written=False)
    assert [p.name.split(".")[1] for p in claim(tmp_path, 2, lambda owner: False)] == ["w2"]  # now it ended


def test_a_starting_worker_waits_while_a_claim_holds_its_lock_file(tmp_path: Path, monkeypatch) -> None:
    # Worker 1's previous holder ended and left its files; as the new worker 1 starts, another
    # starting worker is claiming them and holds their lock file for that moment. Worker 1 waits
    # for the claim (moments) instead of running without a lock, which would leave its own
    # record free for the next claim to take.
    import fcntl

    from log.sinks.wal import lock_path, try_lock

    ended = WriteAhead(tmp_path, 1)
    ended.append_answered(captured(10))
    ended.close(everything_written=False)
    claimer = try_lock(lock_path(tmp_path, 1))  # a claim in progress (claim() holds it while renaming)
    assert isinstance(claimer, int) and claimer >= 0
    real_flock, refused = fcntl.flock, []

    def flock(fd: int, operation: int) -> None:
        try:
            real_flock(fd, operation)
        except BlockingIOError:
            if not refused:  # the claim ends now: the files taken, the lock file deleted, let go
                refused.append(fd)
                for _, _, path in wal_files(tmp_path):
                    path.rename(tmp_path / f"taken.{path.name}")
                lock_path(tmp_path, 1).unlink()
                os.close(claimer)
            raise

    monkeypatch.setattr(fcntl, "flock", flock)
    starting = WriteAhead(tmp_path, 1)
    monkeypatch.setattr(fcntl, "flock", real_flock)
    assert refused, "the claim held the lock when worker 1 first tried"
    starting.append_answered(captured(20))
    assert [p.name for p in claim(tmp_path, 2, lambda owner: False)] == []  # worker 1 is alive: its record stays
    starting.close(everything_written=False)
