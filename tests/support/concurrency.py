"""Run one id source from several threads at once, for the thread-safety tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def take_in_threads(source: Callable[[], T], threads: int, each: int) -> list[list[T]]:
    """`each` values from `source` in each of `threads` threads started together, per thread in order."""
    out: list[list[T]] = [[] for _ in range(threads)]

    def work(bucket: list[T]) -> None:
        bucket.extend(source() for _ in range(each))

    started = [threading.Thread(target=work, args=(bucket,)) for bucket in out]
    for t in started:
        t.start()
    for t in started:
        t.join()
    return out
