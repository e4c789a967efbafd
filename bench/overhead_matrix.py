"""What logging costs per request, every configuration in ONE run, on a real uvicorn under wrk.

    .venv/bin/python -m bench.overhead_matrix [--smoke] [--seconds 5] [--rounds 5] [--connections 16]

Servers (each its own DATA_DIR, all started side by side before measuring, then each pinned to
core 0 with `taskset -a -p`; only one is loaded at a time):
  hello      bench/hello_app.py: a bare Starlette hello world (no middleware), the ceiling
  off        the app (bench/bench_app.py) with LOG_SINKS=""
  csv        LOG_SINKS=csv
  csv+turso  LOG_SINKS=csv,turso against the local Hrana server (tests/support/hrana_server.py in its
             own process on core 1): the full fan-out
  stdout     LOG_SINKS=stdout, the server's stdout redirected to a file
  log-only-csv, log-only-csv+turso, log-only-stdout
             the app with every middleware but the log one left out (BENCH_DROP_MIDDLEWARE):
             the hello world plus the logging layer and its sinks, on /bench/ping only. Their
             ratio to hello is what logging alone costs a trivial route; reported, no target.
Routes: /items (signed in, 20 items), /bench/ping (trivial JSON, signed-in cookie sent) and
"/bench/ping anon" (no cookie: every request is a first visit; a JSON response mints no session
cookie, but the session layer still runs). wrk runs on core 1.
Every round visits every (server, route) pair once, so slow drift in a shared machine's load
spreads over all of them; each cell is the median of the rounds. Server CPU µs per request
comes from /proc/<pid>/stat (utime + stime, every thread) around each wrk run.

Target: items page, csv+turso >= 0.90 x off; a miss prints an "UNMET:" line. /bench/ping (both)
csv+turso / hello is reported with no target (the 0.50 once set is retired: logging is judged by
the µs it adds above the hello world, bench/peers.py). A "ceiling" line per trivial route gives
off / hello: what the route would reach if logging cost nothing. The last line printed is a JSON
summary.
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

from bench.turso_pipeline_bench import (TOKEN, cpu_seconds, free_port, pin_to_core_0, sign_in_with_items, start_hrana,
                                        stop, wait_http, wrk)

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 20
# label -> (path, send the signed-in session cookie). wrk keeps no cookies: without one every
# request is a first visit.
ROUTES = {"/items": ("/items", True), "/bench/ping": ("/bench/ping", True), "/bench/ping anon": ("/bench/ping", False)}
RATIOS = (  # (route label, measured config, baseline config, minimum ratio or None: reported only)
    ("/items", "csv+turso", "off", 0.90),
    ("/bench/ping", "csv+turso", "hello", None),
    ("/bench/ping anon", "csv+turso", "hello", None),
)

# The app's middleware other than logging; the log-only servers leave all of them out.
NOT_LOGGING = "SecurityHeadersMiddleware,SizeLimitMiddleware,SessionMiddleware,CsrfMiddleware"
LOG_ONLY_PREFIX = "log-only-"


def configs(hrana_url: str) -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (ASGI app, environment)."""
    sinks = {
        "csv": {"LOG_SINKS": "csv"},
        "csv+turso": {"LOG_SINKS": "csv,turso", "TURSO_DATABASE_URL": hrana_url, "TURSO_AUTH_TOKEN": TOKEN},
        "stdout": {"LOG_SINKS": "stdout"},
    }
    return {
        "hello": ("bench.hello_app:app", {}),
        "off": ("bench.bench_app:app", {"LOG_SINKS": ""}),
        **{name: ("bench.bench_app:app", env) for name, env in sinks.items()},
        **{LOG_ONLY_PREFIX + name: ("bench.bench_app:app", {**env, "BENCH_DROP_MIDDLEWARE": NOT_LOGGING})
           for name, env in sinks.items()},
    }


def routes_of(server: str) -> list[str]:
    if server == "hello":
        return ["/bench/ping"]
    if server.startswith(LOG_ONLY_PREFIX):
        return ["/bench/ping anon"]  # no session layer: nobody to sign in
    return list(ROUTES)


def start_server(app: str, data_dir: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc, url = launch_server(app, data_dir, env_extra)
    wait_http(f"{url}/bench/ping", proc)
    pin_to_core_0(proc.pid)
    return proc, url


def launch_server(app: str, data_dir: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """start_server without the wait, and not yet on core 0: servers launched side by side start
    in less time (pin_to_core_0 once each answers)."""
    port = free_port()
    data_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("K_SERVICE",)}
    env.update({"DATA_DIR": str(data_dir), "SECRET_KEY": "bench-secret", **env_extra})
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--no-access-log", "--log-level", "warning"]
    # The stdout sink writes there; a file, as a log shipper reading a pipe would keep up.
    out = open(data_dir / "stdout.log", "wb")  # noqa: SIM115 (closed by the child's exit)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out)
    out.close()
    return proc, f"http://127.0.0.1:{port}"


def median_cell(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "requests_per_s": statistics.median(r["requests_per_s"] for r in runs),
        "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "runs_requests_per_s": [round(r["requests_per_s"]) for r in runs],
    }


def measure(tmp: Path, hrana_url: str, seconds: float, rounds: int, connections: int, warm_up: bool,
            only: set[str] | None = None) -> dict[str, Any]:
    servers: dict[str, tuple[subprocess.Popen, str, str]] = {}
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for name, (app, env) in configs(hrana_url).items():
            if only and name not in only:
                continue
            servers[name] = (*launch_server(app, tmp / name.replace("+", "-"), env), "")
        for name, (proc, url, _) in servers.items():  # all started side by side, before measuring
            wait_http(f"{url}/bench/ping", proc)
            pin_to_core_0(proc.pid)
            signed_in = "/items" in routes_of(name)
            servers[name] = (proc, url, sign_in_with_items(url, ITEMS) if signed_in else "")
        pairs = [(name, route) for name in servers for route in routes_of(name)]
        if warm_up:
            for name, route in pairs:
                wrk(servers[name][1] + ROUTES[route][0], servers[name][2], 1, connections)
        for _ in range(rounds):
            for name, route in pairs:
                proc, url, cookie = servers[name]
                path, signed_in = ROUTES[route]
                cpu0 = cpu_seconds(proc.pid)
                rps, total = wrk(url + path, cookie if signed_in else "", seconds, connections)
                cpu = cpu_seconds(proc.pid) - cpu0
                runs.setdefault((name, route), []).append(
                    {"requests_per_s": rps, "requests": total, "cpu_us_per_request": cpu * 1e6 / total})
    finally:
        for proc, _, _ in servers.values():
            stop(proc)  # graceful: the lifespan flushes the log rows
    # The stdout sink's JSON lines (uvicorn's and the app's own logging go to stderr).
    stdout_log = tmp / "stdout" / "stdout.log"
    stdout_rows = sum(1 for line in stdout_log.read_bytes().splitlines() if b"trace_id" in line) if stdout_log.exists() else 0
    return {"cells": {f"{name} {route}": median_cell(rs) for (name, route), rs in runs.items()},
            "stdout_lines": stdout_rows}


def ratios(cells: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for route, config, base, target in RATIOS:
        if f"{config} {route}" not in cells or f"{base} {ROUTES[route][0]}" not in cells:
            continue  # a server left out with --only
        m, b = cells[f"{config} {route}"], cells[f"{base} {ROUTES[route][0]}"]
        out.append({
            "route": route, "config": config, "baseline": base, "target": target,
            "ratio": m["requests_per_s"] / b["requests_per_s"],
            "cpu_ratio": b["cpu_us_per_request"] / m["cpu_us_per_request"],
        })
    return out


def logging_alone(cells: dict[str, Any]) -> list[dict[str, Any]]:
    """Each log-only server vs hello on the trivial route: logging's own cost, no target."""
    hello = cells.get("hello /bench/ping")
    out = []
    for key, c in cells.items():
        if hello and key.startswith(LOG_ONLY_PREFIX):
            out.append({"config": key.split(" ", 1)[0], "ratio": c["requests_per_s"] / hello["requests_per_s"],
                        "cpu_us_added": c["cpu_us_per_request"] - hello["cpu_us_per_request"]})
    return out


def ceilings(cells: dict[str, Any]) -> list[dict[str, Any]]:
    """The app with logging off vs hello, on each trivial route: the best ratio ANY logging could
    give that route (logging at zero cost)."""
    out = []
    for route, _, base, _ in RATIOS:
        off, b = cells.get(f"off {route}"), cells.get(f"{base} {ROUTES[route][0]}")
        if base == "hello" and off and b:
            out.append({"route": route, "ratio": off["requests_per_s"] / b["requests_per_s"]})
    return out


def table(cells: dict[str, Any]) -> str:
    lines = ["| server | route | req/s (median) | rounds (req/s) | server CPU µs/request | vs off (req/s) |",
             "|---|---|---:|---|---:|---:|"]
    for key, c in cells.items():
        name, route = key.split(" ", 1)
        off = cells.get(f"off {route}")
        comparable = name != "hello" and not name.startswith(LOG_ONLY_PREFIX)  # log-only: vs hello, below
        rel = f"{c['requests_per_s'] / off['requests_per_s']:.2f}" if off and comparable else "-"
        lines.append(f"| {name} | {route} | {c['requests_per_s']:,.0f} | "
                     f"{', '.join(f'{r:,}' for r in c['runs_requests_per_s'])} | {c['cpu_us_per_request']:,.0f} | {rel} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a tiny run (seconds), for the test suite")
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=5)  # medians of 5: the items ratio moved ±0.03 with 3
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", default="", help="comma-separated servers to run (default: all), e.g. hello,off,csv+turso")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rounds, args.connections = 1.0, 1, 4
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk; ./test.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        hrana, url = start_hrana(tmp)
        try:
            result = measure(tmp, url, args.seconds, args.rounds, args.connections, warm_up=not args.smoke,
                             only={n for n in args.only.split(",") if n} or None)
        finally:
            stop(hrana)
    cells = result["cells"]
    print(f"overhead matrix: {args.rounds} round(s) x {args.seconds:g} s per cell, wrk -t1 -c{args.connections}, "
          f"server on core 0, wrk + Hrana on core 1, load average {os.getloadavg()[0]:.2f}")
    print(table(cells))
    rs = ratios(cells)
    for r in rs:
        print(f"ratio {r['route']} {r['config']}/{r['baseline']}: {r['ratio']:.3f} req/s, "
              f"{r['cpu_ratio']:.3f} CPU per request"
              + ("" if r["target"] is None else f" (target >= {r['target']:.2f})"))
    alone = logging_alone(cells)
    for r in alone:
        print(f"logging alone on the trivial route, {r['config']}/hello: {r['ratio']:.3f} req/s, "
              f"+{r['cpu_us_added']:.0f} µs of server CPU per request")
    ceiling = ceilings(cells)
    for r in ceiling:
        print(f"ceiling {r['route']}: the app with logging off is {r['ratio']:.3f} x hello req/s, the most any "
              f"logging could leave")
    unmet = [r for r in rs if r["target"] is not None and r["ratio"] < r["target"]]
    for r in unmet:
        print(f"UNMET: {r['route']} {r['config']} is {r['ratio']:.3f} x {r['baseline']} req/s (target {r['target']:.2f})")
    if not unmet:
        print("UNMET: none")
    print(json.dumps({"cells": cells, "ratios": rs, "logging_alone": alone, "ceilings": ceiling,
                      "stdout_lines": result["stdout_lines"],
                      "seconds": args.seconds, "rounds": args.rounds}))


if __name__ == "__main__":
    main()
