"""Settings from the environment and an optional `.env` file, read once at start-up.

`docker run --env-file` passes quotes literally (`SECRET_KEY="abc"` arrives with the quotes),
so a value wrapped in matching quotes is unwrapped, with a warning, instead of silently
becoming a different secret.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from pathlib import Path

import msgspec
from starlette.config import Config

from log import ConfigError, TracingConfig, parse_bool

logger = logging.getLogger("app.settings")

MIB = 1024 * 1024
MASK = "***"
# Cloud Run sends SIGKILL 10 s after SIGTERM. The budget: uvicorn's --timeout-graceful-shutdown
# (Dockerfile: 4 s) for in-flight requests, then this for the log sinks' final flush, then up to
# 1 s to release the worker-id lease; the rest is margin.
LOG_FLUSH_DEADLINE = 3.0
# Whole-number settings: name -> (least, most). Cloud Run refuses HTTP/1 requests over 32 MiB
# itself, and an import stops at 100,000 rows well before; a request smaller than 1 KiB could
# not even carry the login form.
LIMITS = {
    "MAX_REQUEST_BYTES": (1024, 32 * MIB),
    "MAX_IMPORT_BYTES": (1024, 32 * MIB),
    "SIGNUP_LIMIT_PER_IP": (1, 100_000),
    "SIGNUP_LIMIT_PER_HOUR": (1, 1_000_000),
}
# These settings are the tracing package's options (settings name -> TracingConfig field).
LIVE_TAIL_PATH = "/logs/tail"  # handlers/logs.py TAIL_PATH (a test checks its polls leave no row)
TRACING_FIELDS = {
    "data_dir": "data_dir",
    "log_sinks": "sinks",
    "log_dir": "log_dir",
    "turso_database_url": "database_url",
    "turso_auth_token": "auth_token",
    "log_body_max_bytes": "body_max_bytes",
    "log_headers_max_bytes": "headers_max_bytes",
    "log_html_bodies": "html_bodies",
    "log_csv_max_bytes": "csv_max_bytes",
    "log_csv_keep": "csv_keep",
    "log_exclude_prefixes": "exclude_prefixes",
    "log_redact_extra": "redact_extra",
    "log_flush": "flush",
    "web_concurrency": "workers",
    "log_wal": "write_ahead",
    "trusted_proxy": "trusted_proxy",
    "cloud_project": "cloud_project",
    "log_retention_days": "retention_days",
    "log_rollup_retention_days": "rollup_retention_days",
}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path = Path("var")
    secret_key: str = ""
    admin_emails: frozenset[str] = frozenset()
    max_request_bytes: int = MIB
    max_import_bytes: int = 10 * MIB
    on_cloud_run: bool = False
    https_only: bool = False
    session_max_age: int = 14 * 24 * 3600
    # Sign-up attempts per hour, per client IP and per process for all IPs (handlers/ratelimit.py).
    signup_limit_per_ip: int = 10
    signup_limit_per_hour: int = 200
    trusted_proxy: bool = False
    # logging (tracing) settings
    log_sinks: tuple[str, ...] = ("csv", "turso")
    log_dir: Path | None = None  # default: data_dir / "logs"
    log_body_max_bytes: int = 16 * 1024
    log_headers_max_bytes: int = 16 * 1024
    log_html_bodies: str = "summary"
    log_csv_max_bytes: int = 64 * MIB
    log_csv_keep: int = 5
    log_exclude_prefixes: tuple[str, ...] = ("/static", "/health")
    log_redact_extra: tuple[str, ...] = ()  # more key regexes to scrub, on top of the defaults
    log_flush: str = "background"
    log_retention_days: int = 30  # 0 keeps every log row
    log_rollup_retention_days: int = 400
    web_concurrency: int = 1
    log_wal: bool = True  # the write-ahead record of answered requests (docs/tracing.md, Durability)
    template_reload: bool = False
    # Cloud Run with a file: log database: the operator accepted logs per instance (LOG_DB_EPHEMERAL).
    log_db_ephemeral: bool = False
    turso_database_url: str = ""  # default: file:<data_dir>/logs.db
    turso_auth_token: str = ""
    supabase_url: str = ""
    supabase_anon_key: str = ""
    cloud_project: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def logs_path(self) -> Path:
        return self.tracing.logs_path

    @property
    def log_database_url(self) -> str:
        return self.tracing.log_database_url

    @property
    def logs_per_instance(self) -> bool:
        """The log database is a file on a Cloud Run instance's in-memory disk: lost on restart."""
        return self.on_cloud_run and self.log_database_url.startswith("file:")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        environ = os.environ if environ is None else environ
        env_path = Path(env_file) if env_file and Path(env_file).is_file() else None
        config = Config(env_path, environ=environ)
        warnings: list[str] = []

        def get(name: str, default: str = "") -> str:
            value, warning = unquote(name, str(config(name, default=default)))
            if warning:
                warnings.append(warning)
            return value.strip()

        on_cloud_run = bool(get("K_SERVICE"))
        try:
            tracing = TracingConfig.from_env(get)
            https_only = parse_bool("HTTPS_ONLY", get("HTTPS_ONLY"), on_cloud_run)
            template_reload = parse_bool("TEMPLATE_RELOAD", get("TEMPLATE_RELOAD"), False)
            log_db_ephemeral = parse_bool("LOG_DB_EPHEMERAL", get("LOG_DB_EPHEMERAL"), False)
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None
        settings = cls(
            **{ours: getattr(tracing, theirs) for ours, theirs in TRACING_FIELDS.items()},
            secret_key=get("SECRET_KEY"),
            admin_emails=frozenset(
                e.strip().lower() for e in get("ADMIN_EMAILS").split(",") if e.strip()
            ),
            max_request_bytes=_int("MAX_REQUEST_BYTES", get("MAX_REQUEST_BYTES"), MIB),
            max_import_bytes=_int("MAX_IMPORT_BYTES", get("MAX_IMPORT_BYTES"), 10 * MIB),
            on_cloud_run=on_cloud_run,
            https_only=https_only,
            template_reload=template_reload,
            log_db_ephemeral=log_db_ephemeral,
            signup_limit_per_ip=_int("SIGNUP_LIMIT_PER_IP", get("SIGNUP_LIMIT_PER_IP"), 10),
            signup_limit_per_hour=_int("SIGNUP_LIMIT_PER_HOUR", get("SIGNUP_LIMIT_PER_HOUR"), 200),
            supabase_url=get("SUPABASE_URL"),
            supabase_anon_key=get("SUPABASE_ANON_KEY"),
            warnings=tuple(warnings),
        )
        problem = cloud_run_problem(settings)
        if problem:
            raise SystemExit(problem)
        return settings

    @property
    def tracing(self) -> TracingConfig:
        """The tracing package's configuration, from these settings."""
        fields = {theirs: getattr(self, ours) for ours, theirs in TRACING_FIELDS.items()}
        # The log explorer's live tail polls every 2 s while open: its polls are not logged, so
        # the tail does not fill the log (and itself) with its own requests.
        fields["exclude_prefixes"] = (*self.log_exclude_prefixes, LIVE_TAIL_PATH)
        return TracingConfig(
            **fields,
            # The explorer shows logs; logging its responses would copy logs into logs.
            no_response_body_prefixes=("/logs",),
            flush_deadline=LOG_FLUSH_DEADLINE,
        )

    def with_secret_key(self) -> Settings:
        """Fill in SECRET_KEY for the embedded default: generated once, kept in DATA_DIR.

        On Cloud Run the disk vanishes with the instance and instances would disagree on the
        key, so there we refuse to start without an explicit SECRET_KEY.
        """
        if self.secret_key:
            return self
        if self.on_cloud_run:
            raise SystemExit("SECRET_KEY must be set on Cloud Run (K_SERVICE is set).")
        return msgspec.structs.replace(self, secret_key=load_or_create_key(self.data_dir / "secret_key"))


def cloud_run_problem(settings: Settings) -> str | None:
    """Why these settings must not start on Cloud Run, as one line, or None (pure).

    There the disk is in memory and each instance has its own: a `file:` log database would
    split the explorer, import progress and replay per instance and lose them on every restart.
    Only an explicit LOG_DB_EPHEMERAL=1 accepts that (the explorer then says so). With logging
    off (LOG_SINKS empty) nothing is written to lose.
    """
    if not settings.on_cloud_run or not settings.log_sinks or settings.log_db_ephemeral:
        return None
    url = settings.log_database_url
    if not url.startswith("file:"):
        return None
    where = "is not set" if not settings.turso_database_url else f"is {url!r}"
    return (
        f"On Cloud Run (K_SERVICE is set) the log database must be remote, but TURSO_DATABASE_URL {where}: "
        "set TURSO_DATABASE_URL (libsql://...) and TURSO_AUTH_TOKEN, or LOG_DB_EPHEMERAL=1 to keep "
        "logs per instance, lost on restart (docs/deploy.md)."
    )


def unquote(name: str, value: str) -> tuple[str, str | None]:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1], f"{name} was wrapped in quotes; using the value without them"
    return value, None


def load_or_create_key(path: Path) -> str:
    """Write the key to a temp file, then hard-link it into place: the link either wins
    (our key) or fails because another process won first (its complete key). Never a torn read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return _read_key(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return _read_key(path)


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if not key:
        # Never sign sessions with an empty key (anyone could forge them); we never write one.
        raise SystemExit(f"{path} is empty: delete it to generate a new key, or set SECRET_KEY.")
    return key


def _int(name: str, value: str, default: int) -> int:
    # Sizes and counts: a typo must stop start-up with the variable's name, not a traceback.
    least, most = LIMITS[name]
    try:
        number = int(value) if value else default
    except ValueError:
        number = least - 1
    if not least <= number <= most:
        raise SystemExit(f"{name} must be a whole number from {least} to {most}; got {value!r}")
    return number



# --- the start-up summary (pure), with every secret masked ---------------------------------


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
        "logs_per_instance": settings.logs_per_instance,
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

LOGS_PER_INSTANCE_WARNING = (
    "LOGS PER INSTANCE: running on Cloud Run with a file: log database (LOG_DB_EPHEMERAL is on). "
    "The explorer, import progress and replay see only this instance, and its logs are lost on "
    "restart. Set TURSO_DATABASE_URL and TURSO_AUTH_TOKEN to keep them."
)
