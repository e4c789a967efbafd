"""The import benchmark still runs end to end (tiny input; its speed is not checked here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINE = r"{mode}: 1,000 rows \(0\.\d MB\) imported in [\d.]+s: [\d,]+ rows/s \(Validation [\d.]+s, Transform [\d.]+s, DB_Commit [\d.]+s\)"


@pytest.mark.parametrize(("flags", "mode"), [([], "http"), (["--in-process"], "in-process")])
def test_import_bench_smoke(flags: list[str], mode: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.import_bench", "--smoke", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(LINE.format(mode=mode), done.stdout), done.stdout
