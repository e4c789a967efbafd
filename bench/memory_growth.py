"""Does the server's memory stay flat under sustained traffic with logging on?

    .venv/bin/python -m bench.memory_growth [--smoke] [--first 10000] [--total 200000] [--path /bench/ping]

One uvicorn (bench/bench_app.py, LOG_SINKS=csv,turso with the file: log database, the embedded
default) pinned to core 0; wrk on core 1 in short runs (--chunk seconds) until the count is
reached, so the readings are taken at "at least N" requests (the exact count is printed). RSS (VmRSS from /proc/<pid>/status) is read after
--first requests and again after --total; target: growth <= 20 MB. The first reading is taken
after warm-up on purpose: imports, caches and the first CSV/DB pages are not growth.
Afterwards the server stops gracefully and the rows are counted in the CSV and the log DB.
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.turso_pipeline_bench import free_port, sign_in_with_items, stop, wait_http
from log.sinks.csv_sink import read_rows

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 20.0
def rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match, "no VmRSS"
    return int(match[1])


def send_until(url: str, cookie: str, count: int, connections: int, chunk_s: float) -> int:
    """wrk in short runs until at least `count` requests were answered; returns how many."""
    sent = 0
    while sent < count:
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{chunk_s:g}s", "-H", f"Cookie: {cookie}", url]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "1", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=chunk_s + 60).stdout
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if bad:
            raise RuntimeError(f"wrk saw {bad[1]} error responses:\n{out}")
        sent += int(re.search(r"(\d+) requests in", out)[1])
    return sent


def run(tmp: Path, path: str, first: int, total: int, connections: int, chunk_s: float) -> dict:
    data_dir = tmp / "app"
    data_dir.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "K_SERVICE"}
    env.update({"DATA_DIR": str(data_dir), "SECRET_KEY": "bench-secret", "LOG_SINKS": "csv,turso"})
    env.pop("TURSO_DATABASE_URL", None)  # the default: file:<DATA_DIR>/logs.db
    cmd = [sys.executable, "-m", "uvicorn", "bench.bench_app:app", "--host", "127.0.0.1", "--port", str(port),
           "--no-access-log", "--log-level", "warning"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/bench/ping", proc)
        cookie = sign_in_with_items(url, 20)
        start_kib = rss_kib(proc.pid)
        sent = send_until(url + path, cookie, first, connections, chunk_s)
        first_kib, first_sent = rss_kib(proc.pid), sent
        sent += send_until(url + path, cookie, total - sent, connections, chunk_s)
        total_kib = rss_kib(proc.pid)
    finally:
        stop(proc)  # graceful: the lifespan flushes every row
    csv_rows = sum(1 for r in read_rows(data_dir / "logs", "api_logs") if r.endpoint == path)
    with contextlib.closing(sqlite3.connect(data_dir / "logs.db")) as conn:
        db_rows = conn.execute("SELECT count(*) FROM api_logs WHERE endpoint = ?", (path,)).fetchone()[0]
    return {"path": path, "requests": sent, "first": first, "first_requests": first_sent, "rss_start_mb": start_kib / 1024,
            "rss_first_mb": first_kib / 1024, "rss_total_mb": total_kib / 1024,
            "growth_mb": (total_kib - first_kib) / 1024, "csv_rows": csv_rows, "db_rows": db_rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="small counts, for the test suite")
    parser.add_argument("--first", type=int, default=10_000, help="requests before the first reading")
    parser.add_argument("--total", type=int, default=200_000, help="requests before the second reading")
    parser.add_argument("--path", default="/bench/ping", help="/bench/ping (JSON) or /items (HTML page)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--chunk", type=float, default=2.0, help="seconds per wrk run")
    args = parser.parse_args()
    if args.smoke:
        args.first, args.total, args.connections, args.chunk = 1_000, 8_000, 4, 1.0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk; ./test.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        r = run(Path(tmp), args.path, args.first, args.total, args.connections, args.chunk)
    print(f"memory growth, GET {r['path']} with LOG_SINKS=csv,turso (file: log DB): RSS {r['rss_start_mb']:.1f} MB "
          f"at start, {r['rss_first_mb']:.1f} MB after {r['first_requests']:,} requests, {r['rss_total_mb']:.1f} MB after "
          f"{r['requests']:,}: growth {r['growth_mb']:+.1f} MB (target <= {TARGET_MB:.0f})")
    print(f"rows for {r['path']}: {r['csv_rows']:,} in CSV, {r['db_rows']:,} in the log DB")
    print(f"UNMET: memory growth {r['growth_mb']:.1f} MB > {TARGET_MB:.0f} MB" if r["growth_mb"] > TARGET_MB
          else "UNMET: none")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
