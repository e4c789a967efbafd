"""The app's own diagnostics (start-up summary, warnings, sink errors): how they are printed.

On Cloud Run (K_SERVICE set) every record becomes one JSON line on stdout with a `severity`,
so Cloud Logging files warnings as warnings instead of as unlabeled text; uvicorn's own
loggers get the same treatment. Locally it stays plain text on stderr, leaving stdout to the
stdout log sink's JSON lines.

Also here: the start-up configuration summary (pure), with every secret masked.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from log.core.cloud_logging import encode_line
from settings import Settings

# Python level names -> Cloud Logging LogSeverity names.
_SEVERITY = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL"}
_PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# uvicorn's loggers do not propagate to the root logger; they are reformatted by name.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
MASK = "***"
QUIET_LOGGERS = ("httpx", "httpcore")


class CloudJsonFormatter(logging.Formatter):
    """A LogRecord as one Cloud Logging structured JSON line (without the newline)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            # The traceback inside `message`: Error Reporting finds stack traces there.
            message = f"{message}\n{self.formatException(record.exc_info)}"
        elif record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        stamp = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, "DEFAULT"),
            "message": message,
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "logger": record.name,
            "logging.googleapis.com/sourceLocation": {
                "file": record.pathname, "line": str(record.lineno), "function": record.funcName,
            },
        }
        fields = getattr(record, "fields", None)  # logger.info(..., extra={"fields": {...}})
        if isinstance(fields, dict):
            entry["fields"] = msgspec.to_builtins(fields, enc_hook=str, str_keys=True)
        return encode_line(entry).decode("utf-8").rstrip("\n")


class _Ours(logging.StreamHandler):
    """Marks the handler configure() installed, so calling it again replaces instead of adding."""


def configure(*, cloud_run: bool, stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """Install one handler on the root logger (and uvicorn's on Cloud Run); returns it.

    Process-wide by nature (logging is): called once by the process entry point (app.app),
    never by create_app, so tests building apps do not reconfigure logging.
    """
    if cloud_run:
        handler: logging.Handler = _Ours(stream if stream is not None else sys.stdout)
        handler.setFormatter(CloudJsonFormatter())
    else:
        handler = _Ours(stream if stream is not None else sys.stderr)
        handler.setFormatter(logging.Formatter(_PLAIN))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Ours)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every outbound request at INFO (each Turso batch, each Supabase call): noise.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    if cloud_run:
        for name in UVICORN_LOGGERS:
            logger = logging.getLogger(name)
            logger.handlers = [handler] if name == "uvicorn" else []
            logger.propagate = name != "uvicorn"  # uvicorn.error -> uvicorn -> our handler, once
    return handler


# --- the start-up summary (pure) -----------------------------------------------------------


def mask_url(url: str) -> str:
    """A URL without credentials: user:password@ and every query value are masked."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" not in netloc and not parts.query and not parts.fragment:
        return url  # nothing to hide; urlunsplit would rewrite "file:/x" as "file:///x"
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = "&".join(f"{pair.split('=', 1)[0]}={MASK}" for pair in parts.query.split("&") if pair)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _secret(value: str) -> str:
    return "set" if value else "not set"


def config_summary(settings: Settings, *, backend: str, demo_mode: bool) -> dict[str, Any]:
    """What this process runs with, safe to print: secrets only as set / not set."""
    return {
        "backend": backend,
        "demo_mode": demo_mode,
        "on_cloud_run": settings.on_cloud_run,
        "data_dir": str(settings.data_dir),
        "log_sinks": list(settings.log_sinks),
        "log_dir": str(settings.logs_path),
        "log_flush": settings.log_flush,
        "log_database": mask_url(settings.log_database_url),
        "web_concurrency": settings.web_concurrency,
        "https_only": settings.https_only,
        "trusted_proxy": settings.trusted_proxy,
        "supabase_url": mask_url(settings.supabase_url),
        "admin_emails": len(settings.admin_emails),
        "secret_key": _secret(settings.secret_key),
        "turso_auth_token": _secret(settings.turso_auth_token),
        "supabase_anon_key": _secret(settings.supabase_anon_key),
    }


def summary_line(summary: dict[str, Any]) -> str:
    return "start-up configuration: " + ", ".join(f"{k}={v}" for k, v in summary.items())


DEMO_WARNING = (
    "DEMO MODE: running on Cloud Run without Supabase (SUPABASE_URL and SUPABASE_ANON_KEY are not both set). "
    "Accounts and items live in this instance's SQLite file under DATA_DIR and vanish when the "
    "instance stops; instances do not share them. Set both variables for real use."
)
