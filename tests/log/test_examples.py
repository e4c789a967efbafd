"""The tracing package in other apps: examples/ served by real uvicorn, rows read back.

Each example (bare Starlette, FastAPI) is configured from the environment only, as a team
would run it. Every request must be one api_logs row in the CSV file and in the log database
(`file:` SQLite, and Turso over HTTP against the local Hrana server), with the example's task
rows under the same trace id, all flushed by the time the server has exited on SIGTERM.

`test_the_log_folder_copied_alone_serves_both_examples` copies log/ and examples/ into an
empty directory: nothing else of this repository is importable there.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from log.sinks.csv_sink import read_rows
from tests.support.hrana_server import HranaServer, running

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("starlette_app", "fastapi_app")
REQUESTS = 5
TOKEN = "example-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_stop(app_dir: Path, module: str, env: dict[str, str], log_path: Path) -> list[str]:
    """Start `uvicorn examples.<module>:app` in app_dir, GET / REQUESTS times, SIGTERM it;
    returns the trace ids the responses carried."""
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "K_SERVICE") and not k.startswith(("LOG_", "TURSO_"))}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", f"examples.{module}:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=app_dir, env={**clean, **env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    traces: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not traces:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "server did not start:\n" + log_path.read_text()
            try:
                response = httpx.get(url, timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)  # polling for readiness, not waiting for a result
                continue
            assert response.status_code == 200, response.text
            traces.append(response.headers["x-trace-id"])
        for _ in range(REQUESTS - 1):
            response = httpx.get(url, timeout=5)
            assert response.status_code == 200 and response.json()["trace_id"] == response.headers["x-trace-id"]
            traces.append(response.headers["x-trace-id"])
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once its shutdown (our lifespan's flush) has completed
        assert process.wait(timeout=20) in (0, -signal.SIGTERM), log_path.read_text()
        assert "Application shutdown complete" in log_path.read_text()
    return traces


def check_rows(api: list, steps: list, traces: list[str]) -> None:
    assert sorted(r.trace_id for r in api) == sorted(traces)
    assert {(r.method, r.endpoint, r.response_status) for r in api} == {("GET", "/", 200)}
    assert {r.route for r in api} == {"/"}  # the matched route's template, from Starlette's or FastAPI's router
    for trace in traces:
        mine = sorted((s for s in steps if s.trace_id == trace), key=lambda s: s.execution_order)
        assert [(s.task_name, s.step_name, s.status) for s in mine] == [
            ("Greeting", "Lookup", "START"), ("Greeting", "Lookup", "SUCCESS"),
            ("Greeting", "Render", "START"), ("Greeting", "Render", "IN_PROGRESS"), ("Greeting", "Render", "SUCCESS"),
        ]
        assert [s.execution_order for s in mine] == [1, 2, 3, 4, 5]


def db_rows(db_path: Path) -> tuple[list, list]:
    from log import ApiLog, TaskProgressLog

    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        api = [ApiLog(**dict(r)) for r in conn.execute("SELECT * FROM api_logs")]
        steps = [TaskProgressLog(**dict(r)) for r in conn.execute("SELECT * FROM task_progress_logs")]
    finally:
        conn.close()
    return api, steps


def run_example(app_dir: Path, module: str, tmp_path: Path, backend: str) -> int:
    """Serve, stop, check every row; returns how many requests the log DB holds rows for."""
    data, logs = tmp_path / "data", tmp_path / "logs"
    data.mkdir(parents=True)
    env = {"DATA_DIR": str(data), "LOG_DIR": str(logs), "LOG_SINKS": "csv,turso"}
    if backend == "file":
        traces = serve_and_stop(app_dir, module, env, tmp_path / "server.log")
        db_path = data / "logs.db"
    else:
        db_path = tmp_path / "remote.db"
        with running(HranaServer(str(db_path), token=TOKEN)) as remote:
            env |= {"TURSO_DATABASE_URL": remote.url, "TURSO_AUTH_TOKEN": TOKEN}
            traces = serve_and_stop(app_dir, module, env, tmp_path / "server.log")
    assert len(set(traces)) == REQUESTS
    check_rows(list(read_rows(logs, "api_logs")), list(read_rows(logs, "task_progress_logs")), traces)
    api, steps = db_rows(db_path)
    check_rows(api, steps, traces)
    assert sorted(r.id for r in api) == sorted(r.id for r in read_rows(logs, "api_logs"))  # the same rows
    return len(api)


@pytest.mark.parametrize("backend", ["file", "hrana"])
@pytest.mark.parametrize("module", EXAMPLES)
def test_example_logs_every_request_and_its_task_steps(tmp_path: Path, module: str, backend: str) -> None:
    assert run_example(ROOT, module, tmp_path, backend) == REQUESTS


def test_the_log_folder_copied_alone_serves_both_examples(tmp_path: Path) -> None:
    project = tmp_path / "their_project"
    project.mkdir()
    shutil.copytree(ROOT / "log", project / "log", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "examples", project / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    assert sorted(p.name for p in project.iterdir()) == ["examples", "log"]
    for module in EXAMPLES:
        assert run_example(project, module, tmp_path / module, "file") == REQUESTS


def test_examples_are_short_and_use_only_the_public_api() -> None:
    import ast

    import log

    for module in EXAMPLES:
        source = (ROOT / "examples" / f"{module}.py").read_text()
        assert len(source.splitlines()) <= 40
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "log":
                assert node.module == "log" and {a.name for a in node.names} <= set(log.__all__)
