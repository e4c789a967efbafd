"""Retention under load: prune about 1 M expired rows from the explorer's 1M/3M log database while
the app serves the items page; the page's latency before and during the prune. Reported, not asserted.

    .venv/bin/python -m bench.prune_bench                 # copies /tmp/explorer-bench.db (built if missing)
    .venv/bin/python -m bench.prune_bench --smoke         # a 20k-request database, 1 s windows

The app runs under uvicorn (core 0) with the copy as its `file:` log database and LOG_SINKS=csv,turso,
so its own log rows compete with the prune for the database's writer lock; its own pruner is off
(LOG_RETENTION_DAYS=0). The prune is the shell the background pruner runs (log/tools/prune.py
run_steps: 5,000-row transactions, each followed by a pause twice its length), in this process pinned to core 0
too, as the app's own pruner would share the app's core. "now" is placed so that about --expire
rows (both tables) are older than the 30-day window. wrk (core 1) loads GET /items signed in:
--seconds before the prune, then --seconds starting with it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.overhead_matrix import start_server  # noqa: E402
from bench.turso_pipeline_bench import sign_in_with_items, stop  # noqa: E402
from log.core.retention import PRUNE_GRACE, plan  # noqa: E402
from log.db.database import FileLogDatabase  # noqa: E402
from log.tools.prune import PAUSE, count_expired, run_steps  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path("/tmp/explorer-bench.db")
RETENTION_DAYS = 30
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def build(path: Path, requests: int) -> None:
    subprocess.run([sys.executable, "-m", "bench.make_log_db", str(path), "--requests", str(requests)],
                   cwd=ROOT, check=True)


def placed_now(db: Path, expire: int) -> dt.datetime:
    """A "now" that puts about `expire` rows (both tables, spread evenly over time) past the window."""
    conn = sqlite3.connect(db)
    first, last = conn.execute("SELECT MIN(created_at), MAX(created_at) FROM api_logs").fetchone()
    total = sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("api_logs", "task_progress_logs"))
    conn.close()
    start, end = (dt.datetime.fromisoformat(t).replace(tzinfo=dt.UTC) for t in (first, last))
    cutoff = start + (end - start) * min(1.0, expire / total)
    return cutoff + dt.timedelta(days=RETENTION_DAYS) + PRUNE_GRACE


def wrk(url: str, cookie: str, seconds: float, connections: int) -> dict[str, float]:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
           "-H", f"Cookie: {cookie}", f"{url}/items"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"wrk saw error responses:\n{out}")
    lat = {p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
            "p50_ms": lat["50"], "p99_ms": lat["99"]}


def prune(db: Path, now: dt.datetime, result: dict[str, Any]) -> None:
    async def work() -> None:
        log_db = FileLogDatabase(str(db))
        try:
            steps = plan(now, retention_days=RETENTION_DAYS, rollup_days=0)
            result["expired"] = sum((await count_expired(log_db, steps)).values())
            result["started"] = time.monotonic()
            counts = await run_steps(log_db, steps, pause=PAUSE)
            result["ended"] = time.monotonic()
            result["deleted"] = counts
        finally:
            await log_db.aclose()

    anyio.run(work)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="log DB to copy (built if missing)")
    ap.add_argument("--expire", type=int, default=1_000_000, help="rows to place past the window")
    ap.add_argument("--seconds", type=float, default=15.0, help="wrk window before, and during the prune")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--smoke", action="store_true", help="a 20k-request database built here, 1 s windows (wrk's shortest)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if args.smoke:
            args.source, args.expire, args.seconds = tmp / "source.db", 20_000, 1.0
            build(args.source, 20_000)
        elif not args.source.is_file():
            build(args.source, 1_000_000)
        work_db = tmp / "logs.db"
        shutil.copyfile(args.source, work_db)
        now = placed_now(work_db, args.expire)
        proc, url = start_server("bench.bench_app:app", tmp / "app", {
            "LOG_SINKS": "csv,turso", "TURSO_DATABASE_URL": f"file:{work_db}",
            "LOG_RETENTION_DAYS": "0", "LOG_ROLLUP_RETENTION_DAYS": "0",
        })
        try:
            cookie = sign_in_with_items(url, 20)
            before = wrk(url, cookie, args.seconds, args.connections)
            os.sched_setaffinity(0, {0})  # the prune shares the app's core, as the app's own pruner would
            result: dict[str, Any] = {}
            pruning = threading.Thread(target=prune, args=(work_db, now, result))
            pruning.start()
            while "started" not in result and pruning.is_alive():
                time.sleep(0.01)  # the count before the first batch is not part of the prune
            window_start = time.monotonic()
            during = wrk(url, cookie, args.seconds, args.connections)
            window_end = time.monotonic()
            pruning.join()
        finally:
            stop(proc)
    deleted = sum(result["deleted"].values())
    seconds = result["ended"] - result["started"]
    # How much of the "during" window the prune really covered (a small database ends first).
    overlap = max(0.0, min(result["ended"], window_end) - window_start) / max(window_end - window_start, 1e-9)
    summary = {
        "expired": result["expired"], "deleted": deleted, "deleted_by_table": result["deleted"],
        "prune_s": round(seconds, 2), "rows_per_s": round(deleted / seconds) if seconds else None,
        "window_in_prune": round(overlap, 2), "before": before, "during": during,
    }
    print(f"| items page ({args.connections} connections) | requests/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- |")
    for name, cell in (("before the prune", before), ("during the prune", during)):
        print(f"| {name} | {cell['requests_per_s']:.0f} | {cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} |")
    print(f"pruned {deleted:,} rows ({result['deleted']}) in {seconds:.1f} s = {summary['rows_per_s']:,} rows/s; "
          f"the 'during' window was {overlap:.0%} inside the prune")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
