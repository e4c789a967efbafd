"""Worker processes starting and stopping together, for real: the Dockerfile's CMD with
WEB_CONCURRENCY workers on a fresh (or an existing) DATA_DIR, some load, SIGTERM; optionally a
SIGKILL of one worker first (uvicorn starts a new one). Each run checks: exit code 0, every
worker started, no ERROR / Traceback in the output, every answered X-Trace-ID exactly once in
every sink. Prints one line per run and a summary; not part of the suite (minutes per scenario).

    .venv/bin/python -m bench.startup_stress --runs 25 --sinks csv,turso --cloud --mode fresh

Modes: fresh (a new DATA_DIR), existing (a second start on the DATA_DIR of a first one; both
checked), kill (SIGKILL of one worker under load, its replacement serves, then SIGTERM), early
(SIGTERM at a random moment of the workers' lifespan start-up), crash (every process SIGKILLed
mid-load, then a second start on that DATA_DIR recovers; both starts' answered requests checked).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from log.sinks.csv_sink import read_rows  # noqa: E402
from tests.app.test_sigterm import dockerfile  # noqa: E402
from tests.support.app import free_port  # noqa: E402

VENV_BIN = Path(sys.executable).parent
STARTED = "Application startup complete."
STARTING = "Waiting for application startup."


class Server:
    def __init__(self, tmp: Path, data_dir: Path, env_extra: dict[str, str], tag: str) -> None:
        cmd, image_env = dockerfile()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **image_env,
            "PORT": str(self.port),
            "DATA_DIR": str(data_dir),
            **env_extra,
        }
        self.out, self.err = tmp / f"stdout.{tag}.txt", tmp / f"stderr.{tag}.txt"
        with self.out.open("ab") as o, self.err.open("ab") as e:
            self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=o, stderr=e, stdin=subprocess.DEVNULL)

    def text(self) -> str:
        return self.err.read_text(errors="replace") + self.out.read_text(errors="replace")

    def started(self, line: str = STARTED) -> int:
        return self.text().count(line)

    def children(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.process.pid and b"resource_tracker" not in cmdline:
                pids.append(int(entry.name))
        return pids

    def deleted_locks(self) -> list[str]:
        """Lock files a live worker holds that are no longer in the folder (invisible to a claim)."""
        found = []
        for pid in self.children():
            fds = Path(f"/proc/{pid}/fd")
            try:
                links = [os.readlink(fd) for fd in fds.iterdir()]
            except OSError:
                continue
            found += [f"{pid}: {link}" for link in links if ".lock" in link and link.endswith("(deleted)")]
        return found

    def kill_all(self) -> None:
        self.killed = self.children()
        for pid in [*self.killed, self.process.pid]:
            os.kill(pid, signal.SIGKILL)

    def wait_children_gone(self, timeout: float = 10) -> None:
        """Until the killed workers have ended (their files closed, their locks let go)."""
        deadline = time.monotonic() + timeout
        for pid in self.killed:
            while True:
                try:
                    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:
                    break
                if state in ("Z", "X"):
                    break
                if time.monotonic() > deadline:
                    raise Failure(f"killed worker {pid} still running")
                time.sleep(0.01)  # polling for a condition, with a deadline

    def wait_started(self, count: int, timeout: float = 60, line: str = STARTED) -> None:
        deadline = time.monotonic() + timeout
        while self.started(line) < count:
            if self.process.poll() is not None:
                raise Failure(f"exited {self.process.returncode} before {count} workers started")
            if time.monotonic() > deadline:
                raise Failure(f"only {self.started(line)} of {count} workers said {line!r} in {timeout:.0f}s")
            time.sleep(0.05)  # polling for a condition, with a deadline

    def stop(self, timeout: float = 20) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise Failure("no exit within 20 s of SIGTERM") from None


class Failure(Exception):
    pass


async def load(url: str, n: int, connections: int = 16, tag: str = "", at_half=None) -> dict[str, int]:
    """n GETs over `connections` connections, a new connection each (so every worker gets some);
    at_half() is called once half of them were answered. {trace id: status} of the answered."""
    answered: dict[str, int] = {}
    todo = iter(range(n))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=15) as client:

        async def one() -> None:
            for i in todo:
                path = ("/", "/login", f"/missing-{tag}{i}")[i % 3]
                try:
                    r = await client.get(path)
                except httpx.TransportError:
                    continue
                answered[r.headers["x-trace-id"]] = r.status_code
                if at_half is not None and len(answered) == n // 2:
                    at_half()

        await asyncio.gather(*(one() for _ in range(connections)))
    return answered


def problems_in_output(text: str) -> list[str]:
    bad = []
    for line in text.splitlines():
        if '"table"' in line:
            continue  # a stdout sink row (its body may say anything)
        if "Traceback" in line or "ERROR" in line or '"severity": "ERROR"' in line or '"severity":"ERROR"' in line \
                or "CRITICAL" in line:
            bad.append(line[:300])
    return bad


EXPECTED_WARNINGS = ("DEMO MODE", "LOGS PER INSTANCE")


def warnings_in_output(text: str) -> list[str]:
    """WARNING lines other than the ones every start in that mode prints (reported, not failed)."""
    found = []
    for line in text.splitlines():
        if '"table"' in line or "WARNING" not in line or any(w in line for w in EXPECTED_WARNINGS):
            continue
        found.append(line[:300])
    return found


def sink_counts(data_dir: Path, outs: list[Path], sinks: list[str], db: Path) -> dict[str, collections.Counter]:
    found: dict[str, collections.Counter] = {}
    if "csv" in sinks:
        found["csv"] = collections.Counter(r.trace_id for r in read_rows(data_dir / "logs", "api_logs"))
    if "turso" in sinks:
        with sqlite3.connect(db) as conn:
            found["turso"] = collections.Counter(t for (t,) in conn.execute("SELECT trace_id FROM api_logs"))
    if "stdout" in sinks:
        c: collections.Counter = collections.Counter()
        for out in outs:
            for line in out.read_text(errors="replace").splitlines():
                if '"table"' not in line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:  # a line torn by a kill -9, glued to the next process's line
                    c["<torn line>"] += 1
                    continue
                if obj.get("table") == "api_logs":
                    c[obj["row"]["trace_id"]] += 1
        found["stdout"] = c
    return found


def one_run(args: argparse.Namespace, tmp: Path) -> list[str]:
    data_dir = tmp / "data"
    sinks = args.sinks.split(",")
    env = {"WEB_CONCURRENCY": str(args.workers), "LOG_SINKS": args.sinks,
           "TURSO_DATABASE_URL": f"file:{data_dir / 'logs.db'}"}
    if args.cloud:
        env |= {"K_SERVICE": "stress", "LOG_DB_EPHEMERAL": "1", "SECRET_KEY": "stress-secret",
                "GOOGLE_CLOUD_PROJECT": "stress"}
    starts = 2 if args.mode in ("existing", "crash") else 1
    answered: dict[str, int] = {}
    servers: list[Server] = []
    issues: list[str] = []
    notes: list[str] = []
    for n in range(starts):
        server = Server(tmp, data_dir, env, f"{n}")
        servers.append(server)
        try:
            if args.mode == "early":  # SIGTERM while the workers run their lifespan start-up
                server.wait_started(args.workers, line=STARTING)
                time.sleep(random.uniform(0, args.early))  # a random moment of the start-up
                notes.append(f"SIGTERM with {server.started()} of {args.workers} workers started")
            elif args.mode == "kill":  # one worker SIGKILLed mid-load; uvicorn starts another
                server.wait_started(args.workers)
                victim = server.children()[0]
                answered |= asyncio.run(load(server.url, args.requests, tag=f"{n}-",
                                             at_half=lambda: os.kill(victim, signal.SIGKILL)))
                server.wait_started(args.workers + 1)
                answered |= asyncio.run(load(server.url, args.requests, tag="k-"))  # the new one serves too
            elif args.mode == "crash" and n == 0:  # every process SIGKILLed mid-load, as a machine would stop
                server.wait_started(args.workers)
                answered |= asyncio.run(load(server.url, args.requests, tag=f"{n}-", at_half=server.kill_all))
                server.process.wait()
                server.wait_children_gone()
            else:
                server.wait_started(args.workers)
                answered |= asyncio.run(load(server.url, args.requests, tag=f"{n}-"))
            if server.process.poll() is None:
                held = server.deleted_locks()
                if held:
                    issues.append(f"start {n}: a live worker locks a deleted lock file: {held}")
                code = server.stop()
                if code != 0:
                    issues.append(f"start {n}: exit code {code}")
        except Failure as exc:
            issues.append(f"start {n}: {exc}")
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()
        notes += warnings_in_output(server.text())
        bad = problems_in_output(server.text())
        if bad:
            issues.append(f"start {n}: {len(bad)} error line(s): " + " | ".join(bad[:3]))
    if not issues:
        if set(answered.values()) - {200, 404}:
            issues.append(f"statuses {collections.Counter(answered.values())}")
        counts = sink_counts(data_dir, [s.out for s in servers], sinks, data_dir / "logs.db")
        for name, c in counts.items():
            missing = [t for t in answered if c[t] == 0]
            twice = [t for t in answered if c[t] > 1]
            if missing or twice:
                line = f"{name}: {len(missing)} missing, {len(twice)} more than once of {len(answered)}"
                # After a kill -9, rows still queued for stdout are lost (docs/tracing.md): said, not failed.
                (notes if args.mode in ("kill", "crash") and name == "stdout" else issues).append(line)
    return issues, notes


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=25)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--sinks", default="csv,stdout,turso")
    p.add_argument("--cloud", action="store_true", help="K_SERVICE set (Cloud Run mode)")
    p.add_argument("--mode", choices=("fresh", "existing", "kill", "early", "crash"), default="fresh")
    p.add_argument("--requests", type=int, default=120)
    p.add_argument("--early", type=float, default=1.0, help="early mode: SIGTERM up to this many seconds into start-up")
    p.add_argument("--keep", action="store_true", help="keep the folders of failed runs")
    args = p.parse_args()
    name = f"{args.mode} sinks={args.sinks} {'cloud' if args.cloud else 'local'} workers={args.workers}"
    failures = 0
    for run in range(args.runs):
        tmp = Path(tempfile.mkdtemp(prefix="stress-"))
        t0 = time.monotonic()
        issues, notes = one_run(args, tmp)
        took = time.monotonic() - t0
        if issues:
            failures += 1
            print(f"[{name}] run {run}: FAIL ({took:.1f}s) {tmp}", *issues, sep="\n  ", flush=True)
        else:
            print(f"[{name}] run {run}: ok ({took:.1f}s)", flush=True)
        for note in notes:
            print(f"  note: {note}", flush=True)
        if not issues or not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    print(f"SUMMARY [{name}]: {failures} of {args.runs} runs failed", flush=True)


if __name__ == "__main__":
    main()
