"""Shared fixtures: the app in-process (httpx + ASGITransport, lifespan run by hand) and a
real uvicorn server on a free loopback port for browser tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
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

ROOT = Path(__file__).resolve().parent.parent
CSRF_RE = re.compile(r'"X-CSRF-Token": "([^"]+)"')


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_settings(tmp_path: Path, **overrides) -> AppSettings:
    base = {"data_dir": tmp_path, "secret_key": "test-secret", "log_sinks": ()}
    return AppSettings(**{**base, **overrides})


class AppClient(httpx.AsyncClient):
    """An httpx client for the in-process app that knows the page's CSRF token."""

    csrf: str = ""

    async def refresh_csrf(self) -> str:
        page = await self.get("/")
        match = CSRF_RE.search(page.text)
        assert match, page.text[:500]
        self.csrf = match.group(1)
        return self.csrf

    async def signup(self, email: str, password: str = "correct horse battery") -> httpx.Response:
        await self.refresh_csrf()
        response = await self.post(
            "/signup", data={"email": email, "password": password, "csrf_token": self.csrf}
        )
        await self.refresh_csrf()
        return response

    def htmx(self, **extra: str) -> dict[str, str]:
        return {"HX-Request": "true", "X-CSRF-Token": self.csrf, **extra}


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, url: str, process: subprocess.Popen, data_dir: Path) -> None:
        self.url = url
        self.process = process
        self.data_dir = data_dir


def start_server(data_dir: Path, env: dict[str, str] | None = None) -> LiveServer:
    port = free_port()
    full_env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "SECRET_KEY": "browser-test-secret",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    full_env.pop("K_SERVICE", None)
    with open(data_dir / "server.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((data_dir / "server.log").read_text())
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return LiveServer(url, process, data_dir)
        except httpx.TransportError:
            time.sleep(0.05)  # polling for readiness, not waiting for a result
    process.kill()
    raise RuntimeError("server did not start:\n" + (data_dir / "server.log").read_text())


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
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
