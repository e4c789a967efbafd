"""log/random_ids.py: pooled version-4 UUID text for trace ids."""

from __future__ import annotations

import os
import uuid

import pytest

from log.asgi import RequestLogMiddleware
from log.core.random_ids import UuidPool, uuid4_text
from tests.support.concurrency import take_in_threads


def _assert_v4(text: str) -> None:
    parsed = uuid.UUID(text)
    assert str(parsed) == text  # canonical lower-case 8-4-4-4-12
    assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_ids_are_canonical_version_4_uuids_and_unique_across_refills() -> None:
    pool = UuidPool(pool_bytes=64)  # 4 ids a pool: 5,000 ids span 1,250 refills
    ids = [pool() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        _assert_v4(text)


def test_every_variant_digit_occurs() -> None:
    # The variant nibble is derived from random hex: all four legal values must show up.
    digits = {uuid4_text()[19] for _ in range(2000)}
    assert digits == set("89ab")


def test_the_middleware_uses_the_pool_by_default() -> None:
    assert RequestLogMiddleware(app=None, record=lambda c: None).new_uuid is uuid4_text  # type: ignore[arg-type]


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
