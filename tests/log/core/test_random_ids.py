"""log/core/random_ids.py: pooled, time-ordered (version 7) UUID text for new trace ids."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from log.asgi import RequestLogMiddleware
from log.core.random_ids import UuidPool, new_trace_id
from tests.support.concurrency import take_in_threads


def _assert_v7(text: str) -> None:
    parsed = uuid.UUID(text)
    assert str(parsed) == text  # canonical lower-case 8-4-4-4-12
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_ids_are_canonical_version_7_uuids_and_unique_across_refills() -> None:
    pool = UuidPool(pool_bytes=64)  # 4 ids a pool: 5,000 ids span 1,250 refills
    ids = [pool() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        _assert_v7(text)


def test_ids_carry_their_millisecond_and_sort_by_it() -> None:
    # RFC 9562: the first 48 bits are Unix milliseconds. Ids of later milliseconds sort after
    # earlier ones as text too (the log database's trace_id index then grows at its end).
    clock = iter([1_733_100_000_000, 1_733_100_000_000, 1_733_100_000_001, 1_733_100_000_999, 1_733_100_060_000])
    pool = UuidPool(clock=lambda: next(clock))
    ids = [pool() for _ in range(5)]
    assert [uuid.UUID(i).int >> 80 for i in ids] == [1_733_100_000_000, 1_733_100_000_000, 1_733_100_000_001,
                                                      1_733_100_000_999, 1_733_100_060_000]
    assert ids[0] != ids[1]  # same millisecond, different random part
    assert sorted(ids[1:]) == ids[1:]
    for text in ids:
        _assert_v7(text)


def test_the_default_clock_is_the_wall_clock_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    stamp = uuid.UUID(new_trace_id()).int >> 80
    after = time.time_ns() // 1_000_000
    assert before <= stamp <= after


def test_every_variant_digit_occurs() -> None:
    # The variant nibble is derived from random hex: all four legal values must show up.
    digits = {new_trace_id()[19] for _ in range(2000)}
    assert digits == set("89ab")


def test_the_middleware_uses_the_pool_by_default() -> None:
    assert RequestLogMiddleware(app=None, record=lambda c: None).new_uuid is new_trace_id  # type: ignore[arg-type]


def test_threads_never_share_an_id() -> None:
    pool = UuidPool(pool_bytes=160)
    results = take_in_threads(pool, threads=4, each=3000)
    every = [i for out in results for i in out]
    assert len(set(every)) == len(every) == 12000


def test_a_forked_child_does_not_repeat_the_parents_next_ids() -> None:
    pool = UuidPool()
    pool()  # the parent has a pool in hand
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next 10 ids, then leave without running pytest's teardown
        os.close(read)
        os.write(write, "\n".join(pool() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read().split("\n")
    os.waitpid(pid, 0)
    parent = [pool() for _ in range(10)]
    assert len(child) == 10
    assert not set(child) & set(parent)


def test_pool_size_must_be_whole_ids() -> None:
    with pytest.raises(ValueError):
        UuidPool(pool_bytes=24)
