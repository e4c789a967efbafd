"""The app's own diagnostics: Cloud Logging JSON on Cloud Run, the masked start-up summary, and
demo mode said loudly at start-up and on every page."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from log import diagnostics
from log.diagnostics import CloudJsonFormatter
from settings import config_summary, mask_url, summary_line
from settings import Settings
from tests.support.app import make_settings

SECRETS = {"secret_key": "s3cr3t-session-key", "turso_auth_token": "tur5o-t0ken", "supabase_anon_key": "an0n-key"}



@pytest.fixture
def clean_logging() -> Iterator[None]:
    """configure() is process-wide: put the root and uvicorn loggers back afterwards."""
    names = ["", *diagnostics.UVICORN_LOGGERS, *diagnostics.QUIET_LOGGERS]
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate) for n in names}
    # as uvicorn's default --log-level leaves them (a server started by an earlier test may not)
    for n in diagnostics.UVICORN_LOGGERS:
        logging.getLogger(n).setLevel(logging.INFO)
    yield
    for n, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


def record(level: int, msg: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("app", level, "/x/app.py", 12, msg, args, exc_info, func="f")


def test_json_formatter_severity_and_fields() -> None:
    fmt = CloudJsonFormatter()
    line = json.loads(fmt.format(record(logging.WARNING, "sink %s failing", "turso")))
    assert line["severity"] == "WARNING" and line["message"] == "sink turso failing"
    assert line["logger"] == "app" and line["time"].endswith("Z")
    assert line["logging.googleapis.com/sourceLocation"] == {"file": "/x/app.py", "line": "12", "function": "f"}
    assert json.loads(fmt.format(record(logging.ERROR, "x")))["severity"] == "ERROR"
    assert json.loads(fmt.format(record(logging.INFO, "x")))["severity"] == "INFO"


def test_json_formatter_keeps_tracebacks_in_one_line() -> None:
    try:
        raise ValueError("bad\r\nvalue")
    except ValueError:
        import sys

        text = CloudJsonFormatter().format(record(logging.ERROR, "crash\n{forged}", exc_info=sys.exc_info()))
    assert "\n" not in text and "\r" not in text
    message = json.loads(text)["message"]
    assert message.startswith("crash\n{forged}\nTraceback") and "ValueError: bad\r\nvalue" in message


def test_configure_cloud_run_writes_json_lines_and_replaces_itself(clean_logging) -> None:
    out = io.StringIO()
    diagnostics.configure_process_logging(cloud_run=True, stream=io.StringIO())
    diagnostics.configure_process_logging(cloud_run=True, stream=out)  # replaces, does not add
    logging.getLogger("log.tracing").warning("log sink %s stopped", "turso")
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("httpx").info("HTTP Request: POST https://db.turso.io/v2/pipeline")  # too chatty
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["severity"], line["logger"]) for line in lines] == [
        ("WARNING", "log.tracing"), ("INFO", "uvicorn.error"),
    ]


def test_configure_locally_is_plain_text(clean_logging) -> None:
    out = io.StringIO()
    diagnostics.configure_process_logging(cloud_run=False, stream=out)
    logging.getLogger("app").warning("careful")
    assert out.getvalue().rstrip().endswith("WARNING app: careful")


def test_mask_url() -> None:
    assert mask_url("libsql://db-org.turso.io?authToken=abc&x=1") == "libsql://db-org.turso.io?authToken=***&x=***"
    assert mask_url("https://user:pw@host/p") == "https://***@host/p"
    assert mask_url("file:/tmp/data/logs.db") == "file:/tmp/data/logs.db"
    assert mask_url("") == ""


def test_summary_never_holds_a_secret(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, supabase_url="https://proj.supabase.co",
        turso_database_url="libsql://db.turso.io?authToken=url-t0ken", **SECRETS,
    )
    summary = config_summary(settings, backend="supabase", demo_mode=False)
    text = summary_line(summary) + json.dumps(summary)
    for secret in [*SECRETS.values(), "url-t0ken"]:
        assert secret not in text
    assert summary["secret_key"] == "set" and summary["supabase_anon_key"] == "set"
    assert config_summary(Settings(), backend="sqlite", demo_mode=False)["turso_auth_token"] == "not set"


@pytest.mark.anyio
async def test_demo_mode_is_said_at_start_up_and_on_every_page(tmp_path: Path, make_client, caplog) -> None:
    settings = make_settings(tmp_path, on_cloud_run=True, **SECRETS)  # no Supabase URL: demo mode
    with caplog.at_level(logging.INFO, logger="app"):
        client = await make_client(settings)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("DEMO MODE") for m in warnings)
    assert not any(secret in caplog.text for secret in SECRETS.values())
    for path in ("/", "/login", "/signup", "/no-such-page"):
        page = await client.get(path)
        assert "Demo mode:" in page.text, path


@pytest.mark.anyio
async def test_no_demo_banner_off_cloud_run(tmp_path: Path, make_client, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="app"):
        client = await make_client(make_settings(tmp_path))
    assert not any("DEMO MODE" in r.getMessage() for r in caplog.records)
    assert any(r.getMessage().startswith("start-up configuration:") for r in caplog.records)
    assert "Demo mode:" not in (await client.get("/")).text
