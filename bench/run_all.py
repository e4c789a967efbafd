"""Run every benchmark, one after the other, and collect what each printed.

    .venv/bin/python -m bench.run_all              # full runs (about 10 minutes; explorer DB built once)
    .venv/bin/python -m bench.run_all --smoke      # every script that has --smoke, tiny sizes
    .venv/bin/python -m bench.run_all --only overhead_matrix,memory_growth
    .venv/bin/python -m bench.run_all --write-md   # also update BENCHMARKS.md's results (the benchmarks run)

Each benchmark runs in its own process (python -m bench.<name>); its stdout is kept, stderr
(the servers' start-up lines) is dropped unless it fails. Nothing git-tracked is written unless
--write-md is given. Exit status 1 if a script failed; UNMET lines are collected and repeated
at the end (they do not fail the run: on a shared machine a miss needs a re-run to be believed).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MD = ROOT / "BENCHMARKS.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
DEFAULT_DB = Path("/tmp/explorer-bench.db")


def plan(smoke: bool, explorer_db: Path) -> list[tuple[str, list[str]]]:
    """(name, argv after `python -m`) in run order; the explorer needs its big DB (full only)."""
    smoke_flag = ["--smoke"] if smoke else []
    steps = [
        ("overhead_matrix", ["bench.overhead_matrix", *smoke_flag]),
        ("peers", ["bench.peers", *smoke_flag]),
        ("layer_costs", ["bench.layer_costs", *smoke_flag]),
        ("memory_growth", ["bench.memory_growth", *smoke_flag]),
        ("turso_pipeline_bench", ["bench.turso_pipeline_bench", *smoke_flag]),
        ("import_bench", ["bench.import_bench", *smoke_flag]),
    ]
    # Added by another branch; run when present.
    for name in ("logging_overhead", "fault_latency"):
        if (ROOT / "bench" / f"{name}.py").is_file():
            steps.append((name, [f"bench.{name}", *smoke_flag]))
    if not smoke:
        steps.append(("turso_bench", ["bench.turso_bench"]))
        if not explorer_db.is_file():
            steps.append(("make_log_db", ["bench.make_log_db", str(explorer_db)]))
        steps.append(("explorer_bench", ["bench.explorer_bench", str(explorer_db)]))
    # Prunes a copy of the explorer DB (the smoke run builds a small one of its own).
    steps.append(("prune_bench", ["bench.prune_bench", *(smoke_flag or ["--source", str(explorer_db)])]))
    return steps


def versions() -> dict[str, str]:
    import sqlite3

    import starlette
    import uvicorn

    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    wrk_line = (wrk.stdout + wrk.stderr).splitlines()[0] if (wrk.stdout + wrk.stderr) else "not installed"
    return {"python": platform.python_version(), "uvicorn": uvicorn.__version__, "starlette": starlette.__version__,
            "wrk": "wrk " + wrk_line.split(" Copyright")[0].replace("wrk ", "", 1).strip(), "sqlite": sqlite3.sqlite_version}


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    mem = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    return {"nproc": str(os.cpu_count()), "cpu": model[1].strip() if model else "?",
            "memory": f"{int(mem[1]) / 1024 / 1024:.1f} GiB" if mem else "?", "kernel": platform.release()}


def run_one(name: str, argv: list[str]) -> tuple[int, str, float]:
    env = {k: v for k, v in os.environ.items() if k != "K_SERVICE"}
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, env=env, capture_output=True, text=True)
    out = done.stdout if done.returncode == 0 else done.stdout + "\n--- stderr ---\n" + done.stderr[-4000:]
    return done.returncode, out, time.monotonic() - began


def header(smoke: bool) -> str:
    m, v = machine(), versions()
    return (f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}; shared with other "
            f"test runs.{' Smoke sizes.' if smoke else ''}\n"
            f"Versions: Python {v['python']}, uvicorn {v['uvicorn']}, Starlette {v['starlette']}, "
            f"{v['wrk']}, SQLite {v['sqlite']}.\n")


def subsection(name: str, argv: list[str], code: int, out: str, seconds: float) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    # The JSON summary line is for machines; the rest is for people.
    text = "\n".join(line for line in out.rstrip().splitlines() if not line.startswith("{"))
    return (f"### {name}\n\n`.venv/bin/python -m {' '.join(argv)}`: run {when}, {seconds:.0f} s, load average "
            f"{os.getloadavg()[0]:.2f} at the end{'' if code == 0 else f', exit status {code}'}\n\n"
            f"```\n{text}\n```\n")


def merge(section: str, head: str, fresh: dict[str, str], order: list[str]) -> str:
    """The results section with the freshly run benchmarks' subsections replaced, the rest kept."""
    old: dict[str, str] = {}
    for block in re.split(r"(?m)^(?=### )", section):
        if block.startswith("### "):
            old[block.split("\n", 1)[0][4:].strip()] = block.rstrip() + "\n"
    blocks = {**old, **fresh}
    names = [n for n in order if n in blocks] + [n for n in blocks if n not in order]
    return head + "\n" + "\n".join(blocks[n] for n in names)


def write_md(head: str, fresh: dict[str, str], order: list[str]) -> None:
    text = MD.read_text()
    start, end = text.index(START) + len(START), text.index(END)
    MD.write_text(text[:start] + "\n" + merge(text[start:end], head, fresh, order) + "\n" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--explorer-db", type=Path, default=DEFAULT_DB, help="built by make_log_db if missing")
    parser.add_argument("--write-md", action="store_true", help="update BENCHMARKS.md's results (the benchmarks run)")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    results = []
    for name, argv in plan(args.smoke, args.explorer_db):
        if only and name not in only and not (name == "make_log_db" and only & {"explorer_bench", "prune_bench"}):
            continue
        print(f"== {name}: python -m {' '.join(argv)}", flush=True)
        code, out, seconds = run_one(name, argv)
        print(out, flush=True)
        print(f"== {name}: {'ok' if code == 0 else f'FAILED ({code})'} in {seconds:.0f} s", flush=True)
        results.append((name, argv, code, out, seconds))
    unmet = [f"{name}: {line}" for name, _, _, out, _ in results for line in out.splitlines()
             if "UNMET" in line and "none" not in line]
    print("== UNMET targets:" + ("".join(f"\n  {u}" for u in unmet) if unmet else " none"))
    if args.write_md:
        order = [name for name, _ in plan(False, Path("/nonexistent"))]
        write_md(header(args.smoke), {r[0]: subsection(*r) for r in results}, order)
        print(f"== wrote {MD.relative_to(ROOT)}")
    sys.exit(1 if any(code for _, _, code, _, _ in results) else 0)


if __name__ == "__main__":
    main()
