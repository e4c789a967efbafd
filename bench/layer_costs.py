"""What each layer of the request path costs on a real server: the app with one middleware left
out at a time, against the whole app and a bare Starlette hello world, in one run.

    .venv/bin/python -m bench.layer_costs [--smoke] [--seconds 4] [--rounds 3] [--route /bench/ping]

Servers as in bench/overhead_matrix.py (uvicorn pinned to core 0, wrk to core 1, each server its
own DATA_DIR, the route requested with a signed-in session cookie), logging to CSV + the local
Hrana server (the full fan-out). A layer's cost is the server CPU µs per request of the whole app
minus that of the app without it (BENCH_DROP_MIDDLEWARE, read by bench/bench_app.py). Leaving out
the session also leaves the route signed out, so its row shows the session's full price.
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from bench.overhead_matrix import NOT_LOGGING, launch_server
from bench.turso_pipeline_bench import TOKEN, cpu_seconds, pin_to_core_0, sign_in_with_items, start_hrana, stop, wait_http, wrk

LAYERS = ("TracingMiddleware", *NOT_LOGGING.split(","))


def variants(hrana_url: str) -> dict[str, tuple[str, dict[str, str]]]:
    full = {"LOG_SINKS": "csv,turso", "TURSO_DATABASE_URL": hrana_url, "TURSO_AUTH_TOKEN": TOKEN}
    out = {"hello": ("bench.hello_app:app", {}), "app": ("bench.bench_app:app", full)}
    for layer in LAYERS:
        out[f"without {layer}"] = ("bench.bench_app:app", {**full, "BENCH_DROP_MIDDLEWARE": layer})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--route", default="/bench/ping")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rounds, args.connections = 1.0, 1, 4
    runs: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        hrana, hrana_url = start_hrana(tmp)
        servers = {}
        try:
            for i, (name, (app, env)) in enumerate(variants(hrana_url).items()):
                servers[name] = (*launch_server(app, tmp / f"s{i}", env), "")
            for name, (proc, url, _) in servers.items():  # all started side by side, before measuring
                wait_http(f"{url}/bench/ping", proc)
                pin_to_core_0(proc.pid)
                signed_in = name not in ("hello", "without SessionMiddleware")
                # Item writes record task rows under the request's trace id, which the tracing
                # layer provides: without it the route is measured signed in with no items.
                items = 0 if name == "without TracingMiddleware" else 20
                servers[name] = (proc, url, sign_in_with_items(url, items) if signed_in else "")
            for _ in range(args.rounds):
                for name, (proc, url, cookie) in servers.items():
                    cpu0 = cpu_seconds(proc.pid)
                    rps, total = wrk(url + args.route, cookie, args.seconds, args.connections)
                    runs.setdefault(name, []).append((rps, (cpu_seconds(proc.pid) - cpu0) * 1e6 / total))
        finally:
            for proc, _, _ in servers.values():
                stop(proc)
            stop(hrana)
    cells = {name: {"requests_per_s": statistics.median(r for r, _ in rs),
                    "cpu_us_per_request": statistics.median(c for _, c in rs)} for name, rs in runs.items()}
    whole = cells["app"]["cpu_us_per_request"]
    print(f"layer costs on {args.route}: {args.rounds} round(s) x {args.seconds:g} s, server on core 0, wrk on core 1")
    print("| server | req/s (median) | server CPU µs/request | layer cost µs |")
    print("|---|---:|---:|---:|")
    for name, c in cells.items():
        cost = f"{whole - c['cpu_us_per_request']:.0f}" if name.startswith("without") else "-"
        print(f"| {name} | {c['requests_per_s']:,.0f} | {c['cpu_us_per_request']:.0f} | {cost} |")
    print(json.dumps({"route": args.route, "cells": cells}))


if __name__ == "__main__":
    main()
