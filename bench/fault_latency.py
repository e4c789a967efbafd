"""User-facing latency before vs during a Turso fault: is logging really off the request path?

Starts the app (real uvicorn, LOG_SINKS=csv,turso) against the local Hrana stand-in, drives a
fixed-rate mix of signed-in requests (item list, create, search) and prints p50/p99 for a
healthy phase and for each fault phase (stand-in down, answering 500, answering 429, stalling
5 s per request). Target: p99 during a fault <= 2 x p99 before. Printed, never asserted.

    .venv/bin/python -m bench.fault_latency            # 10 s per phase at 50 req/s
    .venv/bin/python -m bench.fault_latency --smoke    # 2 s per phase, one fault: a quick check
    .venv/bin/python -m bench.fault_latency --faults down,stall --seconds 20
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import anyio

from tests.support.reliability import RemoteProcess, Result, app_process, percentile, run_load, signed_in

FAULTS = ("down", "500", "429", "stall")


def start_fault(remote: RemoteProcess, fault: str) -> None:
    if fault == "down":
        remote.down()
    elif fault == "stall":
        remote.fail("delay", delay=5.0)
    else:
        remote.fail(fault)


def end_fault(remote: RemoteProcess) -> None:
    remote.up()
    remote.clear()


def row(label: str, results: list[Result], base_p99: float | None) -> str:
    ok = [r.latency * 1000 for r in results if r.latency is not None and r.error is None and r.status == 200]
    failed = len(results) - len(ok)
    p50, p99 = percentile(ok, 50), percentile(ok, 99)
    ratio = f"{p99 / base_p99:5.2f}x" if base_p99 else "     -"
    return f"{label:<10} {len(results):>6} {failed:>6} {p50:>9.1f} {p99:>9.1f} {ratio}"


async def bench(rate: float, seconds: float, faults: tuple[str, ...], warmup: float) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        # The stand-in runs in a process of its own: in this one it would slow the load generator.
        with RemoteProcess(tmp_path / "turso.db") as remote:
            env = {"LOG_SINKS": "csv,turso", "LOG_DIR": str(tmp_path / "logs"), "TURSO_DATABASE_URL": remote.url}
            with app_process(tmp_path / "data", env, args=("--no-access-log",)) as app:
                async with signed_in(app.url) as client:
                    await run_load(client, rate=rate, duration=warmup, results=[])
                    before: list[Result] = []
                    await run_load(client, rate=rate, duration=seconds, results=before)
                    ok = [r.latency for r in before if r.latency is not None]
                    base_p99 = percentile(ok, 99) * 1000
                    print(f"{rate:.0f} req/s, {seconds:.0f} s per phase; latency in ms (client side, loopback)")
                    print(f"{'phase':<10} {'sent':>6} {'failed':>6} {'p50':>9} {'p99':>9} p99/before")
                    print(row("before", before, None))
                    worst = 0.0
                    for fault in faults:
                        during: list[Result] = []
                        await anyio.to_thread.run_sync(start_fault, remote, fault)
                        try:
                            await run_load(client, rate=rate, duration=seconds, results=during)
                        finally:
                            await anyio.to_thread.run_sync(end_fault, remote)
                        print(row(fault, during, base_p99))
                        good = [r.latency for r in during if r.latency is not None and r.status == 200]
                        failed = len(during) - len(good)
                        worst = max(worst, percentile(good, 99) * 1000 / base_p99 if not failed else float("inf"))
                    stats = app.sink_stats("turso")
                    print(f"turso sink: failed_batches={stats['failed_batches']} queued={stats['queued']}"
                          f" dropped={stats['dropped']}")
        met = worst <= 2.0
        print(f"target p99 during <= 2 x before: {'met' if met else 'NOT met'} (worst {worst:.2f}x)")
        return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 s per phase, one fault (a quick check)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase (default 10)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, from {','.join(FAULTS)}")
    args = parser.parse_args(argv)
    faults = tuple(f for f in args.faults.split(",") if f)
    if unknown := [f for f in faults if f not in FAULTS]:
        parser.error(f"unknown faults: {unknown}")
    seconds, warmup = (2.0, 1.0) if args.smoke else (args.seconds, 3.0)
    faults = faults[:1] if args.smoke and args.faults == ",".join(FAULTS) else faults
    anyio.run(bench, args.rate, seconds, faults, warmup)
    return 0  # a report, not a test: the numbers are printed, never turned into a failure


if __name__ == "__main__":
    raise SystemExit(main())
