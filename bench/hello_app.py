"""A bare Starlette hello world: the ceiling the app's trivial JSON route is compared with.

    uvicorn bench.hello_app:app

No middleware, no lifespan, one route: what Starlette + uvicorn cost per request on this machine.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


app = Starlette(routes=[Route("/bench/ping", ping)])
