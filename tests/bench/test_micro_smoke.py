"""The request-path benchmarks run end to end (tiny runs) and print every number they promise;
their speed is not checked here (numbers go in BENCHMARKS.md, measured by the scripts)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.support.app import ROOT


def run(*argv: str, timeout: float = 180) -> str:
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_session_cookie_bench_smoke() -> None:
    out = run("bench/session_cookie_bench.py", "--smoke")
    assert re.search(r"^loads signed-in cookie \(\d+ chars\)\s+[\d.]+\s+[\d.]+\s+[\d.]+x$", out, re.M), out
    assert re.search(r"^SessionMiddleware\.load, cached cookie\s+[\d.]+$", out, re.M), out


def test_routing_bench_smoke() -> None:
    out = run("-m", "bench.routing_bench", "--number", "50")
    rows = re.findall(r"^(late static|early static|parametrised|mount|wrong method|no route)\s.*?([\d.]+)\s+([\d.]+)\s+(-?[\d.]+)$", out, re.M)
    assert len(rows) == 8, out


def test_layer_costs_smoke() -> None:
    out = run("-m", "bench.layer_costs", "--smoke")
    summary = json.loads(out.strip().splitlines()[-1])
    names = {"hello", "app", *(f"without {layer}" for layer in (
        "SecurityHeadersMiddleware", "RequestLogMiddleware", "SizeLimitMiddleware", "SessionMiddleware", "CsrfMiddleware"))}
    assert set(summary["cells"]) == names
    for cell in summary["cells"].values():
        assert cell["requests_per_s"] > 0 and cell["cpu_us_per_request"] > 0
    assert re.search(r"^\| without RequestLogMiddleware \| [\d,]+ \| \d+ \| -?\d+ \|$", out, re.M), out
