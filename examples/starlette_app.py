"""Tracing in a bare Starlette app: one api_logs row per request, a two-step task per page.

    LOG_DIR=./logs DATA_DIR=./var uvicorn examples.starlette_app:app
"""

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from log import Tracing, TracingConfig, TracingMiddleware

tracing = Tracing(TracingConfig.from_env(os.environ))


async def home(request: Request) -> JSONResponse:
    task = tracing.task(request.state.trace_id, "Greeting")
    async with task.step("Lookup", input={"path": request.url.path}) as step:
        step.output = {"name": "world"}
    async with task.step("Render") as step:
        step.progress({"done": 1, "total": 1})
        step.output = {"chars": 11}
    return JSONResponse({"hello": "world", "trace_id": request.state.trace_id})


app = Starlette(
    routes=[Route("/", home)],
    middleware=[Middleware(TracingMiddleware, tracing=tracing)],
    lifespan=tracing.lifespan,
)
