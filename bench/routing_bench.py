"""Microbenchmark: µs per dispatch, Starlette's Router vs handlers.routing.IndexedRouter.

    python -m bench.routing_bench [--number 20000]

In-process, no server, one core. The route table is the app's (create_app) plus
GET /bench/ping appended as bench/bench_app.py does; every route's handler is swapped for an
ASGI no-op so the numbers are the routing alone: the router's loop, the regex matches and the
scope updates. Each dispatch gets a fresh copy of the scope (Router.app writes to it); the cost
of that copy alone is printed as the baseline.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

from starlette.routing import Mount, Route, Router

from app import create_app
from handlers.routing import IndexedRouter
from settings import Settings


async def noop(scope, receive, send) -> None:
    pass


async def ignore(message=None) -> None:  # receive and send for 404 and 405 responses
    pass


async def ping(request) -> None:  # never called: replaced by noop below
    raise AssertionError


def route_table(data_dir: Path) -> list:
    app = create_app(Settings(data_dir=data_dir, secret_key="bench", log_sinks=()))
    routes = [*app.routes, Route("/bench/ping", ping)]
    quiet = []
    for route in routes:
        route = copy.copy(route)
        if isinstance(route, (Route, Mount)):
            route.app = noop
        quiet.append(route)
    return quiet


CASES = [
    ("late static   GET /bench/ping", "GET", "/bench/ping"),
    ("late static   GET /health", "GET", "/health"),
    ("early static  GET /items/import", "GET", "/items/import"),
    ("parametrised  GET /items/12", "GET", "/items/12"),
    ("parametrised  GET /logs/traces/x", "GET", "/logs/traces/x"),
    ("mount         GET /static/app.css", "GET", "/static/app.css"),
    ("wrong method  POST /health (405)", "POST", "/health"),
    ("no route      GET /nope (404)", "GET", "/nope"),
]


def scope_for(method: str, path: str) -> dict:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}


def run(coroutine) -> None:
    # Every handler is a no-op, so the dispatch finishes without suspending: no event loop.
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise AssertionError("dispatch suspended")


def per_call_us(router: Router | None, scope: dict, number: int) -> float:
    app = router.app if router is not None else None
    best = float("inf")
    for _ in range(5):  # best of 5 repeats: the least disturbed by the rest of the machine
        start = time.perf_counter()
        for _ in range(number):
            fresh = dict(scope)
            if app is not None:
                run(app(fresh, ignore, ignore))
        best = min(best, time.perf_counter() - start)
    return best / number * 1e6


def check_same_route(plain: Router, indexed: Router, scope: dict) -> None:
    picked = []
    for router in (plain, indexed):
        fresh = dict(scope)
        run(router.app(fresh, ignore, ignore))
        picked.append(fresh.get("route"))
    assert picked[0] is picked[1], picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        routes = route_table(Path(tmp))
    plain, indexed = Router(routes), IndexedRouter(routes)
    baseline = per_call_us(None, scope_for("GET", "/"), args.number)
    print(f"{len(routes)} routes; µs per dispatch, best of 5 x {args.number}; scope copy alone {baseline:.2f} µs")
    print("(404 and 405 include building and sending Starlette's plain-text response)")
    print(f"{'case':36} {'Router':>8} {'Indexed':>8} {'saved':>8}")
    for label, method, path in CASES:
        scope = scope_for(method, path)
        check_same_route(plain, indexed, scope)
        old = per_call_us(plain, scope, args.number)
        new = per_call_us(indexed, scope, args.number)
        print(f"{label:36} {old:8.2f} {new:8.2f} {old - new:8.2f}")


if __name__ == "__main__":
    main()
