"""Start-up as the image runs it, `uvicorn app:app` in a subprocess: a bad setting stops it with
one line on stderr and uvicorn's start-up failure code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.app import free_port

ROOT = Path(__file__).resolve().parents[2]


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
