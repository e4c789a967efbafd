"""The process's own diagnostics (warnings, sink errors, the host's start-up lines): how they print.

On Cloud Run (K_SERVICE set) every record becomes one JSON line on stdout with a `severity`,
so Cloud Logging files warnings as warnings instead of as unlabeled text; uvicorn's own
loggers get the same treatment. Locally it stays plain text on stderr, leaving stdout to the
stdout log sink's JSON lines.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import IO, Any

import msgspec

from log.core.cloud_logging import encode_line

# Python level names -> Cloud Logging LogSeverity names.
_SEVERITY = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL"}
_PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# uvicorn's loggers do not propagate to the root logger; they are reformatted by name.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
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


def configure_process_logging(*, cloud_run: bool, stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """Install one handler on the root logger (and uvicorn's on Cloud Run); returns it.

    Process-wide by nature (logging is): called once by the process entry point,
    never by an app factory, so tests building apps do not reconfigure logging.
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
