"""bench/peers.py in instructions: each logging layer on the trivial route, counted by valgrind's
callgrind, so the comparison with the peers does not move with the machine's load.

    python -m bench.peers_instructions [--requests 1500] [--only "hello,log csv"] [--tree NAME=PATH ...]

Every trivial-route server of bench/peers.py (hello, otel, structlog, log csv, log csv no-record,
log csv+file:, log stdout+turso; plus "log off": the layer with no sink, i.e. the trace id and its
response header only) runs in process under callgrind: its app from bench/peers_app.py with the
environment peers gives it, the lifespan started, WARM_UP requests, everything written, counters
dumped (zeroed). Then two windows, of --requests // 3 and --requests requests straight into the
ASGI app, each ending when the layer has written all it batched (rows built and written by every
sink, spans exported: see `drain`), counters dumped. Instructions per request = the difference of
the two windows' counts / the difference of their requests, so the fixed cost of draining cancels
out. All threads count (the sinks' worker threads, the span exporter's).

What it counts: user-space instructions, the amount of code a layer runs. Not kernel time, cache
misses or waiting: bench/peers.py has the CPU time of real servers. Under callgrind the process
runs ~50 times slower: time-based work (row builds every BUILD_DELAY, write-ahead checkpoints every
0.25 s, lease renewals) comes ~50 times more often per request than at full speed, a small
overcount (each is a few hundred instructions a request at most here).
After each run the rows / lines a layer wrote are counted (as in bench.peers): a layer that wrote
fewer than it answered fails the run. --tree NAME=PATH counts another source tree too (an A/B).
The last line printed is a JSON summary (tests/bench/test_peers_instructions_smoke.py reads it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 200  # requests before counting (the interpreter's specialising, first batches, caches)
# name -> (the bench.peers server it is, extra environment)
LAYERS: dict[str, tuple[str, dict[str, str]]] = {
    "hello": ("hello", {}),
    "otel": ("otel", {}),
    "structlog": ("structlog", {}),
    "log off": ("log csv", {"LOG_SINKS": ""}),
    "log csv no-record": ("log csv no-record", {}),
    "log csv": ("log csv", {}),
    "log csv+file:": ("log csv+file:", {}),
    "log stdout+turso": ("log stdout+turso", {}),
}
# Drained every so many requests too: OpenTelemetry's span queue holds 2,048 spans (3 a request
# here) and drops the rest when its exporter thread falls behind, as it does under callgrind. The
# log layer writes batches of 500 rows at full speed anyway.
DRAIN_EVERY = 500
HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]


# ---- the child: runs under callgrind, cwd = the tree under test -----------------------------------

async def drain(app: Any) -> None:
    """Wait until the layer has written everything it batched so far (rows built and written by
    every sink; spans exported), so that work is counted in the window of the requests behind it."""
    for middleware in getattr(app, "user_middleware", ()):
        tracing = middleware.kwargs.get("tracing")
        if tracing is not None and tracing.fanout is not None:
            tracing.build_pending()
            mark = tracing.fanout.write_mark()
            while not tracing.fanout.written_up_to(mark):
                await asyncio.sleep(0.005)  # the lanes run on this loop and in worker threads
        provider = middleware.kwargs.get("tracer_provider")
        if provider is not None:
            provider.force_flush()


async def child(windows: list[int]) -> None:
    sys.path.insert(0, os.getcwd())
    from bench.peers_app import build

    app = build()
    statuses: list[int] = []

    async def one(i: int) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": "/bench/ping", "raw_path": b"/bench/ping", "query_string": b"",
                 "root_path": "", "headers": HEADERS, "client": ("127.0.0.1", 40000 + i % 1000),
                 "server": ("127.0.0.1", 8000), "state": {}}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)

    async with app.router.lifespan_context(app):
        for i in range(WARM_UP):
            await one(i)
            await asyncio.sleep(0)  # as a server does between requests: timers and lanes get their turn
        await drain(app)
        os.getpgrp()  # callgrind dumps (and so zeroes every thread's counters) before this call
        for n in windows:
            for i in range(n):
                await one(i)
                await asyncio.sleep(0)
                if i % DRAIN_EVERY == DRAIN_EVERY - 1:
                    await drain(app)
            await drain(app)
            os.getppid()  # ... and dumps what this window counted before this one
    assert statuses == [200] * (WARM_UP + sum(windows)), sorted(set(statuses))


# ---- the parent -------------------------------------------------------------------------------------

def run_child(tree: Path, layer: str, windows: list[int], work: Path, hrana: tuple[str, Path] | None
              ) -> dict[str, Any]:
    """One process of `layer` under callgrind (its data under `work`): instructions counted in each
    window; hrana: (URL, database) of its Hrana server."""
    from bench.peers import SERVERS, written

    server, extra = LAYERS[layer]
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "TURSO_", "PYTHONPATH", "K_SERVICE"))}
    env.update({"DATA_DIR": str(work), "SECRET_KEY": "bench-secret", "PEERS_OUT": str(work / "peer.jsonl"),
                "PYTHONHASHSEED": "0"})
    hrana_url, hrana_db = hrana if hrana is not None else ("", None)
    env.update({k: v.replace("{hrana}", hrana_url) for k, v in {**SERVERS[server][2], **extra}.items()})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", ",".join(map(str, windows))]
    with open(work / "stdout.log", "wb") as out:  # the stdout sink writes there
        # The two markers are C functions nothing else here calls (the dumps are counted to be sure).
        done = subprocess.run(["valgrind", "--tool=callgrind", "--dump-before=getpgrp", "--dump-before=getppid",
                               f"--callgrind-out-file={work}/cg.%p", *cmd],
                              cwd=tree, env=env, stdout=out, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise SystemExit(f"{layer} ({tree}): the child failed\n{done.stderr.decode(errors='replace')[-3000:]}")
    dumps: dict[str, list[tuple[int, int]]] = {"getpgrp": [], "getppid": []}
    for f in work.glob("cg.*"):
        text = f.read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: --dump-before=(\w+)", text, re.M)
        if trigger:
            part = int(re.search(r"^part: (\d+)", text, re.M)[1])
            dumps[trigger[1]].append((part, int(re.search(r"^(?:totals|summary): (\d+)", text, re.M)[1])))
    if len(dumps["getpgrp"]) != 1 or len(dumps["getppid"]) != len(windows):
        raise SystemExit(f"{layer}: expected 1 and {len(windows)} dumps at the markers, got {dumps} in {work}")
    counted = [total for _, total in sorted(dumps["getppid"])]
    # What the layer wrote, by destination, counted as bench.peers counts it (no sink: nothing).
    return {"counted": counted, "written": {} if extra.get("LOG_SINKS") == "" else written(server, work, hrana_db)}


def measure(tree: Path, layer: str, requests: int, tmp: Path) -> dict[str, Any]:
    """Instructions per request of `layer`: windows of requests // 3 and `requests` requests, each
    drained; the difference of their counts over the difference of their requests."""
    from bench.peers import SERVERS
    from bench.turso_pipeline_bench import start_hrana, stop

    server, _ = LAYERS[layer]
    windows = [requests // 3, requests]
    work = tmp / re.sub(r"[^A-Za-z0-9]+", "-", layer)
    hrana = None
    if "{hrana}" in SERVERS[server][2].values():  # its own Hrana server, next to (not in) the run's data
        (work / "hrana").mkdir(parents=True)
        hrana, url = start_hrana(work / "hrana")
    try:
        server_db = None if hrana is None else (url, work / "hrana" / "remote.db")
        result = run_child(tree, layer, windows, work / "run", server_db)
    finally:
        if hrana is not None:
            stop(hrana)
    for what, rows in result["written"].items():
        if rows < WARM_UP + sum(windows):
            raise SystemExit(f"{layer}: {what} {rows} < {WARM_UP + sum(windows)} requests answered")
    (n1, n2), (c1, c2) = windows, result["counted"]
    return {"instr_per_request": (c2 - c1) / (n2 - n1), "counted": {n1: c1, n2: c2}, "written": result["written"]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        asyncio.run(child([int(n) for n in sys.argv[2].split(",")]))
        return

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1500, help="requests of the longer run (the shorter: a third)")
    ap.add_argument("--only", default="", help=f"comma-separated layers (default all: {', '.join(LAYERS)})")
    ap.add_argument("--tree", action="append", default=[], help="NAME=PATH of a source tree (default: this one)")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(LAYERS)
    unknown = [n for n in names if n not in LAYERS]
    if unknown:
        raise SystemExit(f"unknown layer(s) {unknown}; choose from {list(LAYERS)}")
    if args.requests < 30:
        raise SystemExit("--requests must be at least 30")
    trees = [(n, Path(p).resolve()) for n, p in (t.split("=", 1) for t in args.tree)] or [("this", ROOT)]
    table: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for tree_name, tree in trees:
            for layer in names:
                table.setdefault(layer, {})[tree_name] = measure(tree, layer, args.requests, tmp / tree_name)
                print(f"{tree_name}: {layer}: {table[layer][tree_name]['instr_per_request']:,.0f} instr/request",
                      file=sys.stderr)
    tree_names = [n for n, _ in trees]
    print(f"instructions per request (callgrind, all threads; windows of {args.requests // 3} and "
          f"{args.requests} requests)")
    print("| layer | " + " | ".join(f"{t} instr/request | {t} above hello" for t in tree_names) + " |")
    print("|---|" + "---:|---:|" * len(tree_names))
    for layer in names:
        cells = []
        for t in tree_names:
            v = table[layer][t]["instr_per_request"]
            hello = table.get("hello", {}).get(t, {}).get("instr_per_request")
            cells += [f"{v:,.0f}", "" if hello is None or layer == "hello" else f"{v - hello:+,.0f}"]
        print(f"| {layer} | " + " | ".join(cells) + " |")
    print(json.dumps({"requests": args.requests, "layers": table}))


if __name__ == "__main__":
    main()
