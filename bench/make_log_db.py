"""Generate a big log database (file: backend) for the explorer benchmark.

    python bench/make_log_db.py var/bench-logs.db [--requests 1000000] [--steps-per-request 3] [--days 30]

Rows: `--requests` api_logs spread over `--days` ending now (UTC), 50 routes (15 of them with an
id parameter: "/api/v1/resource07/{item_id:int}", each request its own literal path, so the
rollups' per-route keys differ from the paths), ~2% 5xx, ~4% 404 (half of them probes of random
paths that no route matches: route "(unmatched)"), and about steps-per-request
task_progress_logs rows per request (a FAILED step with a stack trace in every 5xx trace; one
5xx in four is an unhandled exception instead, with the app's crash row "http_request /
unhandled_exception"). Exception types come from a short list, and one error signature (route +
status + exception type) first appears in the last hour, so the overview's "new errors" list has
something to show for every range. Ids are Snowflake ids (log/ids.py layout) issued when the
request ends, as the app does. Bulk-loaded with executemany in large transactions BEFORE the
rollups exist; applying log/db/rollups.sql afterwards backfills them (the same path a deployed
database with older rows takes). The file is overwritten; keep it out of git (var/ or /tmp).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from log.core.rows import UNMATCHED  # noqa: E402
from log.db.schema import ROLLUPS_PATH, SCHEMA_PATH  # noqa: E402
from log.explorer.queries import SNOWFLAKE_EPOCH_MS, SNOWFLAKE_SHIFT  # noqa: E402

METHODS = ["GET"] * 6 + ["POST"] * 2 + ["PUT", "DELETE"]
TASKS = ["import_items", "send_email", "render_report", "sync_account"]
STEPS = ["load", "validate", "transform", "save", "notify"]
ERRORS = ["ValueError", "KeyError", "IntegrityError", "TimeoutError"]
NEW_ERROR = ("/api/v1/resource03", 500, "RecursionError")  # only in the last hour: a "new error"
HEADERS = '{"accept":"text/html","user-agent":"bench/1.0","authorization":"[REDACTED]"}'


def stamp(ms: int) -> str:
    t = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
    return f"{t:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d}"


def generate(path: Path, requests: int, steps_per_request: float, days: int, seed: int, end_ms: int) -> None:
    rnd = random.Random(seed)
    path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executescript(SCHEMA_PATH.read_text())
    endpoints = [f"/api/v1/resource{i:02d}" for i in range(30)]
    endpoints += [f"/api/v1/resource{i:02d}/{{item_id:int}}" for i in range(30, 45)]
    endpoints += ["/", "/items", "/login", "/signup", "/logs"]
    scale = {ep: math.exp(rnd.gauss(math.log(40), 0.8)) for ep in endpoints}
    users = [f"user-{i:04d}" for i in range(1000)]
    start_ms = end_ms - days * 86_400_000
    step_ms = (end_ms - start_ms) / requests
    seq = 0
    api_batch: list[tuple] = []
    task_batch: list[tuple] = []
    api_sql = f"INSERT INTO api_logs VALUES ({','.join('?' * 13)})"
    task_sql = f"INSERT INTO task_progress_logs VALUES ({','.join('?' * 11)})"
    steps_p = steps_per_request / 3.5  # a traced task has 2..5 steps, 3.5 on average
    began = time.monotonic()

    def flush() -> None:
        conn.execute("BEGIN")
        conn.executemany(api_sql, api_batch)
        conn.executemany(task_sql, task_batch)
        conn.execute("COMMIT")
        api_batch.clear()
        task_batch.clear()

    def snowflake(ms: int) -> int:
        nonlocal seq
        seq = (seq + 1) & 0xFFF
        return ((ms - SNOWFLAKE_EPOCH_MS) << SNOWFLAKE_SHIFT) | (7 << 12) | seq

    for i in range(requests):
        received = int(start_ms + i * step_ms + rnd.random() * step_ms)
        ep = rnd.choice(endpoints)
        roll = rnd.random()
        status = 500 if roll < 0.015 else 503 if roll < 0.02 else 404 if roll < 0.06 else 302 if roll < 0.09 else 200
        duration = max(0, int(rnd.lognormvariate(math.log(scale[ep]), 0.7)))
        trace = "%032x" % rnd.getrandbits(128)
        trace = f"{trace[:8]}-{trace[8:12]}-4{trace[13:16]}-a{trace[17:20]}-{trace[20:]}"
        query = f"?page={rnd.randint(1, 9)}" if rnd.random() < 0.1 else ""
        route, url_path = ep, ep.replace("{item_id:int}", str(rnd.randint(1, 100_000)))
        error = rnd.choice(ERRORS)
        if status == 500 and received > end_ms - 3_600_000 and rnd.random() < 0.2:
            route, url_path, error = NEW_ERROR[0], NEW_ERROR[0], NEW_ERROR[2]
        if status == 404 and rnd.random() < 0.5:  # a probe: no route has this path
            route, url_path = UNMATCHED, f"/probe/{rnd.getrandbits(32):08x}"
        api_batch.append((
            snowflake(received + duration), trace, rnd.choice(METHODS), url_path + query, HEADERS, None, status,
            '{"error":"Internal Server Error"}' if status >= 500 else None, duration,
            f"10.0.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}",
            rnd.choice(users) if rnd.random() < 0.7 else None, stamp(received), route,
        ))
        if status >= 500 and rnd.random() < 0.25:  # the app's crash row
            task_batch.append((
                snowflake(received + duration), trace, "http_request", "unhandled_exception", "FAILED",
                f'{{"endpoint":"{url_path}","method":"GET"}}', None, f"{error}: boom",
                f'Traceback (most recent call last):\n  File "app.py", line 1\n{error}: boom', 0,
                stamp(received + duration),
            ))
        elif status >= 500 or rnd.random() < steps_p:
            task = rnd.choice(TASKS)
            n_steps = rnd.randint(2, 5)
            for order in range(n_steps):
                failed = status >= 500 and order == n_steps - 1
                at = received + (order + 1) * duration // (n_steps + 1)
                task_batch.append((
                    snowflake(at), trace, task, STEPS[order], "FAILED" if failed else "SUCCESS",
                    f'{{"step":{order},"items":[1,2,3]}}', None if failed else '{"ok":true}',
                    f"{error}: boom in " + STEPS[order] if failed else None,
                    f'Traceback (most recent call last):\n  File "app.py", line 1\n{error}: boom' if failed else None,
                    order, stamp(at),
                ))
        if len(api_batch) >= 100_000:
            flush()
            print(f"  {i + 1:>9,} requests  {time.monotonic() - began:6.1f}s", file=sys.stderr)
    flush()
    t = time.monotonic()
    rollups = ROLLUPS_PATH.read_text()
    conn.executescript(f"BEGIN;\n{rollups}\nCOMMIT;")
    conn.execute("ANALYZE")
    counts = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("api_logs", "task_progress_logs")]
    print(f"rollups + ANALYZE {time.monotonic() - t:.1f}s; api_logs={counts[0]:,} task_progress_logs={counts[1]:,};"
          f" total {time.monotonic() - began:.1f}s -> {path}", file=sys.stderr)
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--steps-per-request", type=float, default=3.0)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--end-ms", type=int, default=None, help="unix ms of the newest request (default: now)")
    args = ap.parse_args()
    args.path.parent.mkdir(parents=True, exist_ok=True)
    generate(args.path, args.requests, args.steps_per_request, args.days, args.seed,
             args.end_ms if args.end_ms is not None else int(time.time() * 1000))


if __name__ == "__main__":
    main()
