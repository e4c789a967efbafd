"""Instructions per request, counted by valgrind's callgrind: an A/B that machine load cannot move.

    .venv/bin/python -m bench.instructions --rev before=REV [--sinks ""] [--sinks csv,turso]
                                           [--routes /items,/bench/ping] [--requests 100] [--smoke]

Wall-clock A/Bs on a shared two-core machine swing by tens of µs per request; callgrind counts
the instructions a process executes, which the other processes on the machine do not change.
Each (revision, sink set, route) runs twice in-process under callgrind (the app from
`bench.bench_app`, requests through httpx's ASGI transport, the lifespan opened and closed so
every log row is built and written): once with a warm-up only, once with `--requests` more.
The difference divided by `--requests` is the instructions of one request, its share of the
batched row building and sink writes included; start-up and shutdown cancel out. "turso" here
is the embedded default's `file:` log database. Numbers are instructions, not µs: compare them
between revisions and sink sets, not with the wall-clock benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.library_ab import export

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 20
ITEMS = 20

# Runs inside the tree under test (its own app code): only names every revision has.
CHILD = r"""
import asyncio, re, sys
import httpx
from bench.bench_app import build

CSRF = re.compile(r'"X-CSRF-Token": "([^"]+)"')

async def main(route, n):
    app = build()
    async with app.router.lifespan_context(app) as state:
        async def with_state(scope, receive, send):
            scope["state"] = dict(state or {})
            await app(scope, receive, send)
        transport = httpx.ASGITransport(with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            csrf = CSRF.search((await client.get("/")).text)[1]
            await client.post("/signup", data={"email": "bench@example.com", "password": "correct horse battery", "csrf_token": csrf})
            csrf = CSRF.search((await client.get("/items")).text)[1]
            for i in range(ITEMS):
                await client.post("/items", data={"name": f"Bench item {i}", "quantity": str(i + 1), "csrf_token": csrf})
            for _ in range(n):
                response = await client.get(route)
                assert response.status_code == 200, response.status_code

ITEMS = int(sys.argv[3])
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def child_env(data: Path, sinks: str, pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("K_SERVICE", "PYTHONPATH") and not k.startswith(("LOG_", "TURSO_"))}
    env.update(DATA_DIR=str(data), SECRET_KEY="bench-secret", LOG_SINKS=sinks, PYTHONHASHSEED="0",
               PYTHONPYCACHEPREFIX=str(pycache))
    return env


def compile_first(tree: Path, tmp: Path, sinks: str, route: str, n: int) -> None:
    """The child once without valgrind, writing the bytecode of every module it imports to this
    run's own cache (PYTHONPYCACHEPREFIX): compiling from source under callgrind (a tree fresh
    from `git archive`, or PYTHONDONTWRITEBYTECODE set) costs about a fifth more wall time per
    run. Both counted runs load the same bytecode, so start-up still cancels out."""
    env = child_env(Path(tempfile.mkdtemp(dir=tmp)), sinks, tmp / "pycache")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    result = subprocess.run([sys.executable, "-c", CHILD, route, str(n), str(ITEMS)],
                            cwd=tree, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the child failed in {tree} ({sinks!r}, {route}):\n{result.stderr[-3000:]}")


def count(tree: Path, tmp: Path, sinks: str, route: str, n: int) -> int:
    """Instructions of one child process serving n requests to `route`."""
    data = Path(tempfile.mkdtemp(dir=tmp))
    out = data / "callgrind.out"
    env = child_env(data, sinks, tmp / "pycache")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # read the cache compile_first wrote, never add to it
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", CHILD, route, str(n), str(ITEMS)],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"callgrind run failed in {tree} ({sinks!r}, {route}):\n{result.stderr[-3000:]}")
    return int(match[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", action="append", default=[], metavar="NAME=REV", help="a git revision (repeatable)")
    parser.add_argument("--sinks", action="append", default=[], help='LOG_SINKS (repeatable; default "" and "csv,turso")')
    parser.add_argument("--routes", default="/items,/bench/ping")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at once (each is single-threaded)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run, for the test suite")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.routes = 2, "/bench/ping"
        args.sinks = args.sinks or ["csv"]
    sink_sets = args.sinks or ["", "csv,turso"]
    routes = [r for r in args.routes.split(",") if r]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        trees = {name: export(rev, tmp / f"tree{i}") for i, (name, rev) in enumerate(s.partition("=")[::2] for s in args.rev)}
        trees["current"] = ROOT
        jobs = [(name, sinks, route) for name in trees for sinks in sink_sets for route in routes]
        for name, sinks, route in jobs:
            compile_first(trees[name], tmp, sinks, route, WARM_UP + args.requests)
        # Both runs of every cell (the warm-up alone, and with the requests) share the pool.
        runs = [(j, n) for j in jobs for n in (WARM_UP + args.requests, WARM_UP)]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            counts = list(pool.map(lambda r: count(trees[r[0][0]], tmp, r[0][1], r[0][2], r[1]), runs))
        results = [(counts[2 * i] - counts[2 * i + 1]) / args.requests for i in range(len(jobs))]
    cells = [{"revision": n, "sinks": s, "route": r, "instructions_per_request": round(v)} for (n, s, r), v in zip(jobs, results)]
    off = {(c["revision"], c["route"]): c["instructions_per_request"] for c in cells if c["sinks"] == ""}
    print(f"callgrind, {args.requests} requests after {WARM_UP} warm-up, {ITEMS} items; instructions per request")
    print("| route | revision | sinks | instructions / request | added by logging |")
    print("|---|---|---|---:|---:|")
    for c in cells:
        base = off.get((c["revision"], c["route"]))
        added = "" if c["sinks"] == "" or base is None else f"{c['instructions_per_request'] - base:+,}"
        print(f"| {c['route']} | {c['revision']} | {c['sinks'] or 'off'} | {c['instructions_per_request']:,} | {added} |")
    print(json.dumps({"requests": args.requests, "cells": cells}))


if __name__ == "__main__":
    main()
