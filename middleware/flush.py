"""LOG_FLUSH=request: write due log batches at the end of each request.

On Cloud Run with request-based billing the CPU is throttled between requests, so a
background flusher stalls; this mode does the flushing while the CPU is still ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send


class FlushAfterRequestMiddleware:
    def __init__(self, app: ASGIApp, *, flush: Callable[[], Awaitable[None]]) -> None:
        self.app = app
        self.flush = flush

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                await self.flush()
