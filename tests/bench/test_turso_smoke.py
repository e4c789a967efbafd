"""The Turso pipeline benchmark runs end to end (tiny sizes) and reports every number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_turso_pipeline_bench_smoke() -> None:
    env = {k: v for k, v in os.environ.items() if k != "K_SERVICE"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.turso_pipeline_bench", "--smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    pipe, page = summary["pipeline"], summary["items_page"]
    assert pipe["rows"] == 2000 and pipe["turso_written"] == pipe["rows"] + pipe["lag_rows"]
    assert 0 < pipe["requests_per_10k_rows"] <= 40 and pipe["lag_p99_s"] > 0
    for mode in ("off", "on"):
        assert page[mode]["requests"] > 0 and page[mode]["cpu_us_per_request"] > 0
    # Every /items request the logging-on server answered is in CSV and, after its shutdown, in Turso.
    assert page["items_rows_in_csv"] == page["items_rows_in_turso"] >= page["on"]["requests"]
    assert "HTTP requests per 10 000 rows" in result.stdout and "on/off requests/s:" in result.stdout
