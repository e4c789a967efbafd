"""Build the ASGI app from settings: routes, middleware (outermost first) and the lifespan.

`uvicorn app:app` serves `app`, built from the environment. Tests call create_app() with
their own Settings.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

import httpx

from handlers import auth, health, imports, items
from handlers import logs as explorer
from handlers._web import redirect, render
from handlers.import_runs import ImportRuns
from handlers.ratelimit import LoginLimits, SignupLimits
from handlers.routing import IndexedRouter
from handlers.templating import make_templates
from log import Tracing, TracingMiddleware, configure_process_logging
from middleware.csrf import CsrfMiddleware
from middleware.security_headers import SecurityHeadersMiddleware
from middleware.session import SessionMiddleware
from middleware.size_limit import SizeLimitMiddleware
from middleware.session import set_session
from settings import DEMO_WARNING, LOGS_PER_INSTANCE_WARNING, Settings, config_summary, summary_line
from store.base import AuthError, StoreUnavailable
from store.sqlite import SqliteStore
from store.supabase import SupabaseStore

VIEWS = Path(__file__).parent / "views"
logger = logging.getLogger("app")
# Served without a session: no cookie read or minted, no session check against the store.
SESSIONLESS_PREFIXES = ("/static", "/health")
# uvicorn's exit code for a worker that could not start (uvicorn.config.STARTUP_FAILURE).
STARTUP_FAILURE = 3


def open_store(settings: Settings, http: httpx.AsyncClient) -> tuple[str, SqliteStore | SupabaseStore]:
    if settings.supabase_url and settings.supabase_anon_key:
        store = SupabaseStore(
            settings.supabase_url, settings.supabase_anon_key, http, admin_emails=settings.admin_emails
        )
        return "supabase", store
    return "sqlite", SqliteStore(settings.data_dir / "app.db", session_max_age=settings.session_max_age)


def make_lifespan(settings: Settings, tracing: Tracing):
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict]:
        for warning in settings.warnings:
            logger.warning(warning)
        # One HTTP client for every outbound call (Supabase, Turso); it carries no user state.
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))
        backend, store = open_store(settings, http)
        demo_mode = settings.on_cloud_run and backend == "sqlite"
        summary = config_summary(settings, backend=backend, demo_mode=demo_mode)
        logger.info(summary_line(summary), extra={"fields": summary})
        if demo_mode:
            logger.warning(DEMO_WARNING)
        if settings.logs_per_instance:
            logger.warning(LOGS_PER_INSTANCE_WARNING)
        await tracing.open(http)
        try:
            yield {
                "settings": settings,
                "store": store,
                "templates": make_templates(VIEWS, reload=settings.template_reload),
                "login_limits": LoginLimits(clock=time.monotonic),
                "signup_limits": SignupLimits(
                    clock=time.monotonic,
                    per_ip=settings.signup_limit_per_ip,
                    total=settings.signup_limit_per_hour,
                ),
                "import_runs": ImportRuns(clock=time.monotonic),
                "backend": backend,
                "demo_mode": demo_mode,
                "logs_per_instance": settings.logs_per_instance,
                "tracing": tracing,
            }
        finally:
            await tracing.aclose()
            await store.close()
            await http.aclose()

    return lifespan


def user_id_of(scope) -> str | None:
    user = scope.get("state", {}).get("user")
    return user.id if user is not None else None


# What each error page is headed with; the message says what happened and what to do.
TITLES = {
    400: "That did not work",
    403: "Not allowed",
    405: "Not allowed",
    413: "Too large",
    431: "Too large",
    429: "Too many attempts",
    503: "Temporarily unavailable",
}
FRIENDLY = {
    405: "This page does not accept that kind of request.",
    500: "Something went wrong on our side. Please try again in a moment.",
}


def error_context(state: dict, status: int, message: str) -> dict:
    """error.html's context: a heading for the status, the message, and the trace id as the
    reference a user can quote (request.state.trace_id, set by the tracing layer)."""
    return {"title": TITLES.get(status, "Something went wrong"), "message": message,
            "reference": state.get("trace_id", "")}


def error_page(status: int, message: str) -> ASGIApp:
    """The error page as an ASGI app: for the middleware that refuse a request before any
    handler runs (413, 403) and for the tracing layer's crash hook. htmx gets the alert alone."""

    async def page(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        context = error_context(scope.get("state", {}), status, message)
        await render(request, "error.html", context, status=status, block="error")(scope, receive, send)

    return page


async def store_unavailable(request: Request, exc: Exception) -> Response:
    message = "The data service is unreachable right now. Please try again shortly."
    return render(request, "error.html", error_context(request.scope.get("state", {}), 503, message),
                  status=503, block="error")


async def forbidden(request: Request, exc: Exception) -> Response:
    context = error_context(request.scope.get("state", {}), 403, "You are not allowed to do that.")
    return render(request, "error.html", context, status=403, block="error")


async def session_expired(request: Request, exc: Exception) -> Response:
    set_session(request, None)
    return redirect(request, "/login")


# An unhandled error's page: the tracing layer calls it (the error is already logged).
crash_page = error_page(500, FRIENDLY[500])


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return render(request, "not_found.html", status=404, block="not_found")
    message = FRIENDLY.get(exc.status_code, exc.detail)
    context = error_context(request.scope.get("state", {}), exc.status_code, message)
    response = render(request, "error.html", context, status=exc.status_code, block="error")
    response.headers.update(exc.headers or {})
    return response


def create_app(settings: Settings) -> Starlette:
    settings = settings.with_secret_key()
    tracing = Tracing(settings.tracing)
    routes = [
        *imports.routes,
        *items.routes,
        *explorer.routes,
        *auth.routes,
        *health.routes,
        Mount("/static", StaticFiles(directory=VIEWS / "static"), name="static"),
    ]
    middleware = [
        # Outermost, so responses made by the middleware below (413, 403, 503, crash 500s)
        # carry them too.
        Middleware(SecurityHeadersMiddleware),
        # Next, so that 413s and crashes get their log row too. No sinks (LOG_SINKS=""):
        # trace ids only, no capture work per request.
        Middleware(TracingMiddleware, tracing=tracing, user_id_of=user_id_of, on_crash=crash_page),
        Middleware(
            SizeLimitMiddleware,
            max_bytes=settings.max_request_bytes,
            overrides={"/items/import": settings.max_import_bytes},
            page=error_page,
        ),
        Middleware(
            SessionMiddleware,
            secret_key=settings.secret_key,
            max_age=settings.session_max_age,
            https_only=settings.https_only,
            skip_prefixes=SESSIONLESS_PREFIXES,
        ),
        Middleware(CsrfMiddleware, page=error_page),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=make_lifespan(settings, tracing),
        exception_handlers={
            HTTPException: http_error,
            StoreUnavailable: store_unavailable,
            PermissionError: forbidden,
            AuthError: session_expired,
        },
    )
    # Same routes, lifespan and slash redirects, but dispatch tries only the routes that can
    # match the path instead of all of them in turn (handlers/routing.py). Set before the first
    # request, when Starlette builds its middleware stack around app.router.
    app.router = IndexedRouter(app.router.routes, lifespan=app.router.lifespan_context)
    return app


def __getattr__(name: str) -> Starlette:
    # `uvicorn app:app` reads settings only when it asks for `app`, so importing this module
    # (tests, the CLI) has no side effects such as creating DATA_DIR or a secret key.
    if name == "app":
        try:
            settings = Settings.from_env()
            # The process entry point, so the one place that configures logging (process-wide).
            configure_process_logging(cloud_run=settings.on_cloud_run)
            return create_app(settings)
        except SystemExit as exc:
            if not isinstance(exc.code, str):
                raise
            # A setting stops start-up: its one line, then uvicorn's start-up failure code, so
            # with several workers (WEB_CONCURRENCY) uvicorn stops instead of restarting them.
            print(exc.code, file=sys.stderr, flush=True)
            raise SystemExit(STARTUP_FAILURE) from None
    raise AttributeError(name)
