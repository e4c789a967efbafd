"""Start-up as the image runs it, `uvicorn app:app` in a subprocess: a bad setting or, on Cloud
Run, a log database on the instance stops it with one line on stderr and uvicorn's start-up
failure code; with LOG_DB_EPHEMERAL=1 it serves, and the pages that read logs say they are per
instance."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from settings import Settings
from tests.support.app import AppClient, free_port, make_settings, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
BANNER = "Logs are kept per instance and lost on restart"
# The pages that read the log database: the explorer's three and the import page (progress).
LOG_PAGES = ("/logs", "/logs/overview", "/logs/traces/{trace}", "/items/import")


async def get_log_page(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """GET `path`; a trace page is 404 until the trace's row is written (in the background)."""
    deadline = time.monotonic() + 20
    while (page := await client.get(path)).status_code == 404 and time.monotonic() < deadline:
        await anyio.sleep(0.05)  # polling for the row with a deadline, not waiting instead of it
    return page


def run_uvicorn(tmp_path: Path, env: dict[str, str], workers: int = 1) -> subprocess.CompletedProcess[str]:
    """`uvicorn app:app` with only `env` of the settings; it must stop on its own."""
    clean = {
        k: v for k, v in os.environ.items()
        if k not in ("K_SERVICE", "SECRET_KEY", "WEB_CONCURRENCY") and not k.startswith(("LOG_", "TURSO_", "SUPABASE_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(free_port()),
         "--workers", str(workers)],
        cwd=ROOT, env={**clean, "DATA_DIR": str(tmp_path), **env}, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
    )


def test_with_several_workers_uvicorn_stops_instead_of_restarting_them(tmp_path: Path) -> None:
    # A worker exiting with any other code than uvicorn's start-up failure is started again,
    # forever, while the parent holds the port open; run_uvicorn's timeout would fail this.
    done = run_uvicorn(tmp_path, {"LOG_HTML_BODIES": "Summary"}, workers=2)
    assert "LOG_HTML_BODIES must be one of summary, full; got 'Summary'" in done.stderr
    assert "failed to start, stopping the parent process" in done.stderr


def test_a_wrongly_spelled_setting_does_not_start(tmp_path: Path) -> None:
    # Before, any value but exactly "summary" logged full HTML pages.
    done = run_uvicorn(tmp_path, {"LOG_HTML_BODIES": "Summary"})
    assert done.returncode != 0
    assert "LOG_HTML_BODIES must be one of summary, full; got 'Summary'" in done.stderr
    assert "Traceback" not in done.stderr


def test_cloud_run_without_turso_does_not_start(tmp_path: Path) -> None:
    done = run_uvicorn(tmp_path, {"K_SERVICE": "svc", "SECRET_KEY": "k"})
    assert done.returncode != 0
    assert "the log database must be remote" in done.stderr
    assert "TURSO_DATABASE_URL" in done.stderr and "TURSO_AUTH_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "logs.db").exists()


@pytest.mark.anyio
async def test_with_the_opt_in_it_serves_and_says_logs_are_per_instance(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"K_SERVICE": "svc", "LOG_DB_EPHEMERAL": "1", "HTTPS_ONLY": "false"})
    try:
        async with AppClient(base_url=server.url, timeout=10) as client:
            await client.signup("admin@example.com")  # the first local account is the admin
            home = await client.get("/")
            assert home.status_code == 200 and BANNER not in home.text  # only where logs are read
            for path in LOG_PAGES:
                page = await get_log_page(client, path.format(trace=home.headers["x-trace-id"]))
                assert page.status_code == 200, path
                assert BANNER in page.text, path
    finally:
        stop_server(server)
    assert "LOGS PER INSTANCE" in (tmp_path / "server.log").read_text()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("overrides", "shown"),
    [
        ({"on_cloud_run": True, "log_db_ephemeral": True}, True),
        ({}, False),  # on a laptop the file stays
    ],
)
async def test_the_banner_is_on_the_log_pages_only_when_logs_are_per_instance(
    tmp_path: Path, make_client, overrides: dict, shown: bool
) -> None:
    settings = make_settings(tmp_path, log_sinks=("turso",), **overrides)
    assert settings.logs_per_instance is shown
    client = await make_client(settings)
    await client.signup("admin@example.com")
    trace = (await client.get("/")).headers["x-trace-id"]
    for path in LOG_PAGES:
        page = await get_log_page(client, path.format(trace=trace))
        assert page.status_code == 200, path
        assert (BANNER in page.text) is shown, path


def test_settings_default_is_not_per_instance() -> None:
    assert not Settings().logs_per_instance
