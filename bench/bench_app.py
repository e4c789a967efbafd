"""The production app plus one trivial JSON route, for the overhead benchmarks only.

    uvicorn bench.bench_app:app

`create_app(Settings.from_env())` as `uvicorn app:app` builds it (every middleware, the log
pipeline), with GET /bench/ping appended: a route that does no work of its own, so its
requests/s measure the middleware stack and the logging. Production code stays untouched.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app import create_app
from log import configure_process_logging
from settings import Settings


async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def build() -> Starlette:
    settings = Settings.from_env()
    configure_process_logging(cloud_run=settings.on_cloud_run)
    app = create_app(settings)
    app.router.routes.append(Route("/bench/ping", ping))
    # bench/layer_costs.py: BENCH_DROP_MIDDLEWARE=SessionMiddleware,... measures the app without
    # those layers (before the first request, when Starlette builds the stack).
    drop = {n for n in os.environ.get("BENCH_DROP_MIDDLEWARE", "").split(",") if n}
    app.user_middleware = [m for m in app.user_middleware if m.cls.__name__ not in drop]
    return app


def __getattr__(name: str) -> Starlette:
    # Built when uvicorn asks for it, like app.py: importing this module has no side effects.
    if name == "app":
        return build()
    raise AttributeError(name)
