"""GET /health: liveness plus the tracing package's counters (JSON, no auth)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def health(request: Request) -> JSONResponse:
    logs = request.state.tracing.stats()
    return JSONResponse({"status": "ok", "backend": request.state.backend, "logs": logs})


routes = [Route("/health", health, methods=["GET"])]
