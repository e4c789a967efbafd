"""The app under test: its test settings, an in-process client that knows the page's CSRF
token, and a real uvicorn server on a free loopback port (browser tests, benchmarks)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from starlette.routing import Route

from app import create_app
from settings import Settings as AppSettings

ROOT = Path(__file__).resolve().parents[2]
CSRF_RE = re.compile(r'"X-CSRF-Token": "([^"]+)"')


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, url: str, process: subprocess.Popen, data_dir: Path) -> None:
        self.url = url
        self.process = process
        self.data_dir = data_dir


def start_server(data_dir: Path, env: dict[str, str] | None = None, factory: str | None = None) -> LiveServer:
    """uvicorn serving `app:app`, or the app a `module:function` factory builds; as on a laptop:
    K_SERVICE only when `env` sets it, never from our environment."""
    port = free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if k != "K_SERVICE"},
        "DATA_DIR": str(data_dir),
        "SECRET_KEY": "browser-test-secret",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    with open(data_dir / "server.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *(["--factory", factory] if factory else ["app:app"]),
             "--host", "127.0.0.1", "--port", str(port)],
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


async def _crash(request):
    raise RuntimeError("the handler fell over")


def app_with_a_crash_route():
    """uvicorn --factory entry point: the real app from the environment plus `/boom` (GET and
    POST), which raises: the app itself has no route that crashes."""
    app = create_app(AppSettings.from_env(env_file=None))
    app.router.routes.append(Route("/boom", _crash, methods=["GET", "POST"]))
    return app
