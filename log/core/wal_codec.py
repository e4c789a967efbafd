"""The write-ahead record's bytes: one frame per answered request or task row. Pure.

A frame is `length (u32 LE) | crc32 (u32 LE) | payload`; the payload is msgpack:

    [1, <Captured as an array, its ids included>]   an answered request (log/core/captured.py):
                                                    the raw material, rebuilt into the same row
                                                    (same ids) by the same builder at recovery
    [2, <TaskProgressLog as an array>]              a task row, as written

Arrays, not maps: the field names are not repeated in every record. A field appended to
Captured or TaskProgressLog later reads back from an older record with its default.

decode_frames stops at the first frame that is cut short or whose checksum does not match:
that is the tail a crash tore (a kill during the write, a power cut), and nothing after it in
the file can be trusted to be a frame boundary. It also stops at a zero length: a segment's
room not yet written is zeros (log/sinks/wal.py maps a reserved file), and no frame is empty.
The torn count leaves out the zeros at the end (the unused room; a torn frame's own trailing
zeros look the same).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import msgspec

from log.core.captured import Captured
from log.core.rows import TaskProgressLog

ANSWERED, TASK = 1, 2
_HEAD = struct.Struct("<II")
_pack, _crc32 = _HEAD.pack, zlib.crc32
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode
_astuple = msgspec.structs.astuple
_CAPTURED_FIELDS = Captured.__struct_fields__
_TASK_FIELDS = TaskProgressLog.__struct_fields__


def _frame(payload: bytes) -> bytes:
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def encode_answered(captured: Captured) -> bytes:
    payload = _encode((ANSWERED, _astuple(captured)))  # inline _frame: this one is on the request path
    return _pack(len(payload), _crc32(payload)) + payload


def encode_task(row: TaskProgressLog) -> bytes:
    return _frame(_encode((TASK, _astuple(row))))


def decode_frames(data: bytes) -> tuple[list[bytes], int]:
    """(the payloads of the whole frames, bytes of torn tail ignored)."""
    payloads: list[bytes] = []
    view, pos, end = memoryview(data), 0, len(data)
    while pos + _HEAD.size <= end:
        length, crc = _HEAD.unpack_from(view, pos)
        start = pos + _HEAD.size
        if length == 0 or start + length > end:
            break
        payload = bytes(view[start : start + length])
        if zlib.crc32(payload) != crc:
            break
        payloads.append(payload)
        pos = start + length
    return payloads, len(bytes(view[pos:]).rstrip(b"\0"))


def _headers(pairs: list[list[bytes]]) -> list[tuple[bytes, bytes]]:
    return [(bytes(k), bytes(v)) for k, v in pairs]


def decode_record(payload: bytes) -> Captured | TaskProgressLog:
    """A frame's payload back to what was written; ValueError for anything else."""
    try:
        kind, values = _decode(payload)
        if kind == ANSWERED:
            fields = dict(zip(_CAPTURED_FIELDS, values))
            fields["request_headers"] = _headers(fields["request_headers"])
            fields["response_headers"] = _headers(fields["response_headers"])
            return Captured(**fields)
        if kind == TASK:
            return TaskProgressLog(**dict(zip(_TASK_FIELDS, values)))
    except (msgspec.DecodeError, TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"not a write-ahead record: {exc}") from None
    raise ValueError(f"unknown write-ahead record kind {kind!r}")


def iter_records(data: bytes) -> Iterator[Captured | TaskProgressLog]:
    """Every readable record of a file's bytes, in order (a torn tail is left out)."""
    payloads, _ = decode_frames(data)
    for payload in payloads:
        yield decode_record(payload)
