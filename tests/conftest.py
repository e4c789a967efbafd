"""Shared fixtures: the app in-process (httpx + ASGITransport, lifespan run by hand) and a
real uvicorn server on a free loopback port for browser tests. The helpers behind them live in
tests/support/app.py, where the benchmarks can import them too."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

from app import create_app
from settings import Settings as AppSettings
from tests.support.app import ROOT, AppClient, LiveServer, make_settings, start_server, stop_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def make_client(tmp_path: Path):
    """make_client(settings=None) → an AppClient on one app instance shared by all clients."""
    apps: dict = {}
    clients: list[AppClient] = []
    stack = []

    async def make(settings: AppSettings | None = None) -> AppClient:
        if "app" not in apps:
            app = create_app(settings or make_settings(tmp_path))
            ctx = app.router.lifespan_context(app)
            state = await ctx.__aenter__()
            stack.append(ctx)

            async def with_state(scope, receive, send):
                # What uvicorn does: a shallow copy of the lifespan state for every request.
                scope["state"] = dict(state)
                await app(scope, receive, send)

            apps["app"] = with_state
        client = AppClient(transport=httpx.ASGITransport(apps["app"]), base_url="http://testserver")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
    for ctx in stack:
        await ctx.__aexit__(None, None, None)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    # One server per module (a start costs seconds on a busy machine): its tests sign up users
    # of their own, and each user sees only their own items.
    server = start_server(tmp_path_factory.mktemp("live"))
    yield server
    stop_server(server)


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    # Debian's Chromium, never a downloaded browser; no background traffic to Google hosts.
    return {
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture
def artifacts() -> Path:
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


def pytest_sessionfinish(session, exitstatus) -> None:
    # A test that cannot run here is a failure to fix, not to skip.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped") and session.exitstatus == 0:
        reporter.write_line("FAILED: skipped tests are not allowed", red=True)
        session.exitstatus = 1


def pytest_collection_modifyitems(config, items) -> None:
    # Playwright's sync API keeps an event loop running in the main thread for the whole
    # session once a browser starts; anyio tests cannot start theirs after that. So every test
    # that drives the browser runs last.
    for item in items:
        if "browser_type_launch_args" in getattr(item, "fixturenames", ()):  # needs Playwright
            item.add_marker(pytest.mark.browser)
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
