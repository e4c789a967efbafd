import pytest
from hypothesis import given
from hypothesis import strategies as st

from log.core.ids import EPOCH_MS, MAX_SEQUENCE, SnowflakeIds, decode
from tests.support.concurrency import take_in_threads

T0 = EPOCH_MS + 1_000_000_000  # some ms after the epoch


class ScriptedClock:
    """Returns the scripted times in order, then repeats the last one."""

    def __init__(self, times: list[int]) -> None:
        self.times = list(times)
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


# Deltas may be negative: the clock can jump backwards.
deltas = st.lists(st.integers(min_value=-5, max_value=5), min_size=1, max_size=300)


def _times(ds: list[int]) -> list[int]:
    t, out = T0, []
    for d in ds:
        t += d
        out.append(t)
    return out


@given(deltas)
def test_ids_strictly_increasing_and_positive_63_bit(ds):
    gen = SnowflakeIds(7, ScriptedClock(_times(ds)))
    ids = [gen.next() for _ in ds]
    assert all(a < b for a, b in zip(ids, ids[1:]))
    assert all(0 < i < 2**63 for i in ids)


@given(deltas, st.integers(0, 1023))
def test_decode_round_trip(ds, worker):
    times = _times(ds)
    gen = SnowflakeIds(worker, ScriptedClock(times))
    high = times[0]
    for t in times:
        ms, w, seq = decode(gen.next())
        high = max(high, t)
        assert w == worker
        assert 0 <= seq <= MAX_SEQUENCE
        # Never below the highest clock reading so far (backwards jumps are ignored), never far ahead.
        assert high <= ms <= high + 1


@given(deltas, st.integers(0, 1023), st.integers(0, 1023))
def test_two_workers_never_collide(ds, w1, w2):
    if w1 == w2:
        w2 = (w1 + 1) % 1024
    times = _times(ds)
    gen_a, gen_b = SnowflakeIds(w1, ScriptedClock(times)), SnowflakeIds(w2, ScriptedClock(times))
    a = {gen_a.next() for _ in times}
    b = {gen_b.next() for _ in times}
    assert len(a) == len(b) == len(times)
    assert not a & b


def test_sequence_overflow_waits_for_next_ms():
    # 4096 ids in one ms, then the clock reports the same ms twice more before ticking.
    clock = ScriptedClock([T0] * (MAX_SEQUENCE + 1) + [T0, T0, T0 + 1])
    gen = SnowflakeIds(1, clock)
    ids = [gen.next() for _ in range(MAX_SEQUENCE + 2)]
    assert decode(ids[-2]) == (T0, 1, MAX_SEQUENCE)
    assert decode(ids[-1]) == (T0 + 1, 1, 0)
    assert len(set(ids)) == len(ids)


def test_overflow_with_clock_behind_borrows_next_ms_instead_of_stalling():
    clock = ScriptedClock([T0 + 10] + [T0] * 10)  # jumped back 10 ms and stays there
    gen = SnowflakeIds(1, clock)
    ids = [gen.next() for _ in range(MAX_SEQUENCE + 2)]
    assert decode(ids[-1]) == (T0 + 11, 1, 0)
    assert clock.calls == len(ids)  # no spinning while behind


def test_thread_safe_unique():
    import time

    gen = SnowflakeIds(3, lambda: time.time_ns() // 1_000_000)
    out = take_in_threads(gen.next, threads=4, each=5000)
    all_ids = [i for b in out for i in b]
    assert len(set(all_ids)) == 20000
    for b in out:
        assert b == sorted(b)


@pytest.mark.parametrize("worker", [-1, 1024])
def test_worker_id_range(worker):
    with pytest.raises(ValueError):
        SnowflakeIds(worker, lambda: T0)


def test_clock_before_epoch_rejected():
    with pytest.raises(ValueError):
        SnowflakeIds(0, lambda: EPOCH_MS - 1).next()
