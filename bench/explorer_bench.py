"""Time the log explorer's pages through the real handlers, in-process, on a big file: DB.

    python bench/make_log_db.py /tmp/explorer-bench.db          # once (1M requests, 3M steps)
    python bench/explorer_bench.py /tmp/explorer-bench.db [--runs 20] [--json results.json]

For every page x range it prints p50/p95 over --runs requests (after one warm-up) and the
EXPLAIN QUERY PLAN of each query the page runs, then lists every page over its target
(list and trace <= 150 ms p95, overview <= 300 ms p95, a live-tail poll <= 20 ms p95). "now" is
pinned to the newest row; tail polls ask for rows newer than the newest row but a few seconds
(a few new rows) or than the newest (nothing new: 204, the steady state). Each case also shows
the median CPU time of the process per request (steadier than wall clock on a shared machine).

A/B against another revision: run this same file from inside that revision's tree (it imports
the app of the tree it sits in), e.g. `git archive REV | tar -x -C /tmp/base` and copy this file
to /tmp/base/bench/, on a copy of the DB, alternating the two a few rounds; --json keeps each
run's numbers for comparing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from log.explorer.queries import UTC, build_list_query, build_overview, parse_filters  # noqa: E402
from settings import Settings  # noqa: E402

TARGET_MS = {"list": 150, "trace": 150, "overview": 300, "tail": 20}
RANGES = ["15m", "1h", "24h", "7d"]


def cases(trace_ok: str, trace_failed: str, user: str, newest: int, recent: int) -> list[tuple[str, str, str]]:
    out = []
    for r in RANGES:
        out += [
            ("list", r, f"/logs?range={r}"),
            ("list", r, f"/logs?range={r}&status=5xx"),
            ("list", r, f"/logs?range={r}&endpoint=/api/v1/resource07&method=POST&min_ms=100"),
            ("list", r, f"/logs?range={r}&user={user}"),
            ("list", r, f"/logs?range={r}&code=503&endpoint=/login"),
            ("list", r, f"/logs?range={r}&user=nobody-at-all"),
            ("list", r, f"/logs?range={r}&route=/api/v1/resource37/%7Bitem_id:int%7D"),
            ("list", r, f"/logs?range={r}&route=(unmatched)&method=GET"),
            ("list", r, f"/logs?range={r}&status=errors"),
            ("list", r, f"/logs?range={r}&path=/api/v1/resource37/%7Bitem_id:int%7D&status=errors"),
            ("overview", r, f"/logs/overview?range={r}"),
            ("overview", r, f"/logs/overview?range={r}&route=/api/v1/resource37/%7Bitem_id:int%7D"),
            ("tail", r, f"/logs/tail?range={r}&after={recent}"),
            ("tail", r, f"/logs/tail?range={r}&status=errors&after={newest}"),
        ]
    out += [
        ("list", "all", "/logs?range=all"),
        ("list", "all", f"/logs?range=all&trace={trace_failed}"),
        ("list", "all", "/logs?range=all&status=1xx"),
        ("overview", "all", "/logs/overview?range=all"),
        ("trace", "-", f"/logs/traces/{trace_ok}"),
        ("trace", "-", f"/logs/traces/{trace_failed}"),
    ]
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))]


async def run(db_path: Path, runs: int, json_path: Path | None = None) -> int:
    conn = sqlite3.connect(db_path)
    newest = conn.execute("SELECT MAX(created_at) FROM api_logs").fetchone()[0]
    now = dt.datetime.fromisoformat(newest).replace(tzinfo=UTC) + dt.timedelta(seconds=1)
    trace_failed = conn.execute(
        "SELECT trace_id FROM task_progress_logs WHERE status = 'FAILED' ORDER BY id DESC LIMIT 1"
    ).fetchone()[0]
    trace_ok = conn.execute("SELECT trace_id FROM api_logs WHERE response_status = 200 ORDER BY id DESC LIMIT 1").fetchone()[0]
    user = conn.execute("SELECT user_id FROM api_logs WHERE user_id IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()[0]
    newest_id = conn.execute("SELECT MAX(id) FROM api_logs").fetchone()[0]
    recent_id = newest_id - (10_000 << 22)  # 10 s before the newest row: a few rows to return

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        (data_dir / "logs.db").symlink_to(db_path.resolve())
        app = create_app(Settings(data_dir=data_dir, secret_key="bench", log_sinks=()))
        ctx = app.router.lifespan_context(app)
        state = await ctx.__aenter__()
        try:
            async def asgi(scope, receive, send):
                scope["state"] = {**state, "log_clock": lambda: now}
                await app(scope, receive, send)

            async with httpx.AsyncClient(transport=httpx.ASGITransport(asgi), base_url="http://bench") as client:
                page = await client.get("/signup")
                token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
                await client.post("/signup", data={"email": "admin@example.com", "password": "correct horse battery", "csrf_token": token})
                unmet = []
                load = " ".join(f"{x:.1f}" for x in os.getloadavg())
                print(f"now = {now:%Y-%m-%d %H:%M:%S} UTC; {runs} runs per case (after 1 warm-up);"
                      f" {os.cpu_count()} CPUs, load average {load} (timings are wall clock)\n")
                print(f"{'page':9} {'range':5} {'p50 ms':>7} {'p95 ms':>7} {'cpu ms':>7}  {'status':6} url")
                results = []
                for page_kind, rng, url in cases(trace_ok, trace_failed, user, newest_id, recent_id):
                    times, cpus = [], []
                    status = 0
                    for i in range(runs + 1):
                        t0, c0 = time.perf_counter(), time.process_time()
                        resp = await client.get(url)
                        elapsed, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
                        status = resp.status_code
                        if i:
                            times.append(elapsed)
                            cpus.append(cpu)
                    p50, p95, cpu50 = statistics.median(times), pct(times, 95), statistics.median(cpus)
                    flag = "" if p95 <= TARGET_MS[page_kind] else "  UNMET"
                    print(f"{page_kind:9} {rng:5} {p50:7.1f} {p95:7.1f} {cpu50:7.2f}  {status:<6} {url}{flag}")
                    results.append({"page": page_kind, "range": rng, "url": url, "p50": p50, "p95": p95,
                                    "cpu_p50": cpu50, "status": status})
                    if flag or status not in ((200, 204) if page_kind == "tail" else (200,)):
                        unmet.append(f"{page_kind} {rng} {url}: p95 {p95:.1f} ms (target {TARGET_MS[page_kind]}), status {status}")
        finally:
            await ctx.__aexit__(None, None, None)
    if json_path is not None:
        json_path.write_bytes(msgspec.json.encode({"load": os.getloadavg(), "runs": runs, "results": results}))

    print("\nEXPLAIN QUERY PLAN")
    conn.close()
    conn = sqlite3.connect(db_path)  # a fresh connection sees the indexes the app's start-up created
    plans: list[tuple[str, str, list]] = []
    for r in RANGES + ["all"]:
        for label, params in [("list", {"range": r}), ("list 5xx", {"range": r, "status": "5xx"}),
                              ("list user", {"range": r, "user": user}),
                              ("list endpoint", {"range": r, "endpoint": "/api/v1/resource07", "min_ms": "100"}),
                              ("list route", {"range": r, "route": "/api/v1/resource37/{item_id:int}"})]:
            sql, args = build_list_query(parse_filters(params), now=now, limit=51, before_id=None)
            plans.append((f"{label} {r}", sql, args))
        plan = build_overview(parse_filters({"range": r}), now=now, oldest=now - dt.timedelta(days=30))
        plans.append((f"overview series {r}", *plan.series))
        for i, part in enumerate(plan.endpoint_parts):
            plans.append((f"overview part{i} {r}", *part))
    sql, args = build_list_query(parse_filters({"range": "all", "status": "1xx"}), now=now, limit=51,
                                 before_id=None, rare_status=True)
    plans.append(("list 1xx (rare class) all", sql, args))
    plans.append(("class count (rollup)", "SELECT COALESCE(SUM(n), 0) FROM api_status_hour WHERE status_class = ?", [5]))
    plans.append(("trace api_logs", "SELECT * FROM api_logs WHERE trace_id = ? ORDER BY created_at, id", [trace_ok]))
    plans.append(("trace steps", "SELECT * FROM task_progress_logs WHERE trace_id = ? ORDER BY created_at, execution_order, id", [trace_ok]))
    seen = set()
    for label, sql, args in plans:
        detail = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
        key = (label.rsplit(" ", 1)[0], tuple(detail))
        if key in seen:
            continue
        seen.add(key)
        print(f"- {label}: " + " | ".join(detail))
    print("\nUNMET: " + ("none" if not unmet else "\n  " + "\n  ".join(unmet)))
    return 1 if unmet else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None, help="write each case's numbers here")
    args = ap.parse_args()
    if not args.db.is_file():
        sys.exit(f"{args.db} does not exist: run bench/make_log_db.py first")
    sys.exit(asyncio.run(run(args.db, args.runs, args.json)))


if __name__ == "__main__":
    main()
