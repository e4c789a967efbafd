"""bench/peers.py runs end to end (tiny run): every server answered, every logging layer wrote a
row or line for each request it answered, and every target is printed with PASS or MISS (speed
itself is not checked here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.support.app import ROOT

SERVERS = ["hello", "otel", "structlog", "log csv", "log csv no-record", "log csv+file:", "log stdout+turso",
           "items off", "items csv+file:", "items csv+turso"]
# server -> the destinations it must have written one row / line per answered request to
WRITES = {
    "otel": ["spans", "server spans"],
    "structlog": ["lines"],
    "log csv": ["csv rows"],
    "log csv no-record": ["csv rows"],
    "log csv+file:": ["csv rows", "db rows"],
    "log stdout+turso": ["stdout lines", "db rows"],
    "items csv+file:": ["csv rows", "db rows"],
    "items csv+turso": ["csv rows", "db rows"],
}


def test_peers_bench_smoke() -> None:
    env = {k: v for k, v in os.environ.items() if k != "K_SERVICE"}
    done = subprocess.run([sys.executable, "-m", "bench.peers", "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    cells = summary["cells"]
    assert list(cells) == SERVERS
    for name, cell in cells.items():
        assert cell["requests_served"] > 0 and cell["requests_per_s"] > 0 and cell["cpu_us_per_request"] > 0, name
        assert sorted(cell["written"]) == sorted(WRITES.get(name, [])), (name, cell["written"])
        for what in WRITES.get(name, []):
            # The layer's own count can only be higher (readiness probe, sign-in, requests wrk
            # cut off at the end of a run), never lower: nothing dropped, nothing sampled.
            assert cell["written"][what] >= cell["requests_served"], (name, what, cell)
    # OpenTelemetry's defaults add a span per ASGI send: more lines than server spans.
    assert cells["otel"]["written"]["spans"] > cells["otel"]["written"]["server spans"]
    # The hello world wrote nothing; the logging-off app wrote nothing either.
    assert cells["hello"]["written"] == {} and cells["items off"]["written"] == {}
    for line in ("log csv µs above hello", "log csv µs above log csv no-record", "log csv\\+file: µs above hello", "log stdout\\+turso µs above hello",
                 "items csv\\+file: req/s ratio to items off", "items csv\\+turso req/s ratio to items off"):
        assert re.search(rf"^(PASS|MISS): {line} -?[\d.]+ \(target [<>]= [\d.]+\)$", done.stdout, re.M), done.stdout
    assert re.search(r"^\| log csv\+file: \| /bench/ping \| [\d,]+ \|", done.stdout, re.M), done.stdout
