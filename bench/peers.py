"""What logging costs next to what users would pick instead: every layer in ONE run, real uvicorn, wrk.

    .venv/bin/python -m bench.peers [--smoke] [--seconds 5] [--rounds 5] [--connections 16]
                                    [--rev NAME=REV ...] [--only SERVER,...]

Servers (each its own DATA_DIR, all started before measuring, all pinned to core 0; only one is
loaded at a time; wrk and the Hrana server on core 1), on the same trivial JSON route
(GET /bench/ping, bench/peers_app.py):
  hello              the bare Starlette hello world: the baseline every µs figure is taken above
  otel               OpenTelemetry ASGI middleware + SDK BatchSpanProcessor, spans as JSON lines to a file
  structlog          asgi-correlation-id + one structlog JSON access line per request to a file
  log csv            this project's layer, LOG_SINKS=csv (headers and bodies captured, redacted)
  log csv no-record  the same with LOG_WAL=off: the control for the write-ahead record's own cost
  log csv+file:      LOG_SINKS=csv,turso with the embedded `file:` log DB (the default fan-out)
  log stdout+turso   LOG_SINKS=stdout,turso against the local Hrana server over HTTP (the Cloud Run
                     fan-out; stdout to a file)
and the app's items page (bench/bench_app.py, signed in, 20 items) with logging off and with
the full fan-out (csv + `file:` log DB; csv + Turso over HTTP).

Every round visits every server once, in a rotated order; a cell is the median of the rounds.
Server CPU µs per request: utime + stime of the server process (every thread: batch
processors, sink lanes, the SQLite worker) from /proc/<pid>/stat around each wrk run, read
once the server has gone idle after it (its batched writes included). After the servers stop
(gracefully: each layer flushes), the rows and lines each one actually wrote are counted, next
to the requests wrk saw answered, so no layer wins by writing nothing.

`--rev NAME=REV` also serves the log layer's servers (and the items page with the `file:` fan-out)
from that git revision, exported with `git archive` (bench/peers_app.py copied in), named
"NAME: <server>", in the same rounds: a before/after in one run.

Targets (issue 19), µs above hello: log csv <= 25, log csv+file: <= 35, log stdout+turso <= 30;
items page full fan-out >= 0.95 x off (req/s, median of the same-round ratios); (issue 16) the
write-ahead record, log csv minus log csv no-record, <= 10 µs (median of the same-round
differences). Each prints PASS or MISS. The last line printed is a JSON summary
(tests/bench/test_peers_smoke.py reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.library_ab import export
from bench.turso_pipeline_bench import (TOKEN, cpu_seconds, free_port, pin_to_core_0, sign_in_with_items, start_hrana,
                                        stop, wait_http, wrk)

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 20
PING, ITEMS_PAGE = "/bench/ping", "/items"
PEERS_APP, APP = "bench.peers_app:app", "bench.bench_app:app"

# name -> (ASGI app, route, environment; "{hrana}" is the server's own Hrana URL)
SERVERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "hello": (PEERS_APP, PING, {"PEERS_LAYER": "hello"}),
    "otel": (PEERS_APP, PING, {"PEERS_LAYER": "otel"}),
    "structlog": (PEERS_APP, PING, {"PEERS_LAYER": "structlog"}),
    "log csv": (PEERS_APP, PING, {"PEERS_LAYER": "log", "LOG_SINKS": "csv"}),
    "log csv no-record": (PEERS_APP, PING, {"PEERS_LAYER": "log", "LOG_SINKS": "csv", "LOG_WAL": "off"}),
    "log csv+file:": (PEERS_APP, PING, {"PEERS_LAYER": "log", "LOG_SINKS": "csv,turso"}),
    "log stdout+turso": (PEERS_APP, PING, {"PEERS_LAYER": "log", "LOG_SINKS": "stdout,turso",
                                           "TURSO_DATABASE_URL": "{hrana}", "TURSO_AUTH_TOKEN": TOKEN}),
    "items off": (APP, ITEMS_PAGE, {"LOG_SINKS": ""}),
    "items csv+file:": (APP, ITEMS_PAGE, {"LOG_SINKS": "csv,turso"}),
    "items csv+turso": (APP, ITEMS_PAGE, {"LOG_SINKS": "csv,turso", "TURSO_DATABASE_URL": "{hrana}",
                                          "TURSO_AUTH_TOKEN": TOKEN}),
}
# (server, maximum µs of server CPU per request above hello)
CPU_TARGETS = (("log csv", 25.0), ("log csv+file:", 35.0), ("log stdout+turso", 30.0))
# (server, baseline, minimum same-round req/s ratio)
RATIO_TARGETS = (("items csv+file:", "items off", 0.95), ("items csv+turso", "items off", 0.95))
# (server, its control, maximum µs of server CPU per request between them): the write-ahead record (issue 16)
DIFF_TARGETS = (("log csv", "log csv no-record", 10.0),)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def uses_hrana(name: str) -> bool:
    return "{hrana}" in SERVERS[base_name(name)][2].values()


# The servers a --rev serves from its own tree.
REV_SERVERS = ("log csv", "log csv no-record", "log csv+file:", "log stdout+turso", "items csv+file:")


def base_name(name: str) -> str:
    """"main: log csv" -> "log csv"."""
    return name.split(": ", 1)[1] if ": " in name else name


def start_server(name: str, data_dir: Path, hrana_url: str, tree: Path = ROOT) -> tuple[subprocess.Popen, str]:
    app, route, extra = SERVERS[base_name(name)]
    port = free_port()
    data_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("K_SERVICE", "PYTHONPATH")}
    env.update({"DATA_DIR": str(data_dir), "SECRET_KEY": "bench-secret", "PEERS_OUT": str(data_dir / "peer.jsonl")})
    env.update({k: v.replace("{hrana}", hrana_url) for k, v in extra.items()})
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--no-access-log", "--log-level", "warning"]
    out = open(data_dir / "stdout.log", "wb")  # noqa: SIM115 (the stdout sink writes there)
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=out)
    out.close()
    return proc, f"http://127.0.0.1:{port}"  # not waited for, nor pinned yet: the servers start side by side


def idle_cpu_seconds(pid: int, quiet: float = 0.4, timeout: float = 5.0) -> float:
    """The process's CPU seconds once it has stopped using CPU (no change for `quiet` seconds,
    longer than the log layer's row-build delay and flush interval): work a layer does after the
    responses (batched writes) is charged to the run that caused it."""
    last, since = cpu_seconds(pid), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.05)  # sampling interval of the idle check, not a wait for a result
        now = cpu_seconds(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    return last


def count_lines(path: Path, needle: bytes = b"") -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_bytes().splitlines() if line.strip() and needle in line)


def count_db_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM api_logs").fetchone()[0]


def count_csv_rows(log_dir: Path) -> int:
    from log.sinks.csv_sink import read_rows

    return sum(1 for _ in read_rows(log_dir, "api_logs"))


def written(name: str, data_dir: Path, hrana_db: Path | None) -> dict[str, int]:
    """What a server wrote, by destination (after it stopped)."""
    sinks = SERVERS[base_name(name)][2].get("LOG_SINKS", "")
    out: dict[str, int] = {}
    if name == "otel":
        out["spans"] = count_lines(data_dir / "peer.jsonl")
        out["server spans"] = count_lines(data_dir / "peer.jsonl", b'"SpanKind.SERVER"')
    if name == "structlog":
        out["lines"] = count_lines(data_dir / "peer.jsonl")
    if "csv" in sinks:
        out["csv rows"] = count_csv_rows(data_dir / "logs")
    if "stdout" in sinks:
        out["stdout lines"] = count_lines(data_dir / "stdout.log", b"trace_id")
    if "turso" in sinks:
        out["db rows"] = count_db_rows(hrana_db if hrana_db is not None else data_dir / "logs.db")
    return out


def measure(names: list[str], tmp: Path, seconds: float, rounds: int, connections: int,
            warm_up: bool, trees: dict[str, Path] | None = None) -> dict[str, Any]:
    hranas: dict[str, tuple[subprocess.Popen, str, Path]] = {}
    servers: dict[str, tuple[subprocess.Popen, str, str]] = {}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    served = dict.fromkeys(names, 0)
    try:
        for name in names:
            hrana_url = ""
            if uses_hrana(name):  # its own Hrana server and database: rows counted per server
                (tmp / f"hrana-{slug(name)}").mkdir()
                proc, hrana_url = start_hrana(tmp / f"hrana-{slug(name)}")
                hranas[name] = (proc, hrana_url, tmp / f"hrana-{slug(name)}" / "remote.db")
            proc, url = start_server(name, tmp / slug(name), hrana_url, (trees or {}).get(name, ROOT))
            servers[name] = (proc, url, "")
        for name, (proc, url, _) in servers.items():
            wait_http(f"{url}{PING}", proc)
            pin_to_core_0(proc.pid)
            cookie = sign_in_with_items(url, ITEMS) if SERVERS[base_name(name)][1] == ITEMS_PAGE else ""
            servers[name] = (proc, url, cookie)
        if warm_up:
            for name in names:
                proc, url, cookie = servers[name]
                served[name] += wrk(url + SERVERS[base_name(name)][1], cookie, 1, connections)[1]
        for r in range(rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                proc, url, cookie = servers[name]
                cpu0 = idle_cpu_seconds(proc.pid)
                rps, total = wrk(url + SERVERS[base_name(name)][1], cookie, seconds, connections)
                cpu = idle_cpu_seconds(proc.pid) - cpu0
                served[name] += total
                runs[name].append({"requests_per_s": rps, "requests": total, "cpu_us_per_request": cpu * 1e6 / total})
    finally:
        for proc, _, _ in servers.values():
            stop(proc)  # graceful: each layer flushes what it buffers
        for proc, _, _ in hranas.values():
            stop(proc)
    rows = {name: written(name, tmp / slug(name), hranas[name][2] if name in hranas else None) for name in names}
    return {"runs": runs, "served": served, "written": rows}


def cells(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    runs = result["runs"]
    hello = runs.get("hello")
    out = {}
    for name, rs in runs.items():
        cell = {
            "route": SERVERS[base_name(name)][1],
            "requests_per_s": statistics.median(r["requests_per_s"] for r in rs),
            "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in rs),
            "rounds_requests_per_s": [round(r["requests_per_s"]) for r in rs],
            "rounds_cpu_us_per_request": [round(r["cpu_us_per_request"], 1) for r in rs],
            "requests_served": result["served"][name],
            "written": result["written"][name],
        }
        if hello and SERVERS[base_name(name)][1] == PING:
            # Same-round difference, then the median: drift in the machine's load cancels out.
            cell["cpu_us_above_hello"] = statistics.median(
                r["cpu_us_per_request"] - h["cpu_us_per_request"] for r, h in zip(rs, hello, strict=True))
        out[name] = cell
    return out


def targets(cs: dict[str, dict[str, Any]], runs: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    out = []
    for name, limit in CPU_TARGETS:
        if name in cs and "cpu_us_above_hello" in cs[name]:
            value = cs[name]["cpu_us_above_hello"]
            out.append({"server": name, "measure": "µs above hello", "value": value, "target": f"<= {limit:g}",
                        "met": value <= limit})
    for name, control, limit in DIFF_TARGETS:
        if name in runs and control in runs:
            value = statistics.median(r["cpu_us_per_request"] - c["cpu_us_per_request"]
                                      for r, c in zip(runs[name], runs[control], strict=True))
            out.append({"server": name, "measure": f"µs above {control}", "value": value,
                        "target": f"<= {limit:g}", "met": value <= limit})
    for name, base, least in RATIO_TARGETS:
        if name in runs and base in runs:
            value = statistics.median(r["requests_per_s"] / b["requests_per_s"]
                                      for r, b in zip(runs[name], runs[base], strict=True))
            out.append({"server": name, "measure": f"req/s ratio to {base}", "value": value,
                        "target": f">= {least:g}", "met": value >= least})
    return out


def table(cs: dict[str, dict[str, Any]]) -> str:
    lines = ["| server | route | req/s (median) | rounds (req/s) | server CPU µs/request | µs above hello "
             "| requests answered | rows / lines written |",
             "|---|---|---:|---|---:|---:|---:|---|"]
    for name, c in cs.items():
        above = f"{c['cpu_us_above_hello']:+.1f}" if "cpu_us_above_hello" in c and name != "hello" else "-"
        wrote = ", ".join(f"{what} {n:,}" for what, n in c["written"].items()) or "-"
        lines.append(f"| {name} | {c['route']} | {c['requests_per_s']:,.0f} | "
                     f"{', '.join(f'{r:,}' for r in c['rounds_requests_per_s'])} | {c['cpu_us_per_request']:.1f} | "
                     f"{above} | {c['requests_served']:,} | {wrote} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run, for the test suite")
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rev", action="append", default=[], metavar="NAME=REV",
                        help="also serve the log layer's servers from this git revision (repeatable)")
    parser.add_argument("--only", default="", help=f"comma-separated servers (default all: {', '.join(SERVERS)})")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rounds, args.connections = 1.0, 1, 4
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk; ./test.sh installs it)")
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SERVERS)
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        raise SystemExit(f"unknown server(s) {unknown}; choose from {list(SERVERS)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp, trees = Path(tmp_name), {}
        for i, spec in enumerate(args.rev):
            label, _, rev = spec.partition("=")
            tree = export(rev, tmp / f"tree{i}")
            shutil.copy(ROOT / "bench" / "peers_app.py", tree / "bench" / "peers_app.py")
            for server in REV_SERVERS:
                if server in names:
                    trees[f"{label}: {server}"] = tree
        names += list(trees)
        result = measure(names, tmp, args.seconds, args.rounds, args.connections, warm_up=not args.smoke, trees=trees)
    cs = cells(result)
    ts = targets(cs, result["runs"])
    if args.rev:
        print("revisions: " + ", ".join(args.rev) + ", the rest: the working tree")
    print(f"peers: {args.rounds} round(s) x {args.seconds:g} s per server, wrk -t1 -c{args.connections}, "
          f"server on core 0, wrk + Hrana on core 1, {time.monotonic() - started:.0f} s, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(table(cs))
    for t in ts:
        print(f"{'PASS' if t['met'] else 'MISS'}: {t['server']} {t['measure']} {t['value']:.3f} (target {t['target']})")
    print(json.dumps({"cells": cs, "targets": ts, "seconds": args.seconds, "rounds": args.rounds,
                      "connections": args.connections}))


if __name__ == "__main__":
    main()
