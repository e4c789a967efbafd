import os
import resource
import signal
from pathlib import Path

import pytest

from log.core.csv_codec import header_line
from log.sinks.csv_sink import CsvSink, csv_files, read_rows
from log.core.rows import ApiLog, TaskProgressLog
from log.sinks.base import SinkError, WriteResult



def api(i: int, text: str = "x") -> ApiLog:
    return ApiLog(
        id=i, trace_id=f"t{i}", method="GET", endpoint=f"/p?{text}", request_header='{"a":"b"}', request_body=None,
        response_status=200, response_body='"=1+1\\n"', duration_ms=-1, ip_address=None, user_id="u",
        created_at="2025-11-27 08:00:00.000",
    )  # fmt: skip


def task(i: int) -> TaskProgressLog:
    return TaskProgressLog(
        id=i, trace_id="t", task_name="n", step_name="s\nline2", status="SUCCESS", input_data=None, output_data="{}",
        error_message=None, stack_trace=None, execution_order=i, created_at="2025-11-27 08:00:00.000",
    )  # fmt: skip


@pytest.mark.anyio
async def test_write_and_read_back_both_tables(tmp_path):
    sink = CsvSink(tmp_path / "logs")
    await sink.open()
    assert (tmp_path / "logs" / "api_logs.csv").read_bytes() == header_line(ApiLog).encode()
    assert await sink.write("api_logs", [api(1), api(2)]) == WriteResult(inserted=2)
    assert await sink.write("task_progress_logs", [task(3)]) == WriteResult(inserted=1)
    await sink.write("api_logs", [api(4)])
    await sink.close()
    assert list(read_rows(tmp_path / "logs", "api_logs")) == [api(1), api(2), api(4)]
    assert list(read_rows(tmp_path / "logs", "task_progress_logs")) == [task(3)]
    text = (tmp_path / "logs" / "api_logs.csv").read_text()
    assert text.count("id,trace_id") == 1 and len(text.splitlines()) == 4


@pytest.mark.anyio
async def test_reopen_keeps_rows_and_repairs_torn_last_line(tmp_path):
    sink = CsvSink(tmp_path)
    await sink.open()
    await sink.write("api_logs", [api(1)])
    with (tmp_path / "api_logs.csv").open("ab") as f:
        f.write(b"2,t2,GET,/half-writ")  # a crash in the middle of a line
    sink = CsvSink(tmp_path)
    await sink.open()
    await sink.write("api_logs", [api(3)])
    errors: list[Path] = []
    assert list(read_rows(tmp_path, "api_logs", on_error=lambda p, e: errors.append(p))) == [api(1), api(3)]
    assert errors == [tmp_path / "api_logs.csv"]


@pytest.mark.anyio
async def test_torn_line_with_open_quote_does_not_swallow_later_rows(tmp_path):
    sink = CsvSink(tmp_path)
    await sink.open()
    with (tmp_path / "api_logs.csv").open("ab") as f:
        f.write(b'2,t2,GET,"/torn, quote never closed')
    await CsvSink(tmp_path).open()
    await sink.write("api_logs", [api(3), api(4)])
    assert [r.id for r in read_rows(tmp_path, "api_logs")] == [3, 4]


@pytest.mark.anyio
async def test_file_with_another_header_is_moved_aside_not_mixed(tmp_path):
    (tmp_path / "api_logs.csv").write_text("id,old_column\r\n1,x\r\n")
    sink = CsvSink(tmp_path)
    await sink.open()
    await sink.write("api_logs", [api(2)])
    assert (tmp_path / "api_logs.1.csv").read_text() == "id,old_column\n1,x\n"  # kept, untouched
    errors: list[Exception] = []
    assert [r.id for r in read_rows(tmp_path, "api_logs", on_error=lambda p, e: errors.append(e))] == [2]
    assert len(errors) == 1 and "header" in str(errors[0])


@pytest.mark.anyio
async def test_rotation_keeps_newest_files_and_deletes_acked(tmp_path):
    asked: list[tuple[str, int]] = []

    def can_delete(table: str, max_id: int) -> bool:
        asked.append((table, max_id))
        return True

    one_row = len(header_line(ApiLog)) + len(api(1).endpoint) + 200  # room for ~2 rows per file
    sink = CsvSink(tmp_path, max_bytes=one_row, keep=2, can_delete=can_delete)
    await sink.open()
    for i in range(1, 21):
        await sink.write("api_logs", [api(i)])
    names = sorted(p.name for p in tmp_path.glob("api_logs*"))
    assert names == ["api_logs.1.csv", "api_logs.2.csv", "api_logs.csv"]
    rows = list(read_rows(tmp_path, "api_logs"))
    assert [r.id for r in rows] == list(range(21 - len(rows), 21))  # newest rows, in order, no gaps
    assert asked and all(t == "api_logs" for t, _ in asked)
    assert [m for _, m in asked] == sorted(m for _, m in asked)  # oldest file's max id each time
    assert sink.rows_lost_to_rotation == 0 and sink.files_rotated > 2


@pytest.mark.anyio
async def test_rotation_never_deletes_unacked_rows_until_hard_cap(tmp_path):
    acked_up_to = {"api_logs": 0}
    sink = CsvSink(tmp_path, max_bytes=400, keep=1, hard_keep=3, can_delete=lambda t, m: m <= acked_up_to[t])
    await sink.open()
    for i in range(1, 6):
        await sink.write("api_logs", [api(i, "y" * 150)])  # one row per file
    # Nothing acked: rotated files pile up past keep=1, up to hard_keep=3, and nothing is lost yet.
    names = sorted(p.name for p in tmp_path.glob("api_logs*"))
    assert names == ["api_logs.1.csv", "api_logs.2.csv", "api_logs.3.csv", "api_logs.csv"]
    assert sink.rows_lost_to_rotation == 1  # row 1: the hard cap forced it out, and it is counted
    assert [r.id for r in read_rows(tmp_path, "api_logs")] == [2, 3, 4, 5]
    acked_up_to["api_logs"] = 3  # remote sinks now hold rows <= 3
    await sink.write("api_logs", [api(6, "y" * 150)])
    assert [r.id for r in read_rows(tmp_path, "api_logs")] == [4, 5, 6]
    assert sink.rows_lost_to_rotation == 1


@pytest.mark.anyio
async def test_worker_suffixes_are_separate_files_merged_on_read(tmp_path):
    w1, w2 = CsvSink(tmp_path, suffix=".w1"), CsvSink(tmp_path, suffix=".w2")
    await w1.open()
    await w2.open()
    await w1.write("api_logs", [api(1), api(4)])
    await w2.write("api_logs", [api(2), api(3), api(5)])
    assert set(csv_files(tmp_path, "api_logs")) == {".w1", ".w2"}
    assert [r.id for r in read_rows(tmp_path, "api_logs")] == [1, 2, 3, 4, 5]
    assert list(read_rows(tmp_path / "missing", "api_logs")) == []
    with pytest.raises(ValueError):
        CsvSink(tmp_path, suffix="../x")


@pytest.mark.anyio
async def test_disk_errors_are_retryable_sink_errors(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(SinkError) as err:
        await CsvSink(blocker / "logs").open()
    assert err.value.retryable
    sink = CsvSink(tmp_path / "ok")
    await sink.open()
    await sink.write("api_logs", [api(1)])
    target = tmp_path / "ok" / "api_logs.csv"
    target.unlink()
    os.symlink("/dev/full", target)  # every write now fails with ENOSPC
    with pytest.raises(SinkError) as err:
        await sink.write("api_logs", [api(2)])
    assert err.value.retryable
    with pytest.raises(SinkError) as err:
        await sink.write("nope", [api(3)])
    assert not err.value.retryable


@pytest.mark.anyio
async def test_failed_append_leaves_no_partial_rows(tmp_path):
    sink = CsvSink(tmp_path, fsync=True)
    await sink.open()
    await sink.write("api_logs", [api(1)])
    before = (tmp_path / "api_logs.csv").read_bytes()
    # A file size limit makes the kernel accept part of the batch and then fail with EFBIG.
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 100, old_limit[1]))
    try:
        with pytest.raises(SinkError) as err:
            await sink.write("api_logs", [api(i, "z" * 50) for i in range(2, 40)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert err.value.retryable
    assert (tmp_path / "api_logs.csv").read_bytes() == before
    await sink.write("api_logs", [api(2)])
    assert [r.id for r in read_rows(tmp_path, "api_logs")] == [1, 2]
