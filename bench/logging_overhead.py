"""What request logging costs: the signed-in items page (20 items) with LOG_SINKS=csv vs off.

    .venv/bin/python bench/logging_overhead.py            # 3 rounds x 10 s each way
    .venv/bin/python bench/logging_overhead.py --smoke    # one short round, for CI

A real uvicorn pinned to core 0 (taskset -c 0) and Debian's wrk pinned to core 1, runs of the
two modes alternating (so drift on the machine hits both), each after a warm-up. Per run: wrk's
requests/s and the server's CPU time per request (utime+stime from /proc/<pid>/stat, all its
threads, so the CSV writer thread counts). On a shared machine req/s swings with the neighbours;
CPU per request barely does, so the CPU-based ratio is printed too. Then the CSV sink alone: rows/s it writes when
fed straight through FanOut([CsvSink]).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from log.core.build import build_api_log  # noqa: E402
from log.core.captured import Captured  # noqa: E402
from log.sinks.csv_sink import CsvSink  # noqa: E402
from log.sinks.fanout import FanOut  # noqa: E402
from log.core.ids import SnowflakeIds  # noqa: E402
from log.core.redact import RedactionPolicy  # noqa: E402

SECRET = "bench-secret-key"
TICKS = os.sysconf("SC_CLK_TCK")
CSRF_RE = re.compile(r'"X-CSRF-Token": "([^"]+)"')


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    # /proc/<pid>/stat: fields after the ")" of the command name; utime, stime are 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Server:
    def __init__(self, data_dir: Path, sinks: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DATA_DIR": str(data_dir), "SECRET_KEY": SECRET, "LOG_SINKS": sinks,
               "TURSO_DATABASE_URL": ""}
        env.pop("K_SERVICE", None)
        self.log = open(data_dir / f"server-{self.port}.log", "wb")
        # taskset execs python: the pid is the server's.
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited: {(data_dir / f'server-{self.port}.log').read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("server did not start")
            time.sleep(0.05)  # polling for readiness

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def sign_up_with_items(url: str, n_items: int = 20) -> str:
    """A user with n_items items; -> the session cookie value."""
    with httpx.Client(base_url=url) as client:
        csrf = CSRF_RE.search(client.get("/").text).group(1)
        r = client.post("/signup", data={"email": "bench@example.com", "password": "correct horse battery",
                                         "csrf_token": csrf})
        assert r.status_code == 303, r.text
        csrf = CSRF_RE.search(client.get("/items").text).group(1)
        for i in range(n_items):
            r = client.post("/items", data={"name": f"Item {i:02d}", "description": f"Bench item number {i}",
                                            "quantity": str(i)}, headers={"HX-Request": "true", "X-CSRF-Token": csrf})
            assert r.status_code == 200, r.text
        page = client.get("/items").text
        assert page.count("data-item-name=") == n_items, "the page does not show the items"
        return client.cookies["session"]


def wrk(url: str, cookie: str, seconds: float, connections: int) -> tuple[float, int, str]:
    """-> (requests/s, requests completed, raw output)."""
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         "-H", f"Cookie: session={cookie}", f"{url}/items"],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    done = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, done, out


def run_once(data_dir: Path, sinks: str, cookie: str | None, seconds: float, connections: int):
    server = Server(data_dir, sinks)
    try:
        if cookie is None:
            cookie = sign_up_with_items(server.url)
        wrk(server.url, cookie, max(1, seconds / 3), connections)  # warm-up: imports, caches, JIT-free but cold
        before = cpu_seconds(server.process.pid)
        rps, done, _ = wrk(server.url, cookie, seconds, connections)
        cpu = cpu_seconds(server.process.pid) - before
    finally:
        server.stop()
    return cookie, rps, cpu * 1e6 / max(done, 1)


# -- the CSV sink on its own ---------------------------------------------------------------------


def sample_rows(n: int) -> list:
    """n rows like the items page's: real headers, a summarised HTML response."""
    ids = SnowflakeIds(1, lambda: time.time_ns() // 1_000_000)
    policy = RedactionPolicy()
    headers = [("host", "127.0.0.1:8000"), ("user-agent", "bench"), ("accept", "text/html"),
               ("cookie", "session=abc"), ("hx-request", "true")]
    html = b"<!doctype html><html>" + b"<article data-item-name='x'>item</article>" * 20 + b"</html>"
    rows = []
    for i in range(n):
        captured = Captured(
            received_at=time.time(), duration_ms=3, method="GET", path="/items", query_string=f"q=item{i % 50}",
            request_headers=headers, request_body=b"", request_body_size=0, response_status=200,
            response_headers=[("content-type", "text/html; charset=utf-8")], response_body=html,
            response_body_size=len(html), client_ip="127.0.0.1", user_id="1",
            trace_id="0b7c9a44-7f55-4d5e-9d55-0f3b4f7d2a11", exception=None, stack_trace=None,
        )
        rows.append(build_api_log(captured, row_id=ids.next(), policy=policy, body_cap=16384))
    return rows


async def csv_sink_rate(n: int, log_dir: Path) -> tuple[float, float]:
    """-> (rows/s written, emit µs per row)."""
    rows = sample_rows(n)
    sink = CsvSink(log_dir, max_bytes=1 << 40)
    fanout = FanOut([sink], max_queue=n + 1)
    await fanout.start()
    await asyncio.sleep(0.3)  # let the lane open its file before the clock starts
    t0 = time.perf_counter()
    for row in rows:
        fanout.emit(row)
    emitted = time.perf_counter() - t0
    while fanout.stats()["sinks"]["csv"]["written"] < n:
        await asyncio.sleep(0.005)  # polling the written counter
    elapsed = time.perf_counter() - t0
    stats = (await fanout.aclose())["sinks"]["csv"]
    assert stats["written"] == n and stats["dropped"] == 0, stats
    return n / elapsed, emitted * 1e6 / n


def main() -> None:
    # A SIGTERM (timeout, Ctrl-C in CI) must still stop the server via the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one short round (seconds, not minutes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.rows = 1, 1.0, 5_000
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install wrk util-linux)")

    work = Path(tempfile.mkdtemp(prefix="bench-logging-"))
    try:
        cookie = None
        results: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
        print(f"{'round':>5} {'logging':>7} {'req/s':>10} {'cpu µs/req':>11}")
        for r in range(args.rounds):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")  # alternate who goes first
            for mode in order:
                cookie, rps, cpu_us = run_once(work, "csv" if mode == "on" else "", cookie, args.seconds, args.connections)
                results[mode].append((rps, cpu_us))
                print(f"{r + 1:>5} {mode:>7} {rps:>10.1f} {cpu_us:>11.0f}", flush=True)
        on_rps = statistics.median(x for x, _ in results["on"])
        off_rps = statistics.median(x for x, _ in results["off"])
        on_cpu = statistics.median(c for _, c in results["on"])
        off_cpu = statistics.median(c for _, c in results["off"])
        os.sched_setaffinity(0, {0})  # the sink on the server's core, as in production
        sink_rps, emit_us = asyncio.run(csv_sink_rate(args.rows, work / "sink"))
        ratio = on_rps / off_rps
        print()
        print(f"{'':<28} {'logging on':>12} {'logging off':>12}")
        print(f"{'median req/s':<28} {on_rps:>12.1f} {off_rps:>12.1f}")
        print(f"{'median server cpu µs/req':<28} {on_cpu:>12.0f} {off_cpu:>12.0f}")
        print(f"ratio on/off: {ratio:.3f} (target >= 0.90) {'OK' if ratio >= 0.90 else 'BELOW TARGET'}")
        print(f"logging cpu cost: {on_cpu - off_cpu:.0f} µs/request; "
              f"cpu-based ratio off/on: {off_cpu / on_cpu:.3f} (the req/s ratio on a core of its own)")
        print(f"csv sink: {args.rows} rows, {sink_rps:,.0f} rows/s written; emit {emit_us:.2f} µs/row")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
