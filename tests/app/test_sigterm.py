"""SIGTERM under load, the way Cloud Run stops an instance: the Dockerfile's CMD, as written, is
started with the venv's uvicorn on PATH; ≥ 500 requests go out over 50 concurrent connections;
SIGTERM arrives mid-load. The server must exit 0, and every request that got an answer must be
in every sink: the CSV files, the log database (file:) and the stdout JSON lines, with the same
app-assigned id everywhere."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from log.sinks.csv_sink import read_rows
from settings import Settings
from tests.support.app import free_port
from tests.app.test_dockerfile import env_vars, exec_form, instructions

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
REQUESTS, CONNECTIONS, SIGNAL_AFTER = 600, 50, 250
CLOUD_RUN_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
LEASE_RELEASE_MAX = 1.0  # Tracing.aclose: the worker-id lease's release



def dockerfile() -> tuple[list[str], dict[str, str]]:
    parsed = instructions((ROOT / "Dockerfile").read_text())
    cmd = exec_form([args for keyword, args in parsed if keyword == "CMD"][-1])
    assert cmd is not None
    return cmd, env_vars(parsed)


def graceful_timeout(cmd: list[str]) -> float:
    words = shlex.split(cmd[-1])
    return float(words[words.index("--timeout-graceful-shutdown") + 1])


def test_shutdown_budget_fits_cloud_runs_grace_period() -> None:
    cmd, _ = dockerfile()
    total = graceful_timeout(cmd) + Settings().tracing.flush_deadline + LEASE_RELEASE_MAX
    assert total < CLOUD_RUN_GRACE - 0.5, total


def start(tmp_path: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen, str, Path, Path]:
    cmd, image_env = dockerfile()
    port = free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **image_env,
        "PORT": str(port),
        "DATA_DIR": str(data_dir),
        "LOG_SINKS": "csv,stdout,turso",
        "TURSO_DATABASE_URL": f"file:{data_dir / 'logs.db'}",
        "SECRET_KEY": "sigterm-test-secret",
        "GOOGLE_CLOUD_PROJECT": "test-project",
        **extra_env,
    }
    out, err = tmp_path / "stdout.jsonl", tmp_path / "stderr.txt"
    with out.open("ab") as stdout, err.open("ab") as stderr:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, err.read_text()
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url, out, err
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("server did not start:\n" + err.read_text())
        time.sleep(0.05)  # polling for readiness with a deadline


async def load(url: str, process: subprocess.Popen) -> tuple[dict[str, int], int]:
    """Send REQUESTS requests over CONNECTIONS connections; SIGTERM once SIGNAL_AFTER answered.
    Returns {trace id: status} of answered requests and how many were answered at the signal."""
    answered: dict[str, int] = {}
    at_signal = -1
    paths = iter(range(REQUESTS))
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=15) as client:

        async def worker() -> None:
            nonlocal at_signal
            for i in paths:
                path = ("/", "/login", f"/missing-{i}")[i % 3]
                try:
                    response = await client.get(path, headers={"user-agent": f"sigterm-test/{i}"})
                except httpx.TransportError:
                    continue  # refused or closed after SIGTERM: not answered, not required
                answered[response.headers["x-trace-id"]] = response.status_code
                if len(answered) == SIGNAL_AFTER and at_signal < 0:
                    at_signal = len(answered)
                    process.send_signal(signal.SIGTERM)

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return answered, at_signal


def stdout_rows(out: Path) -> tuple[dict[str, str], list[dict]]:
    """{trace_id: row id} of api_logs lines, and the other (diagnostics) lines. Every line is JSON."""
    rows: dict[str, str] = {}
    other = []
    for line in out.read_text().splitlines():
        obj = json.loads(line)
        if obj.get("table") == "api_logs":
            rows[obj["row"]["trace_id"]] = obj["row"]["id"]
            assert obj["logging.googleapis.com/trace"].startswith("projects/test-project/traces/")
            assert obj["httpRequest"]["userAgent"].startswith("sigterm-test/")
        else:
            other.append(obj)
    return rows, other


@pytest.mark.anyio
@pytest.mark.parametrize(
    "extra_env",
    [
        pytest.param({}, id="local-1-process"),
        # The log database stays a file (read back below): the operator's explicit opt-in.
        pytest.param({"K_SERVICE": "sigterm-test", "LOG_DB_EPHEMERAL": "1", "WEB_CONCURRENCY": "2"}, id="cloud-run-2-workers"),
    ],
)
async def test_sigterm_mid_load_loses_no_answered_request(tmp_path: Path, extra_env: dict[str, str]) -> None:
    process, url, out, err = start(tmp_path, extra_env)
    try:
        answered, at_signal = await load(url, process)
        code = process.wait(timeout=CLOUD_RUN_GRACE + 5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = err.read_text() + "".join(line + "\n" for line in out.read_text().splitlines() if '"table"' not in line)
    print(f"answered {len(answered)} of {REQUESTS}; SIGTERM after {at_signal}")  # shown with -s
    assert at_signal == SIGNAL_AFTER, log
    assert code == 0, log
    assert len(answered) >= SIGNAL_AFTER
    assert set(answered.values()) <= {200, 404}, answered

    data_dir = tmp_path / "data"
    csv = {row.trace_id: str(row.id) for row in read_rows(data_dir / "logs", "api_logs")}
    with sqlite3.connect(data_dir / "logs.db") as db:
        database = {trace: str(row_id) for trace, row_id in db.execute("SELECT trace_id, id FROM api_logs")}
    stdout, diagnostics = stdout_rows(out)

    for name, sink in (("csv", csv), ("database", database), ("stdout", stdout)):
        missing = set(answered) - set(sink)
        assert not missing, f"{len(missing)} answered requests missing from {name}\n{log}"
    # The same row (same app-assigned id) in every sink.
    assert {t: csv[t] for t in answered} == {t: database[t] for t in answered} == {t: stdout[t] for t in answered}

    if "K_SERVICE" in extra_env:
        # Cloud Run: the app's and uvicorn's own lines are JSON with a severity, on stdout too.
        assert diagnostics and all("severity" in d for d in diagnostics)
        assert any(d["severity"] == "WARNING" and d["message"].startswith("DEMO MODE") for d in diagnostics)
        assert {p.name for p in (data_dir / "logs").glob("api_logs.w*.csv")}, "one CSV file per worker"
    else:
        assert diagnostics == []  # locally diagnostics go to stderr; stdout is the sink's alone
