"""Same-run A/B of the app at different git revisions, on a real uvicorn under wrk.

    .venv/bin/python -m bench.library_ab [--rev NAME=REV ...] [--seconds 5] [--rounds 5]
                                         [--connections 16] [--sinks ""] [--sinks csv,turso] [--smoke]

Each `--rev` is exported with `git archive` into its own directory and served from there
(`bench.bench_app:app`, that revision's own code); the working tree is served too, as
"current". The first `--rev` is the baseline (default: `hand-written=8b8f6c9`, the last commit
with the hand-written router index and session-cookie signer). So a change to the request path
is measured against the code before it in one run, without a switch in the product.

Servers as in bench/overhead_matrix.py: uvicorn pinned to core 0, wrk to core 1, each server its
own DATA_DIR, one loaded at a time; logging as `--sinks` says (default: off, so the request
path's own code is the largest share of a request; `--sinks` repeated serves every revision once
per sink set, and prints what logging costs each revision: the ratio to its own "off" server and
the server CPU µs added, per route, as medians over the rounds). Routes: /items (signed in, 20 items) and
/bench/ping (trivial JSON, signed in). Every round visits every (server, route) pair once, the
servers in a rotated order; a cell is the median over rounds. The ratio column is the median
over rounds of variant / baseline req/s measured in the same round (for CPU µs per request:
baseline / variant, so above 1 is faster for both). The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.turso_pipeline_bench import TOKEN, cpu_seconds, free_port, sign_in_with_items, start_hrana, stop, wait_http, wrk

ROOT = Path(__file__).resolve().parent.parent
ROUTES = ("/items", "/bench/ping")
ITEMS = 20
DEFAULT_REVS = ("hand-written=8b8f6c9",)


def export(rev: str, into: Path) -> Path:
    """The tree of `rev` (files tracked by git) in `into`."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def start_server(tree: Path, data_dir: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    data_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("K_SERVICE", "PYTHONPATH")}
    env.update({"DATA_DIR": str(data_dir), "SECRET_KEY": "bench-secret", **env_extra})
    # `-m` puts the working directory first on sys.path: the server runs that tree's code.
    cmd = [sys.executable, "-m", "uvicorn", "bench.bench_app:app", "--host", "127.0.0.1", "--port", str(port),
           "--no-access-log", "--log-level", "warning"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"  # not waited for: the servers start side by side


def measure(variants: dict[str, tuple[Path, dict[str, str]]], tmp: Path, seconds: float, rounds: int,
            connections: int, warm_up: bool) -> dict[tuple[str, str], list[dict[str, float]]]:
    servers: dict[str, tuple[subprocess.Popen, str, str]] = {}
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for i, (name, (tree, env)) in enumerate(variants.items()):
            servers[name] = (*start_server(tree, tmp / f"data{i}", env), "")
        for name, (proc, url, _) in servers.items():
            wait_http(f"{url}/bench/ping", proc)
            servers[name] = (proc, url, sign_in_with_items(url, ITEMS))
        names = list(servers)
        if warm_up:
            for name in names:
                for route in ROUTES:
                    wrk(servers[name][1] + route, servers[name][2], 1, connections)
        for r in range(rounds):
            for route in ROUTES:
                for name in names[r % len(names):] + names[: r % len(names)]:
                    proc, url, cookie = servers[name]
                    cpu0 = cpu_seconds(proc.pid)
                    rps, total = wrk(url + route, cookie, seconds, connections)
                    cpu_us = (cpu_seconds(proc.pid) - cpu0) * 1e6 / total
                    runs.setdefault((name, route), []).append({"requests_per_s": rps, "cpu_us_per_request": cpu_us})
    finally:
        for proc, _, _ in servers.values():
            stop(proc)
    return runs


def summarise(runs: dict[tuple[str, str], list[dict[str, float]]], baseline: str) -> list[dict[str, Any]]:
    cells = []
    for (name, route), rs in runs.items():
        base = runs[(baseline, route)]
        cells.append({
            "variant": name, "route": route,
            "requests_per_s": statistics.median(r["requests_per_s"] for r in rs),
            "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in rs),
            "rounds_requests_per_s": [round(r["requests_per_s"]) for r in rs],
            "ratio_requests_per_s": statistics.median(r["requests_per_s"] / b["requests_per_s"] for r, b in zip(rs, base)),
            "ratio_cpu": statistics.median(b["cpu_us_per_request"] / r["cpu_us_per_request"] for r, b in zip(rs, base)),
        })
    return cells


def table(cells: list[dict[str, Any]], baseline: str) -> str:
    lines = [f"| route | variant | req/s (median) | rounds (req/s) | server CPU µs/request | ratio to {baseline}: req/s, CPU |",
             "|---|---|---:|---|---:|---:|"]
    for c in sorted(cells, key=lambda c: ROUTES.index(c["route"])):
        lines.append(f"| {c['route']} | {c['variant']} | {c['requests_per_s']:,.0f} | "
                     f"{', '.join(f'{r:,}' for r in c['rounds_requests_per_s'])} | {c['cpu_us_per_request']:.0f} | "
                     f"{c['ratio_requests_per_s']:.3f}, {c['ratio_cpu']:.3f} |")
    return "\n".join(lines)


def variant_name(name: str, sinks: str, n_sink_sets: int) -> str:
    return name if n_sink_sets == 1 else f"{name} [{sinks or 'off'}]"


def logging_costs(runs: dict[tuple[str, str], list[dict[str, float]]], names: list[str],
                  sink_sets: list[str]) -> list[dict[str, Any]]:
    """Per revision and route, each sink set against the same revision's "off" server in the
    same round: req/s ratio and server CPU µs added (medians over rounds)."""
    if "" not in sink_sets or len(sink_sets) < 2:
        return []
    out = []
    for name in names:
        for route in ROUTES:
            off = runs[(variant_name(name, "", len(sink_sets)), route)]
            for sinks in sink_sets:
                if not sinks:
                    continue
                on = runs[(variant_name(name, sinks, len(sink_sets)), route)]
                out.append({
                    "revision": name, "route": route, "sinks": sinks,
                    "ratio_to_off": statistics.median(r["requests_per_s"] / o["requests_per_s"] for r, o in zip(on, off)),
                    "added_cpu_us": statistics.median(r["cpu_us_per_request"] - o["cpu_us_per_request"] for r, o in zip(on, off)),
                })
    return out


def costs_table(costs: list[dict[str, Any]]) -> str:
    lines = ["| route | revision | sinks | req/s ratio to its own off | server CPU µs added |", "|---|---|---|---:|---:|"]
    for c in costs:
        lines.append(f"| {c['route']} | {c['revision']} | {c['sinks']} | {c['ratio_to_off']:.3f} | {c['added_cpu_us']:+.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", action="append", default=[], metavar="NAME=REV",
                        help=f"a git revision to serve (repeatable; the first is the baseline; default {DEFAULT_REVS[0]})")
    parser.add_argument("--no-current", action="store_true", help="do not serve the working tree")
    parser.add_argument("--smoke", action="store_true", help="a tiny run, for the test suite")
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sinks", action="append", default=[],
                        help='LOG_SINKS for the servers (repeatable: one server per revision and sink set; default "": off)')
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rounds, args.connections = 1.0, 1, 4
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk; ./test.sh installs it)")
    revs = [spec.partition("=")[::2] for spec in (args.rev or DEFAULT_REVS)]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        trees = {name: export(rev, tmp / f"tree{i}") for i, (name, rev) in enumerate(revs)}
        if not args.no_current:
            trees["current"] = ROOT
        sink_sets = args.sinks or [""]
        hrana, hrana_env = None, {}
        if any("turso" in sinks for sinks in sink_sets):
            hrana, hrana_url = start_hrana(tmp)
            hrana_env = {"TURSO_DATABASE_URL": hrana_url, "TURSO_AUTH_TOKEN": TOKEN}
        variants = {
            variant_name(name, sinks, len(sink_sets)): (tree, {"LOG_SINKS": sinks, **(hrana_env if "turso" in sinks else {})})
            for sinks in sink_sets for name, tree in trees.items()
        }
        try:
            runs = measure(variants, tmp, args.seconds, args.rounds, args.connections, warm_up=not args.smoke)
        finally:
            if hrana is not None:
                stop(hrana)
    baseline = next(iter(variants))
    cells = summarise(runs, baseline)
    costs = logging_costs(runs, list(trees), sink_sets)
    print(f"same-run A/B: {args.rounds} round(s) x {args.seconds:g} s per cell, wrk -t1 -c{args.connections}, "
          f"LOG_SINKS={sink_sets!r}, server on core 0, wrk on core 1, load average {os.getloadavg()[0]:.2f}")
    print("revisions: " + ", ".join(f"{name}={rev}" for name, rev in revs) + ("" if args.no_current else ", current=working tree"))
    print(table(cells, baseline))
    if costs:
        print(costs_table(costs))
    print(json.dumps({"revisions": dict(revs), "baseline": baseline, "sinks": sink_sets, "cells": cells,
                      "logging_costs": costs, "seconds": args.seconds, "rounds": args.rounds,
                      "connections": args.connections}))


if __name__ == "__main__":
    main()
