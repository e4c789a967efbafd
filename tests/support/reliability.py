"""Reliability harness: a real uvicorn app process, a restartable Hrana (Turso) stand-in, a
fixed-rate load generator and the readers that count what reached each sink.

Shared by tests/reliability/test_*.py, tests/app/test_security.py and bench/fault_latency.py.
Scale with RELIABILITY_SCALE: 0.5 by default (the suite's run; every fault and kill still
happens, in the shortest load phases), 1 doubles the load phases, 3 is the long run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import httpx
import msgspec

from log.core.csv_codec import header_line
from log.sinks.csv_sink import read_rows
from log.core.rows import TABLES
from tests.support.app import AppClient, free_port
from tests.support.hrana_server import HranaServer, running

ROOT = Path(__file__).resolve().parent.parent.parent
SCALE = float(os.environ.get("RELIABILITY_SCALE", "0.5") or "0.5")


def scaled(seconds: float, minimum: float = 1.0) -> float:
    return max(minimum, seconds * SCALE)


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)  # polling interval while waiting for a condition


async def async_wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await anyio.sleep(0.05)  # polling interval while waiting for a condition


# -- the app under test, as a real uvicorn process ------------------------------------------


class AppProcess:
    """uvicorn app:app in a subprocess. Its output goes through a pipe (never a file, so a
    file-size limit or a full disk given to the server cannot eat its error reports)."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url
        self._out: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            self._out.append(line)

    def output(self) -> str:
        return b"".join(self._out).decode("utf-8", "replace")

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=5, verify=False).json()

    def sink_stats(self, name: str) -> dict:
        return self.health()["logs"]["sinks"][name]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


def start_app(
    data_dir: Path,
    env: dict[str, str],
    *,
    args: tuple[str, ...] = (),
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = 30.0,
    scheme: str = "http",
) -> AppProcess:
    """scheme="https" when `args` carry --ssl-keyfile/--ssl-certfile (self-signed: not verified)."""
    port = free_port()
    full_env = {**os.environ, "DATA_DIR": str(data_dir), "SECRET_KEY": "reliability-secret",
                "PYTHONUNBUFFERED": "1", **env}
    full_env.pop("K_SERVICE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=preexec_fn,
    )
    app = AppProcess(process, f"{scheme}://127.0.0.1:{port}")

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError("server exited:\n" + app.output())
        try:
            return httpx.get(f"{app.url}/health", timeout=1, verify=False).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, timeout, "the app to answer /health")
    except BaseException:
        app.stop(signal.SIGKILL)
        raise
    return app


@contextlib.contextmanager
def app_process(data_dir: Path, env: dict[str, str], **kwargs) -> Iterator[AppProcess]:
    app = start_app(data_dir, env, **kwargs)
    try:
        yield app
    finally:
        app.stop()


# -- the Turso stand-in, which can go down and come back on the same port -------------------


UVICORN_LOGGERS = ("uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class Remote:
    """A HranaServer on a fixed loopback port that can be taken down and brought back."""

    def __init__(self, db_path: Path, token: str | None = None) -> None:
        self.db_path = db_path
        self.server = HranaServer(str(db_path), token=token)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._stack: contextlib.ExitStack | None = None

    def up(self) -> None:
        if self._stack is None:
            stack = contextlib.ExitStack()
            # uvicorn.Config sets the levels of the uvicorn.* loggers of this (the pytest)
            # process; put them back afterwards so later tests see the defaults.
            for name in UVICORN_LOGGERS:
                stack.callback(logging.getLogger(name).setLevel, logging.getLogger(name).level)
            stack.enter_context(running(self.server, port=self.port))
            self._stack = stack

    def down(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    def fail(self, kind: str, *, delay: float = 0.0) -> None:
        """Every pipeline request fails with `kind` until clear()."""
        self.server.inject(kind, 1_000_000, delay=delay)

    def clear(self) -> None:
        self.server.faults.clear()

    def __enter__(self) -> Remote:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()
        self.down()

    def ids(self, table: str = "api_logs") -> list[int]:
        return db_ids(self.db_path, table)


class RemoteProcess(Remote):
    """The same stand-in in a process of its own, for latency measurements: in a thread of the
    load generator's process it would compete with it for the GIL and skew the numbers.
    Faults go to it over a control route (POST /_faults) that only this wrapper serves."""

    def __init__(self, db_path: Path, token: str | None = None) -> None:
        self.db_path, self.token = db_path, token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def up(self) -> None:
        if self.process is None:
            code = f"from tests.support.reliability import serve_remote; serve_remote({str(self.db_path)!r}, {self.port}, {self.token!r})"
            self.process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)

            def ready() -> bool:
                try:
                    return httpx.get(f"{self.url}/v2", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, 15, "the Hrana stand-in process")

    def down(self) -> None:
        if self.process is not None:
            process, self.process = self.process, None
            process.terminate()
            process.wait(10)

    def _control(self, **params: str) -> None:
        httpx.post(f"{self.url}/_faults", params=params, timeout=5).raise_for_status()

    def fail(self, kind: str, *, delay: float = 0.0) -> None:
        self._control(kind=kind, delay=str(delay))

    def clear(self) -> None:
        if self.process is not None:
            self._control(kind="clear")


def serve_remote(db_path: str, port: int, token: str | None) -> None:
    """RemoteProcess's child: the stand-in plus the fault control route."""
    import uvicorn

    server = HranaServer(db_path, token=token)

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/_faults":
            params = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
            if params.get("kind") == "clear":
                server.faults.clear()
            else:
                server.inject(params["kind"], 1_000_000, delay=float(params.get("delay", 0)))
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await server(scope, receive, send)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off", http="h11")


def db_ids(db_path: Path, table: str = "api_logs", column: str = "id") -> list:
    """Every id (or another column) in a log table of a SQLite file (the stand-in's, or a
    file: log database)."""
    if not db_path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            return [r[0] for r in conn.execute(f"SELECT {column} FROM {table}")]
        except sqlite3.OperationalError:  # the sink has not created the table yet
            return []


def csv_rows(log_dir: Path, table: str = "api_logs") -> list:
    """Every row of the table's CSV files; any line that does not parse back fails the test."""
    errors: list[str] = []

    def on_error(path: Path, exc: Exception) -> None:
        # A file the sink has just created and not yet given its header is not an error.
        if not (path.exists() and path.stat().st_size < len(header_line(TABLES[table]))):
            errors.append(f"{path.name}: {exc}")

    rows = list(read_rows(log_dir, table, on_error=on_error))
    assert not errors, errors[:5]
    return rows


# -- load -----------------------------------------------------------------------------------


class Result(msgspec.Struct):
    kind: str
    started: float  # monotonic
    latency: float | None = None
    status: int | None = None
    trace_id: str | None = None
    error: str | None = None


@contextlib.asynccontextmanager
async def signed_in(url: str, email: str = "load@example.com") -> AsyncIterator[AppClient]:
    """A client signed up and in (three requests: the page, the sign-up, the page again)."""
    async with AppClient(base_url=url, timeout=httpx.Timeout(30.0),
                         limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)) as client:
        response = await client.signup(email)
        assert response.status_code in (200, 303), response.text[:300]
        yield client


MIX = ("list", "create", "search")


def mixed_request(client: AppClient, i: int, mix: tuple[str, ...] = MIX) -> tuple[str, Callable]:
    """Request i of the mix: the item list, a create, a search (all signed in)."""
    kind = mix[i % len(mix)]
    if kind == "list":
        return kind, lambda: client.get("/items")
    if kind == "create":
        return kind, lambda: client.post(
            "/items", data={"name": f"load item {i}", "description": "made under load", "quantity": str(i)},
            headers=client.htmx(),
        )
    return kind, lambda: client.get("/items", params={"q": f"item {i % 7}"}, headers={"HX-Request": "true"})


async def run_load(
    client: AppClient,
    *,
    rate: float,
    duration: float,
    results: list[Result],
    on_progress: Callable[[float], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    mix: tuple[str, ...] = MIX,
) -> None:
    """Open-loop load: request i starts at i / rate seconds, whether or not earlier ones are done,
    so a slow server shows up as latency, not as a lower rate. Exactly rate * duration requests
    (fewer only if `stop()` turns true). `on_progress(fraction)` runs between requests."""
    total = int(rate * duration)
    t0 = time.monotonic()

    async def one(i: int) -> None:
        kind, call = mixed_request(client, i, mix)
        result = Result(kind=kind, started=time.monotonic())
        results.append(result)
        try:
            response = await call()
            result.status = response.status_code
            result.trace_id = response.headers.get("x-trace-id")
        except httpx.HTTPError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        result.latency = time.monotonic() - result.started

    async with anyio.create_task_group() as tg:
        for i in range(total):
            if stop():
                break
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)  # the schedule of an open-loop generator, not a wait for a result
            if on_progress is not None:
                on_progress((time.monotonic() - t0) / duration)
            tg.start_soon(one, i)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]
