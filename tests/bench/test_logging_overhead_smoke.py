"""The logging benchmark runs end to end (tiny run) and prints every number it promises."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.app import ROOT


def test_logging_overhead_bench_smoke() -> None:
    done = subprocess.run(
        [sys.executable, "bench/logging_overhead.py", "--smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^median req/s\s+[\d.]+\s+[\d.]+$", out, re.M), out
    assert re.search(r"^median server cpu µs/req\s+\d+\s+\d+$", out, re.M), out
    assert re.search(r"^ratio on/off: [\d.]+ \(target >= 0\.90\)", out, re.M), out
    assert re.search(r"^logging cpu cost: -?\d+ µs/request; cpu-based ratio off/on: [\d.]+", out, re.M), out
    assert re.search(r"^csv sink: 5000 rows, [\d,]+ rows/s written; emit [\d.]+ µs/row$", out, re.M), out
    runs = re.findall(r"^\s+1\s+(on|off)\s+[\d.]+\s+\d+$", out, re.M)
    assert sorted(runs) == ["off", "on"], out
