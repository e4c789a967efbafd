"""Every option of the tracing package in one frozen value, with its defaults.

The host app builds a TracingConfig however it reads its own settings; `from_env` reads the
package's environment variables for apps that have no settings layer of their own:

    config = TracingConfig.from_env(os.environ)

| variable | field | default |
| --- | --- | --- |
| DATA_DIR | data_dir | `var` |
| LOG_SINKS | sinks | `csv,turso` (`stdout,turso` when K_SERVICE is set: Cloud Run) |
| LOG_DIR | log_dir | DATA_DIR/logs |
| TURSO_DATABASE_URL | database_url | `file:` DATA_DIR/logs.db |
| TURSO_AUTH_TOKEN | auth_token | none |
| LOG_BODY_MAX_BYTES | body_max_bytes | 16384 |
| LOG_HEADERS_MAX_BYTES | headers_max_bytes | 16384 |
| LOG_HTML_BODIES | html_bodies | `summary` |
| LOG_CSV_MAX_BYTES | csv_max_bytes | 64 MiB |
| LOG_CSV_KEEP | csv_keep | 5 |
| LOG_EXCLUDE_PREFIXES | exclude_prefixes | `/static,/health` |
| LOG_REDACT_EXTRA | redact_extra | none |
| LOG_FLUSH | flush | `background` |
| WEB_CONCURRENCY | workers | 1 |
| LOG_WAL | write_ahead | on (used only with the csv sink) |
| TRUST_PROXY | trusted_proxy | true when K_SERVICE is set |
| GOOGLE_CLOUD_PROJECT | cloud_project | none |
| LOG_RETENTION_DAYS | retention_days | 30 (0: keep everything) |
| LOG_ROLLUP_RETENTION_DAYS | rollup_retention_days | 400 (0: keep everything) |

Every value is checked when a TracingConfig is made (from the environment or by hand): a value
outside CHOICES, LIMITS, SINKS or DATABASE_SCHEMES raises ConfigError with one line naming the
variable, the value and what is allowed. Choices are exact (lowercase); booleans take
1/true/yes/on or 0/false/no/off in any case.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

MIB = 1024 * 1024
SINKS = ("csv", "stdout", "turso")
FLUSH_MODES = ("background", "request")
HTML_MODES = ("summary", "full")
DATABASE_SCHEMES = ("libsql://", "https://", "http://", "file:")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# Options with a fixed set of values: field -> (variable, allowed values).
CHOICES = {"html_bodies": ("LOG_HTML_BODIES", HTML_MODES), "flush": ("LOG_FLUSH", FLUSH_MODES)}
# Whole-number options: field -> (variable, least, most). Past the most a value is a typo or a
# mistake, not a setting: a body cap over 1 MiB puts megabytes into every log row; CSV files
# over 1 GiB are too big to replay in one go; 64 workers is far more than any Cloud Run
# instance has CPUs (8 at most).
LIMITS = {
    "body_max_bytes": ("LOG_BODY_MAX_BYTES", 0, MIB),
    # The request_header column: under 1 KiB the usual headers of a browser would not fit.
    "headers_max_bytes": ("LOG_HEADERS_MAX_BYTES", 1024, MIB),
    "csv_max_bytes": ("LOG_CSV_MAX_BYTES", 64 * 1024, 1024 * MIB),
    "csv_keep": ("LOG_CSV_KEEP", 0, 100),
    "workers": ("WEB_CONCURRENCY", 1, 64),
}


class ConfigError(ValueError):
    """A setting with a value the package cannot use; the message names the variable."""


class TracingConfig(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path = Path("var")
    # Where rows go: any of "csv", "stdout", "turso" (the log database). Empty: trace ids only.
    sinks: tuple[str, ...] = ("csv", "turso")
    log_dir: Path | None = None
    database_url: str = ""
    auth_token: str = ""
    body_max_bytes: int = 16 * 1024
    headers_max_bytes: int = 16 * 1024  # the whole request_header column, marker included
    html_bodies: str = "summary"
    csv_max_bytes: int = 64 * MIB
    csv_keep: int = 5
    exclude_prefixes: tuple[str, ...] = ("/static", "/health")
    # Responses of these paths are logged without their body (e.g. a log viewer's own pages).
    no_response_body_prefixes: tuple[str, ...] = ()
    redact_extra: tuple[str, ...] = ()  # more key regexes to scrub, on top of the defaults
    flush: str = "background"
    workers: int = 1
    # The write-ahead record (log/sinks/wal.py): an answered request's row is in LOG_DIR before
    # its response is passed on, recovered at the next start. Only with the "csv" sink (a
    # local disk that outlives the process).
    write_ahead: bool = True
    trusted_proxy: bool = False
    cloud_project: str | None = None
    # Shutdown: how long the sinks get to write what is queued.
    flush_deadline: float = 3.0
    # Retention (log/tools/prune.py): log rows and rotated CSV files older than this many days
    # are deleted, the explorer's rollups after their own, longer window. 0 keeps everything.
    retention_days: int = 30
    rollup_retention_days: int = 400

    def __post_init__(self) -> None:
        problem = config_problem(self)
        if problem:
            raise ConfigError(problem)

    @property
    def enabled(self) -> bool:
        return bool(self.sinks)

    @property
    def logs_path(self) -> Path:
        return self.log_dir or self.data_dir / "logs"

    @property
    def log_database_url(self) -> str:
        return self.database_url or f"file:{self.data_dir / 'logs.db'}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | Callable[[str, str], str], **fixed: object) -> TracingConfig:
        """Read the variables in the table above; `fixed` fields win over the environment.

        `environ` is a mapping (os.environ) or a `get(name, default) -> str` function, so an
        app with its own settings reader (.env files, quoting rules) can hand that in.
        """
        get: Callable[[str, str], str]
        if callable(environ):
            get = environ
        else:
            env = environ
            get = lambda name, default="": str(env.get(name, default)).strip()  # noqa: E731
        cloud_run = bool(get("K_SERVICE", ""))
        log_dir = get("LOG_DIR", "")
        values: dict[str, object] = {
            "data_dir": Path(get("DATA_DIR", "") or "var"),
            "sinks": _list(get("LOG_SINKS", "stdout,turso" if cloud_run else "csv,turso")),
            "log_dir": Path(log_dir) if log_dir else None,
            "database_url": get("TURSO_DATABASE_URL", ""),
            "auth_token": get("TURSO_AUTH_TOKEN", ""),
            "body_max_bytes": _int("LOG_BODY_MAX_BYTES", get("LOG_BODY_MAX_BYTES", ""), 16 * 1024),
            "headers_max_bytes": _int("LOG_HEADERS_MAX_BYTES", get("LOG_HEADERS_MAX_BYTES", ""), 16 * 1024),
            "html_bodies": get("LOG_HTML_BODIES", "") or "summary",
            "csv_max_bytes": _int("LOG_CSV_MAX_BYTES", get("LOG_CSV_MAX_BYTES", ""), 64 * MIB),
            "csv_keep": _int("LOG_CSV_KEEP", get("LOG_CSV_KEEP", ""), 5),
            "exclude_prefixes": _list(get("LOG_EXCLUDE_PREFIXES", "/static,/health")),
            "redact_extra": _patterns("LOG_REDACT_EXTRA", get("LOG_REDACT_EXTRA", "")),
            "flush": get("LOG_FLUSH", "") or "background",
            "workers": _int("WEB_CONCURRENCY", get("WEB_CONCURRENCY", ""), 1),
            "write_ahead": parse_bool("LOG_WAL", get("LOG_WAL", ""), True),
            "trusted_proxy": parse_bool("TRUST_PROXY", get("TRUST_PROXY", ""), cloud_run),
            "cloud_project": get("GOOGLE_CLOUD_PROJECT", "") or None,
            "retention_days": _int("LOG_RETENTION_DAYS", get("LOG_RETENTION_DAYS", ""), 30),
            "rollup_retention_days": _int("LOG_ROLLUP_RETENTION_DAYS", get("LOG_ROLLUP_RETENTION_DAYS", ""), 400),
        }
        values.update(fixed)
        return cls(**values)  # type: ignore[arg-type]


def config_problem(c: TracingConfig) -> str | None:
    """The first value outside what is allowed, as one line naming its variable (pure)."""
    for field, (name, allowed) in CHOICES.items():
        value = getattr(c, field)
        if value not in allowed:
            return f"{name} must be one of {', '.join(allowed)}; got {value!r}"
    for field, (name, least, most) in LIMITS.items():
        value = getattr(c, field)
        if not least <= value <= most:
            return f"{name} must be a whole number from {least} to {most}; got {value!r}"
    for sink in c.sinks:
        if sink not in SINKS or c.sinks.count(sink) > 1:
            what = "twice" if sink in SINKS else "unknown"
            return (
                f"LOG_SINKS: {sink!r} is {what}; use each of {', '.join(SINKS)} at most once, "
                f"comma-separated, or nothing; got {','.join(c.sinks)!r}"
            )
    if c.database_url and not c.database_url.startswith(DATABASE_SCHEMES):
        return (
            f"TURSO_DATABASE_URL must start with {', '.join(DATABASE_SCHEMES)}; "
            f"got {c.database_url.split(':', 1)[0] + ':…'!r}"
        )
    for prefix in c.exclude_prefixes:
        if not prefix.startswith("/"):
            return f"LOG_EXCLUDE_PREFIXES: each prefix must start with /; got {prefix!r}"
    return None


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int(name: str, value: str, default: int) -> int:
    # Sizes and counts: a typo must stop start-up with the variable's name, not a traceback.
    least, most = next(((lo, hi) for var, lo, hi in LIMITS.values() if var == name), (0, None))
    try:
        number = int(value) if value else default
    except ValueError:
        number = least - 1
    if number < least or (most is not None and number > most):
        allowed = f"from {least} to {most}" if most is not None else f"of at least {least}"
        raise ConfigError(f"{name} must be a whole number {allowed}; got {value!r}")
    return number


def _patterns(name: str, value: str) -> tuple[str, ...]:
    # A bad regex must stop start-up with the variable's name, not fail on the first request.
    patterns = _list(value)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{name}: {pattern!r} is not a valid regular expression ({exc})") from None
    return patterns


def parse_bool(name: str, value: str, default: bool) -> bool:
    """A boolean setting: 1/true/yes/on or 0/false/no/off in any case; empty means `default`."""
    if not value:
        return default
    if value.lower() not in TRUE + FALSE:
        raise ConfigError(f"{name} must be on ({', '.join(TRUE)}) or off ({', '.join(FALSE)}); got {value!r}")
    return value.lower() in TRUE
