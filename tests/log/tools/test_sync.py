"""CSV -> database replay (`logs sync`, AutoReplay) and database -> CSV (`logs export`), against
the strict local Hrana server and a plain SQLite file."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from log.tools.sync import CHECKPOINT_NAME
from log.sinks.csv_sink import CsvSink, read_rows
from log.tools.export import export_table, parse_when
from log.sinks.fanout import FanOut
from log.sinks.replay import (
    RESUME_MARGIN_IDS, AutoReplay, Frontier, load_checkpoint, progress_line, save_checkpoint, sync_csv,
)
from log.core.rows import ApiLog, LogRow, TaskProgressLog
from log.db.database import FileLogDatabase, HttpLogDatabase, RetryPolicy, open_log_database
from log.sinks.turso_sink import TursoSink
from settings import Settings
from tests.support.hrana_server import HranaServer, Running, running

TOKEN = "sync-test-token"



@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    with running(HranaServer(str(tmp_path / "remote.db"), token=TOKEN)) as r:
        yield r


def api(i: int, minute: int = 0, body: str | None = '{"ok":true}') -> ApiLog:
    return ApiLog(
        id=i, trace_id=f"t{i}", method="GET", endpoint=f"/items/{i}", request_header='{"accept":"*/*"}',
        request_body=None, response_status=200, response_body=body, duration_ms=2, ip_address="127.0.0.1",
        user_id=None, created_at=f"2026-11-27 10:{minute:02d}:00.000",
    )  # fmt: skip


def task(i: int) -> TaskProgressLog:
    return TaskProgressLog(
        id=i, trace_id=f"t{i}", task_name="import", step_name="parse", status="FAILED", input_data=None,
        output_data=None, error_message="line 1\nline 2, \"quoted\"", stack_trace="=cmd|' /C calc'!A0",
        execution_order=1, created_at="2026-11-27 10:00:00.000",
    )  # fmt: skip


async def write_csv(log_dir: Path, rows_by_worker: dict[str, list[LogRow]], max_bytes: int = 2_000) -> None:
    """Real CSV files: several worker suffixes, small max_bytes so there are rotated files too."""
    for suffix, rows in rows_by_worker.items():
        sink = CsvSink(log_dir, suffix=suffix, max_bytes=max_bytes, keep=100)
        await sink.open()
        for i in range(0, len(rows), 7):
            chunk = rows[i : i + 7]
            for table in ("api_logs", "task_progress_logs"):
                part = [r for r in chunk if (table == "api_logs") == isinstance(r, ApiLog)]
                if part:
                    await sink.write(table, part)


def sample() -> dict[str, list[LogRow]]:
    return {
        "": [api(i) for i in range(0, 120, 2)] + [task(1000 + i) for i in range(15)],
        ".w3": [api(i) for i in range(1, 120, 2)],
    }


def settings_for(tmp_path: Path, url: str, token: str = TOKEN) -> Settings:
    # The rows have fixed dates: no retention window, or they would expire as the calendar moves on.
    return Settings(data_dir=tmp_path, turso_database_url=url, turso_auth_token=token, log_retention_days=0)


@pytest.fixture(params=["http", "file"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "file":
        yield settings_for(tmp_path, f"file:{tmp_path / 'synced.db'}", "")
    else:
        with running(HranaServer(str(tmp_path / "remote.db"), token=TOKEN)) as r:
            yield settings_for(tmp_path, r.url)


async def db_rows(settings: Settings, table: str, row_type: type) -> list[LogRow]:
    async with httpx.AsyncClient() as http:
        db = open_log_database(settings.log_database_url, settings.turso_auth_token or None, http)
        try:
            return await db.fetch_rows(row_type, "1 ORDER BY id")
        finally:
            await db.aclose()


def summary_counts(out: str, table: str) -> dict[str, int]:
    line = next(line for line in out.splitlines() if line.strip().startswith(table + ":"))
    parts = line.split(":", 1)[1].split(",")
    return {p.strip().rsplit(" ", 1)[0]: int(p.strip().rsplit(" ", 1)[1]) for p in parts}


# -- pure parts ---------------------------------------------------------------------------------


def test_progress_line() -> None:
    assert progress_line("sync", 5, 10, width=10) == "\rsync [#####.....] 5/10 ( 50%)"
    assert progress_line("sync", 12, 10, width=4) == "\rsync [####] 12/10 (100%)"
    assert progress_line("x", 0, 0, width=2) == "\rx [##] 0/0 (100%)"


def test_frontier_stops_before_the_first_failure() -> None:
    f = Frontier()
    assert f.synced_upto() is None
    f.read([api(10), api(12)])
    f.read([api(11), api(20)])
    f.failed([api(11), api(20)])
    f.read([api(30)])
    assert f.synced_upto() == 10


def test_checkpoint_is_tied_to_the_database_url(tmp_path: Path) -> None:
    path = tmp_path / "logs" / CHECKPOINT_NAME
    assert load_checkpoint(path, "http://a") == {}
    save_checkpoint(path, "http://a", {"api_logs": 5})
    assert load_checkpoint(path, "http://a") == {"api_logs": 5}
    assert load_checkpoint(path, "http://b") == {}
    path.write_text("{torn")
    assert load_checkpoint(path, "http://a") == {}


def test_parse_when() -> None:
    now = dt.datetime(2026, 11, 27, 12, 0, 0)
    assert parse_when("2026-11-27", now) == "2026-11-27 00:00:00.000"
    assert parse_when("2026-11-27 10:30", now) == "2026-11-27 10:30:00.000"
    assert parse_when("2026-11-27T10:30:00+01:00", now) == "2026-11-27 09:30:00.000"
    assert parse_when("90m", now) == "2026-11-27 10:30:00.000"
    assert parse_when("2d", now) == "2026-11-25 12:00:00.000"
    with pytest.raises(ValueError):
        parse_when("yesterday", now)


# -- logs sync ----------------------------------------------------------------------------------


def test_sync_sends_every_csv_row_once_and_the_second_run_inserts_nothing(
    target: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(write_csv, target.logs_path, sample())
    expected_api = list(read_rows(target.logs_path, "api_logs"))
    assert len(expected_api) == 120 and len(list(target.logs_path.glob("api_logs*.*.csv"))) > 2  # rotated

    assert main(["logs", "sync", "--batch", "50"], settings=target) == 0
    captured = capsys.readouterr()
    assert summary_counts(captured.out, "api_logs") == {
        "read": 120, "already present": 0, "inserted": 120, "failed": 0, "conflicts": 0}
    assert summary_counts(captured.out, "task_progress_logs")["inserted"] == 15
    assert "\rsync api_logs" in captured.err and "120/120 (100%)" in captured.err
    assert TOKEN not in captured.out + captured.err

    assert main(["logs", "sync"], settings=target) == 0
    second = summary_counts(capsys.readouterr().out, "api_logs")
    assert second["inserted"] == 0 and second["failed"] == 0

    assert main(["logs", "sync", "--full"], settings=target) == 0
    full = summary_counts(capsys.readouterr().out, "api_logs")
    assert full == {"read": 120, "already present": 120, "inserted": 0, "failed": 0, "conflicts": 0}
    assert anyio.run(db_rows, target, "api_logs", ApiLog) == sorted(expected_api, key=lambda r: r.id)
    assert anyio.run(db_rows, target, "task_progress_logs", TaskProgressLog) == [task(1000 + i) for i in range(15)]


def test_sync_resumes_from_the_checkpoint_and_reports_conflicts(
    server: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path, server.url)
    base, step = 5 * RESUME_MARGIN_IDS, RESUME_MARGIN_IDS // 10  # Snowflake ids 6 s apart
    anyio.run(write_csv, settings.logs_path, {"": [api(base + i * step) for i in range(40)]})
    assert main(["logs", "sync"], settings=settings) == 0
    last = base + 39 * step
    assert load_checkpoint(settings.logs_path / CHECKPOINT_NAME, server.url) == {"api_logs": last}
    capsys.readouterr()

    later = base + 10 * RESUME_MARGIN_IDS
    anyio.run(write_csv, settings.logs_path, {"": [api(later + i) for i in range(10)]})
    anyio.run(write_csv, settings.logs_path, {".w9": [api(base + 5 * step, body="other")]})  # same id, other content
    before = server.server.pipeline_requests
    assert main(["logs", "sync"], settings=settings) == 0
    counts = summary_counts(capsys.readouterr().out, "api_logs")
    # Only the last minute before the checkpoint is read again (10 rows); older rows, and the
    # conflicting copy among them, are skipped.
    assert counts == {"read": 20, "already present": 10, "inserted": 10, "failed": 0, "conflicts": 0}
    assert server.server.pipeline_requests - before <= 3  # open + one batch

    assert main(["logs", "sync", "--full"], settings=settings) == 0
    out = capsys.readouterr()
    assert summary_counts(out.out, "api_logs")["conflicts"] == 1
    assert "different content" in out.err


def test_failed_batches_are_counted_and_a_rerun_completes(
    server: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path, server.url)
    anyio.run(write_csv, settings.logs_path, {"": [api(i) for i in range(100)]})
    # open() succeeds (two requests: it reads the columns, then applies the schema), then 4
    # failures = every attempt of the first batch (the client tries 4 times).
    server.server.inject("delay", 2, delay=0.0)
    server.server.inject("503", times=4)
    assert main(["logs", "sync", "--batch", "25"], settings=settings) == 1
    out = capsys.readouterr()
    counts = summary_counts(out.out, "api_logs")
    assert counts["failed"] == 25 and counts["inserted"] == 75
    assert "run it again" in out.err
    assert load_checkpoint(settings.logs_path / CHECKPOINT_NAME, server.url).get("api_logs", -1) < 0
    assert main(["logs", "sync"], settings=settings) == 0
    again = summary_counts(capsys.readouterr().out, "api_logs")
    assert again["inserted"] == 25 and again["already present"] == 75
    assert [r.id for r in anyio.run(db_rows, settings, "api_logs", ApiLog)] == list(range(100))


def test_sync_with_a_wrong_token_says_so_once_and_stops(
    server: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path, server.url, token="wrong-token")
    anyio.run(write_csv, settings.logs_path, {"": [api(i) for i in range(10)]})
    before = server.server.pipeline_requests
    assert main(["logs", "sync"], settings=settings) == 1
    err = capsys.readouterr().err
    assert "401" in err and "TURSO_AUTH_TOKEN" in err and "wrong-token" not in err
    assert server.server.pipeline_requests - before == 1


def test_sync_of_an_empty_log_dir(target: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "sync"], settings=target) == 0
    assert summary_counts(capsys.readouterr().out, "api_logs")["read"] == 0


# -- logs export --------------------------------------------------------------------------------


def test_export_reads_back_equal_to_the_database(target: Settings, tmp_path: Path, capsys) -> None:
    rows = [api(i, minute=i % 60) for i in range(130)] + [api(200, body="=SUM(A1)\r\n\\N"), api(201, body=None)]
    anyio.run(write_csv, target.logs_path, {"": rows + [task(1000)]})
    assert main(["logs", "sync"], settings=target) == 0
    out_dir = tmp_path / "copy"
    assert main(["logs", "export", "--out", str(out_dir), "--page-size", "40"], settings=target) == 0
    captured = capsys.readouterr()
    assert "\rexport api_logs" in captured.err and "132/132" in captured.err
    in_db = anyio.run(db_rows, target, "api_logs", ApiLog)
    assert list(read_rows(out_dir, "api_logs")) == in_db and len(in_db) == 132
    assert list(read_rows(out_dir, "task_progress_logs")) == [task(1000)]

    window = tmp_path / "window"
    args = ["logs", "export", "--since", "2026-11-27 10:10", "--until", "2026-11-27 10:20", "--out", str(window)]
    assert main(args, settings=target) == 0
    expected = [r for r in in_db if "2026-11-27 10:10" <= r.created_at < "2026-11-27 10:20"]
    assert list(read_rows(window, "api_logs")) == expected and len(expected) == 20


def test_export_refuses_the_live_csv_dir_and_bad_times(tmp_path: Path, capsys) -> None:
    settings = settings_for(tmp_path, f"file:{tmp_path / 'x.db'}", "")
    assert main(["logs", "export", "--out", str(settings.logs_path)], settings=settings) == 2
    assert main(["logs", "export", "--since", "last tuesday"], settings=settings) == 2
    assert "24h" in capsys.readouterr().err


# -- automatic replay of rows deferred to CSV ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(condition, timeout: float = 15.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)


@pytest.mark.anyio
async def test_rows_deferred_while_turso_is_down_are_replayed_from_csv_when_it_is_back(tmp_path: Path) -> None:
    port, log_dir, reports = free_port(), tmp_path / "logs", []
    async with httpx.AsyncClient() as http:
        db = HttpLogDatabase(http, f"http://127.0.0.1:{port}", TOKEN, retry=RetryPolicy(attempts=1))
        turso = TursoSink(db)
        fan = FanOut([CsvSink(log_dir), turso], batch_size=10, flush_interval=0.01, max_queue=20,
                     backoff_base=0.02, backoff_max=0.1, report=reports.append)
        replay = AutoReplay(fan, turso, log_dir, interval=0.02)
        await fan.start()
        task_ = asyncio.create_task(replay.run())
        try:
            for start in range(0, 100, 10):  # Turso is down: 20 rows queue up, 80 are deferred to CSV
                for i in range(start, start + 10):
                    fan.emit(api(i))
                await until(lambda: fan.stats()["sinks"]["csv"]["written"] == start + 10)
            stats = fan.stats()["sinks"]["turso"]
            assert stats["deferred_to_csv"] == 80 and stats["deferred_from_id"] == {"api_logs": 20}
            assert stats["queued"] == 20 and replay.rounds == 0
            with running(HranaServer(str(tmp_path / "remote.db"), token=TOKEN), port=port) as r:
                await until(lambda: replay.rounds == 1 and fan.stats()["sinks"]["turso"]["queued"] == 0)
                stored = await db.fetch_rows(ApiLog, "1 ORDER BY id")
                assert stored == [api(i) for i in range(100)]  # every row once, none missing
                assert fan.stats()["sinks"]["turso"]["deferred_from_id"] == {}
                assert replay.stats()["inserted"] + replay.stats()["already_present"] == 80
                fan.emit(api(100))  # and the lane goes on as usual
                await until(lambda: fan.stats()["sinks"]["turso"]["written"] >= 21)
                await fan.aclose(deadline=2)
                assert r.server.pipeline_requests < 40
        finally:
            task_.cancel()
            await asyncio.gather(task_, return_exceptions=True)
            await fan.aclose(deadline=0.1)


class FlakySink:
    """Fails the first `failures` writes, then records: a remote that comes back."""

    name = "turso"

    def __init__(self, failures: int) -> None:
        self.failures, self.rows = failures, {}

    async def write(self, table, rows):
        from log.sinks.base import SinkError, WriteResult

        if self.failures:
            self.failures -= 1
            raise SinkError("down", retryable=True)
        new = [r for r in rows if r.id not in self.rows]
        self.rows.update({r.id: r for r in rows})
        return WriteResult(len(new), len(rows) - len(new))


class Deferrals:
    """A recording stand-in for the fan-out's side of AutoReplay."""

    def __init__(self, ranges: dict[str, tuple[int, int]], durable_after: int = 0) -> None:
        self.ranges, self.durable_after, self.finished = ranges, durable_after, []

    def replay_ready(self, name: str) -> bool:
        return bool(self.ranges)

    def take_deferred(self, name: str):
        ranges, self.ranges = self.ranges, {}
        return ranges, 1

    def finish_replay(self, name, ranges, ok) -> None:
        self.finished.append(ok)
        if not ok:
            self.ranges = ranges

    def durable_reached(self, mark: int) -> bool:
        self.durable_after -= 1
        return self.durable_after < 0


@pytest.mark.anyio
async def test_auto_replay_waits_for_the_csv_copy_and_keeps_ranges_after_a_failure(tmp_path: Path) -> None:
    await write_csv(tmp_path, {"": [api(i) for i in range(30)]})
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    sink, fan = FlakySink(failures=1), Deferrals({"api_logs": (10, 19)}, durable_after=2)
    replay = AutoReplay(fan, sink, tmp_path, sleep=sleep, report=lambda m: None, batch_size=4)
    assert await replay.tick() is False  # the CSV lane caught up (2 polls), then the write failed
    assert sleeps == [0.05, 0.05] and fan.finished == [False] and fan.ranges == {"api_logs": (10, 19)}
    assert await replay.tick() is True
    assert sorted(sink.rows) == list(range(10, 20)) and fan.finished == [False, True]
    assert replay.stats()["rounds"] == 1 and replay.stats()["failed_rounds"] == 1
    assert await replay.tick() is False  # nothing deferred: nothing to do


@pytest.mark.anyio
async def test_auto_replay_reads_again_when_the_csv_files_rotated_meanwhile(tmp_path: Path) -> None:
    await write_csv(tmp_path, {"": [api(i) for i in range(30)]})
    reads = iter([0, 1, 1, 1])  # the files rotated during the first read, not the second
    sink, fan = FlakySink(failures=0), Deferrals({"api_logs": (0, 29)})
    replay = AutoReplay(fan, sink, tmp_path, report=lambda m: None, rotations=lambda: next(reads))
    assert await replay.tick() is True
    assert replay.counts.read == 60 and replay.counts.inserted == 30 and replay.counts.already_present == 30
    always_rotating = AutoReplay(Deferrals({"api_logs": (0, 29)}), sink, tmp_path, rotations=iter(range(99)).__next__)
    assert await always_rotating.tick() is False  # gives up after 3 reads; the range stays deferred
    assert always_rotating.fanout.ranges == {"api_logs": (0, 29)}


@pytest.mark.anyio
async def test_sync_csv_reports_progress_per_table(tmp_path: Path) -> None:
    await write_csv(tmp_path, sample())
    seen: list[tuple[str, int, int]] = []
    sink = FlakySink(failures=0)
    results = await sync_csv(tmp_path, sink, batch_size=40, progress=lambda *a: seen.append(a))
    assert results["api_logs"].inserted == 120 and results["task_progress_logs"].inserted == 15
    assert seen[-1] == ("task_progress_logs", 15, 15)
    assert [s for s in seen if s[0] == "api_logs"] == [("api_logs", n, 120) for n in (40, 80, 120)]


def test_progress_bar_writes_one_line_per_table() -> None:
    from log.tools.progress import ProgressBar

    out = io.StringIO()
    bar = ProgressBar("sync", out)
    bar("a", 1, 2)
    bar("a", 2, 2)
    bar("b", 1, 1)
    bar.end()
    assert out.getvalue().count("\n") == 2 and out.getvalue().count("\r") == 3


class Switchable:
    """A sink that fails while `down` is set."""

    def __init__(self, name: str) -> None:
        self.name, self.down, self.ids = name, False, []

    async def open(self) -> None: ...

    async def write(self, table, rows):
        from log.sinks.base import SinkError, WriteResult

        if self.down:
            raise SinkError("down", retryable=True)
        self.ids += [r.id for r in rows]
        return WriteResult(len(rows))

    async def close(self) -> None: ...


@pytest.mark.anyio
async def test_rows_deferred_during_a_replay_are_not_forgotten_and_guard_rotation() -> None:
    now = [0.0]
    csv, turso = Switchable("csv"), Switchable("turso")
    turso.down = True
    fan = FanOut([csv, turso], max_queue=2, batch_size=1, clock=lambda: now[0], report=lambda m: None)

    async def emit(i: int) -> None:
        fan.emit(api(i))
        now[0] += 100.0  # past any backoff
        await fan.flush_due()

    for i in range(5):  # CSV takes all; turso keeps 2 rows and defers 3 to CSV
        await emit(i)
    assert csv.ids == [0, 1, 2, 3, 4] and not fan.replay_ready("turso")  # it is failing
    turso.down = False
    now[0] += 100.0
    await fan.flush_due()
    assert turso.ids == [0, 1] and fan.replay_ready("turso")  # written again, room to spare
    ranges, mark = fan.take_deferred("turso")
    assert ranges == {"api_logs": (2, 4)} and not fan.replay_ready("turso")
    assert fan.durable_reached(mark)  # the CSV lane has written every accepted row
    assert not fan.csv_can_delete("api_logs", 3)  # being replayed: its CSV files must stay
    assert fan.stats()["sinks"]["turso"]["deferred_from_id"] == {"api_logs": 2}
    turso.down = True
    for i in (5, 6, 7, 8):  # deferred while the replay runs (7 and 8 overflow the lane)
        await emit(i)
    fan.finish_replay("turso", ranges, ok=True)
    assert fan.stats()["sinks"]["turso"]["deferred_from_id"] == {"api_logs": 7}
    assert fan.csv_can_delete("api_logs", 4) and not fan.csv_can_delete("api_logs", 7)
    ranges2, _ = fan.take_deferred("turso")
    fan.finish_replay("turso", ranges2, ok=False)  # a failed round defers its range again
    assert fan.take_deferred("turso")[0] == {"api_logs": (7, 8)}


# -- round trip and the real command line ---------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
stamps = st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S.") + f"{d.microsecond // 1000:03d}")
api_rows = st.lists(
    st.builds(
        ApiLog, id=st.integers(-(2**63), 2**63 - 1), trace_id=texts, method=texts, endpoint=texts,
        request_header=st.none() | texts, request_body=st.none() | texts, response_status=st.none() | st.integers(0, 999),
        response_body=st.none() | texts, duration_ms=st.none() | st.integers(0, 10**9),
        ip_address=st.none() | texts, user_id=st.none() | texts, created_at=stamps,
    ),
    max_size=12, unique_by=lambda r: r.id,
)


@given(rows=api_rows)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_csv_to_database_to_csv_round_trip(rows: list[ApiLog], tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("rt")

    async def run() -> list[LogRow]:
        await write_csv(tmp / "logs", {"": rows})
        db = FileLogDatabase(str(tmp / "logs.db"))
        try:
            sink = TursoSink(db)
            await sink.open()
            results = await sync_csv(tmp / "logs", sink)
            assert results["api_logs"].inserted == len(rows)
            await export_table(db, "api_logs", tmp / "out", page_size=5)
            return await db.fetch_rows(ApiLog, "1 ORDER BY id")
        finally:
            db.close()

    in_db = anyio.run(run)
    assert in_db == sorted(rows, key=lambda r: r.id)
    assert list(read_rows(tmp / "out", "api_logs")) == in_db


def test_sync_and_export_as_modules_with_settings_from_the_environment(server: Running, tmp_path: Path) -> None:
    anyio.run(write_csv, tmp_path / "logs", {"": [api(i) for i in range(25)]})
    env = {k: v for k, v in os.environ.items() if k != "K_SERVICE"}
    env.update(DATA_DIR=str(tmp_path), TURSO_DATABASE_URL=server.url, TURSO_AUTH_TOKEN=TOKEN)
    root = Path(__file__).resolve().parents[3]
    sync = subprocess.run([sys.executable, "-m", "cli", "logs", "sync"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert sync.returncode == 0, sync.stderr
    assert summary_counts(sync.stdout, "api_logs")["inserted"] == 25 and "25/25" in sync.stderr
    export = subprocess.run([sys.executable, "-m", "cli", "logs", "export", "--since", "2026-11-27"], cwd=root,
                            env=env, capture_output=True, text=True, timeout=60)
    assert export.returncode == 0, export.stderr
    assert list(read_rows(tmp_path / "logs-export", "api_logs")) == [api(i) for i in range(25)]
    assert TOKEN not in sync.stdout + sync.stderr + export.stdout + export.stderr
