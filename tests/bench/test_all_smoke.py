"""bench/run_all.py runs the overhead matrix and the memory-growth benchmark end to end (tiny
sizes) and shows every number; their speed is not checked here. The other benchmarks have
their own smoke tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CELLS = [
    "hello /bench/ping",
    *(f"{config} {route}" for config in ("off", "csv", "csv+turso", "stdout")
      for route in ("/items", "/bench/ping", "/bench/ping anon")),
    *(f"log-only-{config} /bench/ping anon" for config in ("csv", "csv+turso", "stdout")),
]


def summaries(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_run_all_smoke_runs_the_new_benchmarks() -> None:
    env = {k: v for k, v in os.environ.items() if k != "K_SERVICE"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--smoke", "--only", "overhead_matrix,memory_growth"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    matrix, memory = summaries(out)
    # Every (server, route) cell was measured: requests answered, server CPU time charged to them.
    assert sorted(matrix["cells"]) == sorted(CELLS)
    for cell in matrix["cells"].values():
        assert cell["requests"] > 0 and cell["requests_per_s"] > 0 and cell["cpu_us_per_request"] > 0
    assert {(r["route"], r["baseline"]) for r in matrix["ratios"]} == {
        ("/items", "off"), ("/bench/ping", "hello"), ("/bench/ping anon", "hello")}
    # Logging alone (the hello world plus the log layer) is reported for every sink configuration.
    assert [r["config"] for r in matrix["logging_alone"]] == ["log-only-csv", "log-only-csv+turso", "log-only-stdout"]
    assert all(0 < r["ratio"] for r in matrix["logging_alone"])
    assert re.search(r"logging alone on the trivial route, log-only-csv\+turso/hello: \d\.\d{3} req/s", out), out
    # The ceiling: logging off vs hello on each trivial route, what zero-cost logging would reach.
    assert [r["route"] for r in matrix["ceilings"]] == ["/bench/ping", "/bench/ping anon"]
    assert re.search(r"ceiling /bench/ping: the app with logging off is \d\.\d{3} x hello", out), out
    assert matrix["stdout_lines"] > 0  # the stdout sink really wrote its rows
    assert re.search(r"\| csv\+turso \| /items \| [\d,]+ \|", out), out
    assert re.search(r"ratio /items csv\+turso/off: \d\.\d{3} req/s", out), out
    # Memory: two readings, taken after at least the asked-for counts; every request logged in both sinks.
    assert memory["first_requests"] >= 1_000 and memory["requests"] >= 8_000
    assert memory["rss_first_mb"] > 0 and memory["rss_total_mb"] > 0
    assert memory["csv_rows"] == memory["db_rows"] >= memory["requests"]
    assert "growth" in out and "== UNMET targets:" in out
