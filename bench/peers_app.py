"""The hello world (bench/hello_app.py's route) wrapped by one logging layer, for bench/peers.py.

    PEERS_LAYER=otel PEERS_OUT=/tmp/spans.jsonl uvicorn bench.peers_app:app

PEERS_LAYER picks the layer, as a user of each would set it up:
  hello      no layer: the bare Starlette hello world
  otel       OpenTelemetry's ASGI middleware (opentelemetry-instrumentation-asgi, its defaults) and
             the SDK's TracerProvider with a BatchSpanProcessor exporting every span as one JSON
             line to PEERS_OUT
  structlog  asgi-correlation-id (X-Request-ID) plus an access-log middleware writing one structlog
             JSON line per request to PEERS_OUT: method, path, status, duration, request id
  log        this project's TracingMiddleware, configured from the environment (LOG_SINKS,
             DATA_DIR, TURSO_DATABASE_URL, ...): headers and bodies captured and redacted
Each is the same route and the same Starlette app; only the middleware list and the lifespan
(which flushes what the layer buffers) differ. Bench-only: the peers are test extras.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from bench.hello_app import ping

ROUTES = [Route("/bench/ping", ping)]


def hello() -> Starlette:
    return Starlette(routes=ROUTES)


def otel(out_path: str) -> Starlette:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    out = open(out_path, "a", encoding="utf-8")  # noqa: SIM115 (closed by the lifespan)
    provider = TracerProvider()
    exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    provider.add_span_processor(BatchSpanProcessor(exporter))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        provider.shutdown()  # exports what the batch processor still holds
        out.close()

    return Starlette(routes=ROUTES, middleware=[Middleware(OpenTelemetryMiddleware, tracer_provider=provider)],
                     lifespan=lifespan)


class AccessLog:
    """Pure ASGI: one structlog line per HTTP request, after the response."""

    def __init__(self, app: Any) -> None:
        import structlog
        from asgi_correlation_id import correlation_id

        self.app, self.log, self.request_id = app, structlog.get_logger("access"), correlation_id

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.log.info("request", method=scope["method"], path=scope["path"], status=status,
                          duration_ms=round((time.perf_counter() - start) * 1000, 3),
                          request_id=self.request_id.get())


def structlog_layer(out_path: str) -> Starlette:
    import structlog
    from asgi_correlation_id import CorrelationIdMiddleware

    out = open(out_path, "a", encoding="utf-8")  # noqa: SIM115 (closed by the lifespan)
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        out.close()

    return Starlette(routes=ROUTES, middleware=[Middleware(CorrelationIdMiddleware), Middleware(AccessLog)],
                     lifespan=lifespan)


def log_layer() -> Starlette:
    from log import Tracing, TracingConfig, TracingMiddleware

    tracing = Tracing(TracingConfig.from_env(os.environ))
    return Starlette(routes=ROUTES, middleware=[Middleware(TracingMiddleware, tracing=tracing)],
                     lifespan=tracing.lifespan)


def build() -> Starlette:
    layer = os.environ.get("PEERS_LAYER", "hello")
    if layer == "hello":
        return hello()
    if layer == "otel":
        return otel(os.environ["PEERS_OUT"])
    if layer == "structlog":
        return structlog_layer(os.environ["PEERS_OUT"])
    if layer == "log":
        return log_layer()
    raise SystemExit(f"PEERS_LAYER must be hello, otel, structlog or log; got {layer!r}")


def __getattr__(name: str) -> Starlette:
    # Built when uvicorn asks for it: importing this module has no side effects.
    if name == "app":
        return build()
    raise AttributeError(name)
