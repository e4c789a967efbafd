"""Instructions per explorer page, counted by valgrind's callgrind, for every list case of
explorer_bench: an A/B of the pages' CPU cost that machine load cannot move.

    python -m bench.explorer_instructions DB [--tree NAME=PATH ...] [--runs 20] [--pages list]
                                          [--html-dir DIR] [--json out.json]

DB is a log database from make_log_db.py (a small one is enough for the fixed cost of a page,
e.g. `--requests 100000 --days 3`: the same rows per minute as the 1M/30-day one). Each tree
(default: this one) gets its own copy of DB (a revision may migrate the schema on open) and runs
in-process under callgrind: the app of that tree, signed in as an admin, each case requested
once to warm up, then callgrind's counters are zeroed, the case is requested --runs times and the
counters are dumped (client requests through a tiny C helper built with the system's cc and
valgrind/callgrind.h). Instructions per page = the dump's total / --runs; start-up, imports and
template compiling are outside every dump. --html-dir keeps each case's page per tree, to check
that a change leaves the markup as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 20  # requests of each case before counting (caches, the interpreter's specialising)

HELPER_C = r"""
#include <valgrind/callgrind.h>
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""


def build_helper(tmp: Path) -> Path:
    src, lib = tmp / "cg.c", tmp / "libcg.so"
    src.write_text(HELPER_C)
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def list_cases(db: Path, pages: set[str]) -> list[tuple[str, str, str]]:
    from bench.explorer_bench import cases  # this tree's case list, so every tree gets the same URLs

    conn = sqlite3.connect(db)
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    trace_failed = one("SELECT trace_id FROM task_progress_logs WHERE status = 'FAILED' ORDER BY id DESC LIMIT 1")
    trace_ok = one("SELECT trace_id FROM api_logs WHERE response_status = 200 ORDER BY id DESC LIMIT 1")
    user = one("SELECT user_id FROM api_logs WHERE user_id IS NOT NULL ORDER BY id DESC LIMIT 1")
    newest_id = one("SELECT MAX(id) FROM api_logs")
    conn.close()
    return [c for c in cases(trace_ok, trace_failed, user, newest_id, newest_id - (10_000 << 22)) if c[0] in pages]


# ---- the child: runs under callgrind with cwd = the tree under test ------------------------------

async def child(db: Path, runs: int, urls: list[str], lib: str, html_dir: str) -> None:
    import ctypes

    import httpx

    sys.path.insert(0, os.getcwd())
    from app import create_app
    from settings import Settings

    cg = ctypes.CDLL(lib)
    conn = sqlite3.connect(db)
    newest = conn.execute("SELECT MAX(created_at) FROM api_logs").fetchone()[0]
    conn.close()
    now = dt.datetime.fromisoformat(newest).replace(tzinfo=dt.timezone.utc) + dt.timedelta(seconds=1)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "logs.db").symlink_to(db.resolve())
        app = create_app(Settings(data_dir=Path(tmp), secret_key="bench", log_sinks=()))
        ctx = app.router.lifespan_context(app)
        state = await ctx.__aenter__()

        async def asgi(scope, receive, send):
            scope["state"] = {**state, "log_clock": lambda: now}
            await app(scope, receive, send)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(asgi), base_url="http://bench") as c:
            page = await c.get("/signup")
            token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            await c.post("/signup", data={"email": "admin@example.com", "password": "correct horse battery",
                                          "csrf_token": token})
            for i, url in enumerate(urls):
                first = await c.get(url)
                for _ in range(WARM_UP):
                    await c.get(url)
                if html_dir:
                    Path(html_dir, f"{i:03d}.html").write_bytes(first.content)
                cg.cg_dump(f"warm {i}".encode())  # dumping zeroes every thread's counters (zeroing alone does not)
                for _ in range(runs):
                    await c.get(url)
                cg.cg_dump(f"case {i} status {first.status_code} bytes {len(first.content)}".encode())
        await ctx.__aexit__(None, None, None)


# ---- the parent ----------------------------------------------------------------------------------

def measure(tree: Path, db: Path, runs: int, urls: list[str], lib: Path, work: Path, html_dir: Path | None) -> list[dict]:
    out = work / "cg"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    copy = work / "logs.db"
    shutil.copyfile(db, copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "TURSO_", "PYTHONPATH"))}
    env.update(PYTHONHASHSEED="0", PYTHONPYCACHEPREFIX=str(work / "pycache"))
    args = [str(copy), str(runs), json.dumps(urls), str(lib), str(html_dir or "")]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True)  # compile bytecode first
    shutil.copyfile(db, copy)
    subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=yes", f"--callgrind-out-file={out}/cg.%p",
                    *cmd], cwd=tree, env=env, check=True, capture_output=True)
    results = []
    for f in out.iterdir():
        text = f.read_text(errors="replace")
        m = re.search(r"^desc: Trigger: Client Request: case (\d+) status (\d+) bytes (\d+)", text, re.M)
        if not m:
            continue
        total = int(re.search(r"^(?:totals|summary): (\d+)", text, re.M)[1])
        results.append({"case": int(m[1]), "status": int(m[2]), "bytes": int(m[3]), "instr": total / runs,
                        "file": str(f)})
    return sorted(results, key=lambda r: r["case"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        db, runs, urls, lib, html_dir = sys.argv[2:7]
        asyncio.run(child(Path(db), int(runs), json.loads(urls), lib, html_dir))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--tree", action="append", default=[], help="NAME=PATH of a source tree (default: this one)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--pages", default="list", help="comma-separated page kinds of explorer_bench (list,tail,trace,overview)")
    ap.add_argument("--only", default="", help="regex: only the URLs it matches")
    ap.add_argument("--url", action="append", default=[], help="an extra URL to count (e.g. a page outside the explorer, for reference)")
    ap.add_argument("--html-dir", type=Path, default=None, help="write each tree's pages to DIR/NAME/NNN.html")
    ap.add_argument("--keep", type=Path, default=None, help="keep the callgrind files under this directory")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    trees = [(n, Path(p)) for n, p in (t.split("=", 1) for t in args.tree)] or [("this", ROOT)]
    cases = [c for c in list_cases(args.db, set(args.pages.split(","))) if re.search(args.only, c[2])]
    cases += [("extra", "-", url) for url in args.url]
    urls = [c[2] for c in cases]
    table: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        lib = build_helper(tmp)
        for name, tree in trees:
            html = None
            if args.html_dir:
                html = args.html_dir / name
                html.mkdir(parents=True, exist_ok=True)
            work = (args.keep / name) if args.keep else tmp / name
            table[name] = measure(tree.resolve(), args.db, args.runs, urls, lib, work, html)
            print(f"{name}: {len(table[name])} cases measured", file=sys.stderr)
    names = [n for n, _ in trees]
    print("| case | " + " | ".join(f"{n} instr/page" for n in names)
          + "".join(f" | {n} / {names[0]}" for n in names[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(names) - 1))
    for i, (kind, rng, url) in enumerate(cases):
        cells = [next((r for r in table[n] if r["case"] == i), None) for n in names]
        vals = [f"{c['instr'] / 1e6:.2f}M ({c['status']})" if c else "-" for c in cells]
        ratios = [f"{cells[j]['instr'] / cells[0]['instr']:.2f}" if cells[j] and cells[0] else "-"
                  for j in range(1, len(names))]
        print(f"| {url} | " + " | ".join(vals) + "".join(f" | {r}" for r in ratios) + " |")
    if args.json:
        args.json.write_text(json.dumps({"urls": urls, "runs": args.runs, "trees": table}, indent=1))
    if args.html_dir and len(names) > 1:
        for i, url in enumerate(urls):
            digests = {n: hashlib.sha1((args.html_dir / n / f"{i:03d}.html").read_bytes()).hexdigest()[:10] for n in names}
            if len(set(digests.values())) > 1:
                print(f"html differs: {url} {digests}", file=sys.stderr)


if __name__ == "__main__":
    main()
