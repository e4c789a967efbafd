"""The prune benchmark runs end to end on a small log database and reports every number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_prune_bench_smoke() -> None:
    env = {k: v for k, v in os.environ.items() if k != "K_SERVICE"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.prune_bench", "--smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    # Every expired row went, from both tables; the page was served before and during the prune.
    assert summary["deleted"] == summary["expired"] > 0
    assert all(summary["deleted_by_table"][t] > 0 for t in ("api_logs", "task_progress_logs"))
    assert summary["prune_s"] > 0 and summary["rows_per_s"] > 0
    for window in ("before", "during"):
        cell = summary[window]
        assert cell["requests_per_s"] > 0 and 0 < cell["p50_ms"] <= cell["p99_ms"]
    assert "| during the prune |" in result.stdout and "rows/s" in result.stdout
