"""The `file:` log database opened by several worker processes at once (WEB_CONCURRENCY)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

from log.db.database import connect_file


def _connect_at_once(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        connect_file(path, busy_timeout_s=10.0).close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which shows it
        results.put(repr(exc))


def test_workers_opening_a_new_log_database_together_all_connect(tmp_path: Path) -> None:
    # Switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at
    # once instead of calling the busy handler: a second worker started without its log database
    # (no schema, no worker-id lease).
    ctx = multiprocessing.get_context("spawn")
    outcomes = []
    for attempt in range(5):
        path = str(tmp_path / f"logs{attempt}.db")
        barrier, results = ctx.Barrier(4), ctx.Queue()
        workers = [ctx.Process(target=_connect_at_once, args=(path, barrier, results)) for _ in range(4)]
        for w in workers:
            w.start()
        outcomes += [results.get(timeout=60) for _ in workers]
        for w in workers:
            w.join(timeout=60)
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert outcomes == ["ok"] * 20
