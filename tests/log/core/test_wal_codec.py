"""The write-ahead record's frames: what was written reads back exactly (ids included), and a
tail torn by a crash, or bytes that are not a frame, are never read as a record."""

from __future__ import annotations


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from log.core.captured import Captured
from log.core.rows import TaskProgressLog
from log.core.wal_codec import decode_frames, decode_record, encode_answered, encode_task, iter_records


def captured(i: int = 1, **overrides) -> Captured:
    values = dict(
        received_at=1_796_000_000.123456, duration_ms=3, method="POST", path="/items", query_string="q=1",
        request_headers=[(b"host", b"x"), (b"cookie", b"s=1")], request_body=b"name=a\x00b",
        request_body_size=8, response_status=200, response_headers=[(b"content-type", b"text/html")],
        response_body=b"<p>ok</p>", response_body_size=9, client_ip="127.0.0.1", user_id="u1",
        trace_id="0f8fad5b-d9cb-469f-a165-70867728950e", route="/items", row_id=1000 + i, crash_id=0,
    )
    return Captured(**{**values, **overrides})


def task(i: int = 1) -> TaskProgressLog:
    return TaskProgressLog(
        id=5000 + i, trace_id="t", task_name="Bulk_Import", step_name="Commit", status="SUCCESS",
        input_data='{"rows": 3}', output_data=None, error_message=None, stack_trace=None,
        execution_order=i, created_at="2026-01-01 00:00:00.000",
    )


def test_records_read_back_exactly_with_their_ids() -> None:
    crashed = captured(2, exception="ValueError: boom", stack_trace="Traceback ...", crash_id=77)
    data = encode_answered(captured()) + encode_task(task()) + encode_answered(crashed)
    assert list(iter_records(data)) == [captured(), task(), crashed]


def test_a_torn_last_record_is_ignored_and_the_whole_ones_are_kept() -> None:
    whole = encode_answered(captured(1)) + encode_task(task(1))
    last = encode_answered(captured(2))
    for cut in (1, 5, 8, 9, len(last) - 1):
        payloads, torn = decode_frames(whole + last[:cut])
        assert [decode_record(p) for p in payloads] == [captured(1), task(1)]
        assert torn == cut


def test_a_damaged_record_ends_the_readable_part() -> None:
    first, second, third = encode_task(task(1)), encode_task(task(2)), encode_task(task(3))
    damaged = bytearray(second)
    damaged[-1] ^= 0xFF  # the checksum no longer matches
    payloads, torn = decode_frames(first + bytes(damaged) + third)
    assert [decode_record(p) for p in payloads] == [task(1)]
    assert torn == len(second) + len(third)


def test_a_payload_that_is_no_record_is_refused() -> None:
    with pytest.raises(ValueError):
        decode_record(b"\x93\x09\x01\x02")
    with pytest.raises(ValueError):
        decode_record(b"not msgpack at all \xc1")


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=300), path=st.text(max_size=40), user=st.none() | st.text(max_size=10),
    headers=st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40)), max_size=5),
    cut=st.integers(min_value=0, max_value=2000),
)
def test_any_request_round_trips_and_any_cut_reads_a_prefix(body, path, user, headers, cut) -> None:
    records = [captured(1, request_body=body, path=path, user_id=user, request_headers=headers), task(1)]
    data = b"".join(encode_answered(r) if isinstance(r, Captured) else encode_task(r) for r in records)
    assert list(iter_records(data)) == records
    got = list(iter_records(data[:cut]))
    assert got == records[: len(got)]


def test_the_zeros_of_a_segments_unused_room_end_the_frames_and_are_not_torn() -> None:
    first, second = encode_task(task(1)), encode_task(task(2))
    payloads, torn = decode_frames(first + second + bytes(4096))
    assert [decode_record(p).id for p in payloads] == [task(1).id, task(2).id]
    assert torn == 0
    payloads, torn = decode_frames(first + second[:-3] + bytes(4096))  # killed while copying the second
    assert [decode_record(p).id for p in payloads] == [task(1).id]
    assert 0 < torn <= len(second) - 3
