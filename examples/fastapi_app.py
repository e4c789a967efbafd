"""Tracing in a FastAPI app: one api_logs row per request, a two-step task per page.

    LOG_DIR=./logs DATA_DIR=./var uvicorn examples.fastapi_app:app
"""

import os

from fastapi import FastAPI, Request

from log import Tracing, TracingConfig, TracingMiddleware

tracing = Tracing(TracingConfig.from_env(os.environ))
app = FastAPI(lifespan=tracing.lifespan)
app.add_middleware(TracingMiddleware, tracing=tracing)


@app.get("/")
async def home(request: Request) -> dict[str, str]:
    task = tracing.task(request.state.trace_id, "Greeting")
    async with task.step("Lookup", input={"path": request.url.path}) as step:
        step.output = {"name": "world"}
    async with task.step("Render") as step:
        step.progress({"done": 1, "total": 1})
        step.output = {"chars": 11}
    return {"hello": "world", "trace_id": request.state.trace_id}
