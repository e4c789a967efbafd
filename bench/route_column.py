"""What the api_logs.route column costs on the request path: build and encode one row, A/B.

    .venv/bin/python -m bench.route_column [--rev base=REV] [--rows 2000] [--repeats 9] [--rounds 20] [--smoke]

The row work the column adds happens in-process, per request: the capture layer reads the route
from the scope (log/asgi.py route_template), the builder copies it into the row (build_api_log),
and the sinks encode one more cell (CSV lines: encode_rows; the database's JSON document:
rows_json). This measures exactly that work, in a fresh process per run that imports one tree's
own log/ package: the working tree ("current") and `--rev` exported with `git archive` (default
`base=HEAD`, i.e. the last commit; pass the commit before the column when measuring from a branch
that has it). Each run builds `--rows` rows of the items page (an item URL, its template, a
summarised HTML response) and encodes them, best of `--repeats`, -> CPU µs per row (the
thread's CPU time, not wall time: on a shared machine wall time mostly measures the neighbours).
Rounds alternate which tree goes first. The added cost is judged on the best run of each tree
(the least disturbed one); the median of the per-round differences is printed next to it. Target: <= 2 µs per row. Pinned to core 0 when
taskset exists. The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.library_ab import export

ROOT = Path(__file__).resolve().parent.parent
TARGET_US = 2.0

# Runs inside the tree under test (cwd), so it imports that tree's log/ package. Works on trees
# with and without the route column: the route is passed only where Captured has the field.
CHILD = r"""
import json, sys, time
from log.core.build import build_api_log
from log.core.captured import Captured
from log.core.csv_codec import encode_rows
from log.core.redact import RedactionPolicy
from log.sinks.turso_sink import rows_json

n, repeats = int(sys.argv[1]), int(sys.argv[2])
try:
    from log.asgi import route_template
except ImportError:
    route_template = None

class Route:
    path = "/items/{item_id:int}"

scope = {"type": "http", "path": "/items/12", "root_path": "", "router": object(), "route": Route()}
policy = RedactionPolicy()
headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"text/html"),
           (b"cookie", b"session=abc"), (b"hx-request", b"true")]
html = b"<!doctype html><html>" + b"<article data-item-name='x'>item</article>" * 20 + b"</html>"
base = dict(
    received_at=time.time(), duration_ms=3, method="GET", path="/items/12", query_string="",
    request_headers=headers, request_body=b"", request_body_size=0, response_status=200,
    response_headers=[(b"content-type", b"text/html; charset=utf-8")], response_body=b"",
    response_body_size=len(html), client_ip="127.0.0.1", user_id="1",
    trace_id="0b7c9a44-7f55-4d5e-9d55-0f3b4f7d2a11",
)
has_route = "route" in Captured.__struct_fields__

def once():
    t0 = time.thread_time()
    rows = []
    for i in range(n):
        extra = {"route": route_template(scope, "")} if has_route else {}
        rows.append(build_api_log(Captured(**base, **extra), row_id=i + 1, policy=policy, body_cap=16384))
    encode_rows(rows)
    for k in range(0, n, 100):
        rows_json(rows[k:k + 100])
    return (time.thread_time() - t0) * 1e6 / n

best = min(once() for _ in range(repeats))
print(json.dumps({"us_per_row": best, "route_column": has_route}))
"""


def run_tree(tree: Path, rows: int, repeats: int) -> dict:
    cmd = [sys.executable, "-c", CHILD, str(rows), str(repeats)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    done = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run in {tree} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="base=HEAD", metavar="NAME=REV", help="the tree to compare with")
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--smoke", action="store_true", help="a tiny run (seconds), for CI")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.rounds, args.repeats = 500, 2, 1
    name, _, rev = args.rev.partition("=")
    with tempfile.TemporaryDirectory(prefix="bench-route-") as tmp:
        trees = {name: export(rev, Path(tmp) / name), "current": ROOT}
        runs: dict[str, list[float]] = {t: [] for t in trees}
        columns: dict[str, bool] = {}
        print(f"{'round':>5} {'tree':>10} {'µs/row':>8}")
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for t in order:
                result = run_tree(trees[t], args.rows, args.repeats)
                runs[t].append(result["us_per_row"])
                columns[t] = result["route_column"]
                print(f"{r + 1:>5} {t:>10} {result['us_per_row']:>8.2f}", flush=True)
    diffs = [c - b for c, b in zip(runs["current"], runs[name])]
    summary = {
        "rows": args.rows, "rounds": args.rounds,
        "us_per_row": {t: round(min(v), 3) for t, v in runs.items()},
        "median_us_per_row": {t: round(statistics.median(v), 3) for t, v in runs.items()},
        "route_column": columns,
        "added_us_per_row": round(min(runs["current"]) - min(runs[name]), 3),
        "median_round_difference_us": round(statistics.median(diffs), 3),
        "target_us": TARGET_US,
    }
    print(f"\nbest µs/row: {name} ({rev}) {summary['us_per_row'][name]:.2f}, current {summary['us_per_row']['current']:.2f};"
          f" added {summary['added_us_per_row']:+.2f} µs/row (target <= {TARGET_US}) "
          f"{'OK' if summary['added_us_per_row'] <= TARGET_US else 'OVER TARGET'};"
          f" median of per-round differences {summary['median_round_difference_us']:+.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
