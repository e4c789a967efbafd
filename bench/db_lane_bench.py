"""CPU per row of the log database lanes, without the web server: TursoSink.write on a `file:`
database (and, with --http, over HTTP against the local Hrana server), batches of 500 prebuilt
ApiLog rows like the peers bench's trivial route writes, on a table already holding --prefill rows.
Trace ids are the app's own (time-ordered, log/core/random_ids.py) unless --client-trace-ids
makes them random version 4 UUIDs, as clients that send their own would.

    python -m bench.db_lane_bench --prefill 200000 --batches 40
    python -m bench.db_lane_bench --ablate          # the same, once per variant (an index dropped, ...)
    python -m bench.db_lane_bench --http            # TursoSink over HTTP (the server's CPU not counted)
    python -m bench.db_lane_bench --stdout          # the stdout sink's encoding and write (to /dev/null)
    python -m bench.db_lane_bench --client-trace-ids  # every trace id random (uuid4)

CPU = time.process_time() of this process (every thread: the sqlite3 worker thread included).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

from log.core.random_ids import UuidPool
from log.core.rows import ApiLog

BATCH = 500
SPLIT: list[tuple[float, float]] = []  # (user, system) µs per row of each file: run
HEADER = '{"host":"127.0.0.1:8000","user-agent":"wrk","accept":"*/*"}'
EPOCH_MS = 1_735_689_600_000
CLIENT_TRACE_IDS = False  # --client-trace-ids


def settle() -> None:
    """Before timing: the prebuilt rows (tens of thousands of objects) out of the garbage
    collector's generations, so a collection does not bill walking them to the lane."""
    if not os.environ.get("DB_LANE_GC"):
        gc.collect()
        gc.freeze()


def make_rows(start: int, n: int, t0_ms: int) -> list[ApiLog]:
    """n rows with increasing Snowflake-like ids and times; trace ids made at each row's time."""
    out = []
    clock_ms = t0_ms
    trace_ids = UuidPool(clock=lambda: clock_ms)
    for i in range(start, start + n):
        ms = clock_ms = t0_ms + i // 10  # ~10k rows a second
        s, frac = divmod(ms, 1000)
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s)) + f".{frac:03d}"
        out.append(ApiLog(
            id=((ms - EPOCH_MS) << 22) | (i % 4096),
            trace_id=str(uuid.uuid4()) if CLIENT_TRACE_IDS else trace_ids(), method="GET", endpoint="/bench/ping",
            request_header=HEADER, request_body=None, response_status=200 if i % 50 else 404,
            response_body='{"ok":true}', duration_ms=i % 3, ip_address="127.0.0.1", user_id=None, created_at=at,
            route="/bench/ping",
        ))
    return out


VARIANTS: dict[str, list[str]] = {
    "as is": [],
    "-idx trace_id": ["DROP INDEX idx_api_logs_trace_id"],
    "-idx created_at": ["DROP INDEX idx_api_logs_created_at"],
    "-idx status": ["DROP INDEX idx_api_logs_status"],
    "-idx user_id": ["DROP INDEX idx_api_logs_user_id"],
    "-idx route": ["DROP INDEX idx_api_logs_route"],
    "-idx list": ["DROP INDEX idx_api_logs_list"],
    "-all indexes": [f"DROP INDEX idx_api_logs_{n}" for n in ("trace_id", "created_at", "status", "user_id", "route", "list")],
    "-error trigger": ["DROP TRIGGER api_logs_error_signature"],
    "sync NORMAL": ["PRAGMA synchronous=NORMAL"],
    "cache 32 MiB": ["PRAGMA cache_size=-32768"],
}


async def file_lane(prefill: int, batches: int, setup: list[str], tmp: Path) -> float:
    from log.db.database import FileLogDatabase
    from log.sinks.turso_sink import TursoSink

    db = FileLogDatabase(str(tmp / "logs.db"))
    sink = TursoSink(db)
    await sink.open()
    t0 = int(time.time() * 1000) - 86_400_000
    for k in range(0, prefill, 5000):
        await sink.write("api_logs", make_rows(k, min(5000, prefill - k), t0))
    conn = db._connection()
    for sql in setup:
        conn.execute(sql)
    work = [make_rows(prefill + b * BATCH, BATCH, t0) for b in range(batches)]
    await sink.write("api_logs", make_rows(prefill + batches * BATCH, BATCH, t0))  # warm
    settle()
    t0s = resource.getrusage(resource.RUSAGE_SELF)  # every thread, microsecond resolution
    for rows in work:
        await sink.write("api_logs", rows)
    t1s = resource.getrusage(resource.RUSAGE_SELF)
    db.close()
    n = batches * BATCH
    user, system = t1s.ru_utime - t0s.ru_utime, t1s.ru_stime - t0s.ru_stime
    SPLIT.append((user / n * 1e6, system / n * 1e6))
    return (user + system) / n * 1e6


async def http_lane(prefill: int, batches: int, tmp: Path) -> float:
    import httpx

    from bench.turso_pipeline_bench import TOKEN, start_hrana, stop
    from log.db.database import HttpLogDatabase
    from log.sinks.turso_sink import TursoSink

    proc, url = start_hrana(tmp)
    try:
        async with httpx.AsyncClient() as client:
            sink = TursoSink(HttpLogDatabase(client, url, TOKEN))
            await sink.open()
            t0 = int(time.time() * 1000) - 86_400_000
            for k in range(0, prefill, 5000):
                await sink.write("api_logs", make_rows(k, min(5000, prefill - k), t0))
            work = [make_rows(prefill + b * BATCH, BATCH, t0) for b in range(batches)]
            await sink.write("api_logs", make_rows(prefill + batches * BATCH, BATCH, t0))
            settle()
            c0 = time.process_time()
            for rows in work:
                await sink.write("api_logs", rows)
            c1 = time.process_time()
    finally:
        stop(proc)
    return (c1 - c0) / (batches * BATCH) * 1e6


async def stdout_lane(batches: int) -> float:
    from log.sinks.stdout_sink import StdoutSink

    with open(os.devnull, "wb") as out:
        sink = StdoutSink(out)
        await sink.open()
        t0 = int(time.time() * 1000)
        work = [make_rows(b * BATCH, BATCH, t0) for b in range(batches)]
        await sink.write("api_logs", make_rows(batches * BATCH, BATCH, t0))
        settle()
        c0 = time.process_time()
        for rows in work:
            await sink.write("api_logs", rows)
        c1 = time.process_time()
    return (c1 - c0) / (batches * BATCH) * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--prefill", type=int, default=200_000)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--batch", type=int, default=500, help="rows per write (the fan-out's batch_size)")
    p.add_argument("--ablate", action="store_true")
    p.add_argument("--only", default="", help="comma-separated variant names for --ablate")
    p.add_argument("--http", action="store_true")
    p.add_argument("--stdout", action="store_true")
    p.add_argument("--client-trace-ids", action="store_true", help="random (uuid4) trace ids, as clients may send")
    a = p.parse_args()
    globals()["BATCH"] = a.batch
    globals()["CLIENT_TRACE_IDS"] = a.client_trace_ids
    ids = "random (client-sent)" if a.client_trace_ids else "time-ordered (the app's)"
    print(f"sqlite {sqlite3.sqlite_version}, prefill {a.prefill}, {a.batches} batches of {a.batch}, "
          f"trace ids: {ids}")
    for _ in range(a.repeat):
        if a.stdout:
            print(f"stdout: {asyncio.run(stdout_lane(a.batches)):.1f} us CPU/row", flush=True)
        if a.http:
            with tempfile.TemporaryDirectory() as d:
                print(f"turso http: {asyncio.run(http_lane(a.prefill, a.batches, Path(d))):.1f} us CPU/row", flush=True)
        if a.stdout or a.http:
            continue
        only = set(filter(None, a.only.split(",")))
        variants = [(n, v) for n, v in VARIANTS.items() if not only or n in only] if a.ablate else [("as is", [])]
        for name, setup in variants:
            with tempfile.TemporaryDirectory() as d:
                us = asyncio.run(file_lane(a.prefill, a.batches, setup, Path(d)))
            user, system = SPLIT[-1]
            print(f"file: {name:16} {us:6.1f} us CPU/row (user {user:.1f}, system {system:.1f})", flush=True)


if __name__ == "__main__":
    main()
