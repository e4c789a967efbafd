"""The request-path benchmarks run end to end (tiny runs) and print every number they promise;
their speed is not checked here (numbers go in BENCHMARKS.md, measured by the scripts)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.app import ROOT


def run(*argv: str, timeout: float = 180) -> str:
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_routing_bench_smoke() -> None:
    out = run("-m", "bench.routing_bench", "--number", "50")
    rows = re.findall(r"^(late static|early static|parametrised|mount|wrong method|no route)\s.*?([\d.]+)\s+([\d.]+)\s+(-?[\d.]+)$", out, re.M)
    assert len(rows) == 8, out


def test_layer_costs_smoke() -> None:
    out = run("-m", "bench.layer_costs", "--smoke")
    summary = json.loads(out.strip().splitlines()[-1])
    names = {"hello", "app", *(f"without {layer}" for layer in (
        "SecurityHeadersMiddleware", "TracingMiddleware", "SizeLimitMiddleware", "SessionMiddleware", "CsrfMiddleware"))}
    assert set(summary["cells"]) == names
    for cell in summary["cells"].values():
        assert cell["requests_per_s"] > 0 and cell["cpu_us_per_request"] > 0
    assert re.search(r"^\| without TracingMiddleware \| [\d,]+ \| \d+ \| -?\d+ \|$", out, re.M), out


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_library_ab_smoke() -> None:
    out = run("-m", "bench.library_ab", "--smoke", "--rev", "head=HEAD")
    summary = json.loads(out.strip().splitlines()[-1])
    cells = {(c["variant"], c["route"]): c for c in summary["cells"]}
    assert set(cells) == {(v, r) for v in ("head", "current") for r in ("/items", "/bench/ping")}
    for cell in cells.values():
        assert cell["requests_per_s"] > 0 and cell["cpu_us_per_request"] > 0
    assert cells[("head", "/items")]["ratio_requests_per_s"] == 1.0
    assert re.search(r"^\| /bench/ping \| current \| [\d,]+ \| [\d,]+ \| \d+ \| [\d.]+, [\d.]+ \|$", out, re.M), out


def test_instructions_smoke() -> None:
    out = run("-m", "bench.instructions", "--smoke", timeout=300)
    summary = json.loads(out.strip().splitlines()[-1])
    (cell,) = summary["cells"]
    assert (cell["revision"], cell["sinks"], cell["route"]) == ("current", "csv", "/bench/ping")
    assert cell["instructions_per_request"] > 10_000  # a request is at least this many instructions
    assert re.search(r"^\| /bench/ping \| current \| csv \| [\d,]+ \|", out, re.M), out


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_route_column_smoke() -> None:
    out = run("-m", "bench.route_column", "--smoke", "--rev", "base=HEAD")
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary["us_per_row"]) == {"base", "current"}
    assert all(v > 0 for v in summary["us_per_row"].values())
    assert summary["route_column"]["current"] is True
    assert re.search(r"^best µs/row: base \(HEAD\) [\d.]+, current [\d.]+; added [+-][\d.]+ µs/row", out, re.M), out


def test_db_lane_bench_smoke() -> None:
    """Every lane and every ablation variant runs and prints its CPU per row."""
    from bench.db_lane_bench import VARIANTS

    out = run("-m", "bench.db_lane_bench", "--prefill", "600", "--batches", "2", "--batch", "50", "--ablate")
    assert re.findall(r"^file: (.+?)\s+[\d.]+ us CPU/row \(user [\d.]+, system [\d.]+\)$", out, re.M) == list(VARIANTS), out
    out = run("-m", "bench.db_lane_bench", "--prefill", "100", "--batches", "2", "--batch", "50", "--stdout", "--http")
    assert re.search(r"^stdout: [\d.]+ us CPU/row$", out, re.M) and re.search(r"^turso http: [\d.]+ us CPU/row$", out, re.M), out
