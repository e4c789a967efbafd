"""Build the ASGI app from settings: routes, middleware (outermost first) and the lifespan.

`uvicorn app:app` serves `app`, built from the environment. Tests call create_app() with
their own Settings.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from jinja2_fragments.starlette import Jinja2Blocks
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from handlers import auth, health, items, logs
from handlers._web import render
from handlers.ratelimit import LoginLimits
from middleware.csrf import CsrfMiddleware
from middleware.security_headers import SecurityHeadersMiddleware
from middleware.session import SessionMiddleware
from middleware.size_limit import SizeLimitMiddleware
from settings import Settings
from log.queries import ROLLUPS_PATH, sql_statements
from log.turso import open_log_database
from store.sqlite import SqliteStore

VIEWS = Path(__file__).parent / "views"
logger = logging.getLogger("app")


def open_store(settings: Settings):
    return SqliteStore(settings.data_dir / "app.db")


def make_lifespan(settings: Settings):
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict]:
        for warning in settings.warnings:
            logger.warning(warning)
        store = open_store(settings)
        # Log explorer (lead: fold into the log-sink wiring). Schema + rollups in one transaction.
        http = httpx.AsyncClient()
        log_db = open_log_database(settings.log_database_url, settings.turso_auth_token or None, http)
        ddl = (Path(__file__).parent / "log" / "schema.sql").read_text() + ROLLUPS_PATH.read_text()
        await log_db.transaction([(s, ()) for s in sql_statements(ddl)])
        try:
            yield {
                "log_db": log_db,
                "settings": settings,
                "store": store,
                "templates": Jinja2Blocks(directory=VIEWS),
                "login_limits": LoginLimits(clock=time.monotonic),
                "backend": "sqlite",
                "demo_mode": settings.on_cloud_run and not settings.supabase_url,
            }
        finally:
            await store.close()
            await http.aclose()
            if hasattr(log_db, "close"):
                log_db.close()

    return lifespan


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return render(request, "not_found.html", status=404, block="not_found")
    return Response(
        f"<p role=\"alert\">{exc.status_code}: {exc.detail}</p>",
        status_code=exc.status_code,
        media_type="text/html",
        headers=exc.headers,
    )


def create_app(settings: Settings) -> Starlette:
    settings = settings.with_secret_key()
    routes = [
        *items.routes,
        *logs.routes,
        *auth.routes,
        *health.routes,
        Mount("/static", StaticFiles(directory=VIEWS / "static"), name="static"),
    ]
    middleware = [
        Middleware(
            SizeLimitMiddleware,
            max_bytes=settings.max_request_bytes,
            overrides={"/items/import": settings.max_import_bytes},
        ),
        Middleware(SecurityHeadersMiddleware),
        Middleware(
            SessionMiddleware,
            secret_key=settings.secret_key,
            max_age=settings.session_max_age,
            https_only=settings.https_only,
        ),
        Middleware(CsrfMiddleware),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=make_lifespan(settings),
        exception_handlers={HTTPException: http_error},
    )


def __getattr__(name: str) -> Starlette:
    # `uvicorn app:app` reads settings only when it asks for `app`, so importing this module
    # (tests, the CLI) has no side effects such as creating DATA_DIR or a secret key.
    if name == "app":
        return create_app(Settings.from_env())
    raise AttributeError(name)
