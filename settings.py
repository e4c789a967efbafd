"""Settings from the environment and an optional `.env` file, read once at start-up.

`docker run --env-file` passes quotes literally (`SECRET_KEY="abc"` arrives with the quotes),
so a value wrapped in matching quotes is unwrapped, with a warning, instead of silently
becoming a different secret.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

import msgspec
from starlette.config import Config

logger = logging.getLogger("app.settings")

MIB = 1024 * 1024


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path = Path("var")
    secret_key: str = ""
    admin_emails: frozenset[str] = frozenset()
    max_request_bytes: int = MIB
    max_import_bytes: int = 10 * MIB
    on_cloud_run: bool = False
    https_only: bool = False
    session_max_age: int = 14 * 24 * 3600
    trusted_proxy: bool = False
    # logging (tracing) settings
    log_sinks: tuple[str, ...] = ("csv", "turso")
    log_dir: Path | None = None  # default: data_dir / "logs"
    log_body_max_bytes: int = 16 * 1024
    log_html_bodies: str = "summary"
    log_csv_max_bytes: int = 64 * MIB
    log_csv_keep: int = 5
    log_exclude_prefixes: tuple[str, ...] = ("/static", "/health")
    log_redact_extra: tuple[str, ...] = ()  # more key regexes to scrub, on top of the defaults
    log_flush: str = "background"
    web_concurrency: int = 1
    template_reload: bool = False
    turso_database_url: str = ""  # default: file:<data_dir>/logs.db
    turso_auth_token: str = ""
    import_throttle_ms: int = 0  # test-only: slows the import so progress can be observed
    supabase_url: str = ""
    supabase_anon_key: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def logs_path(self) -> Path:
        return self.log_dir or self.data_dir / "logs"

    @property
    def log_database_url(self) -> str:
        return self.turso_database_url or f"file:{self.data_dir / 'logs.db'}"

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
        data_dir = Path(get("DATA_DIR", "var"))
        sinks_default = "stdout,turso" if on_cloud_run else "csv,turso"
        log_dir = get("LOG_DIR")
        return cls(
            data_dir=data_dir,
            secret_key=get("SECRET_KEY"),
            admin_emails=frozenset(
                e.strip().lower() for e in get("ADMIN_EMAILS").split(",") if e.strip()
            ),
            max_request_bytes=_int("MAX_REQUEST_BYTES", get("MAX_REQUEST_BYTES"), MIB),
            max_import_bytes=_int("MAX_IMPORT_BYTES", get("MAX_IMPORT_BYTES"), 10 * MIB),
            on_cloud_run=on_cloud_run,
            https_only=_bool(get("HTTPS_ONLY"), on_cloud_run),
            trusted_proxy=_bool(get("TRUST_PROXY"), on_cloud_run),
            log_sinks=tuple(s.strip() for s in get("LOG_SINKS", sinks_default).split(",") if s.strip()),
            log_dir=Path(log_dir) if log_dir else None,
            log_body_max_bytes=_int("LOG_BODY_MAX_BYTES", get("LOG_BODY_MAX_BYTES"), 16 * 1024),
            log_html_bodies=get("LOG_HTML_BODIES", "summary"),
            log_csv_max_bytes=_int("LOG_CSV_MAX_BYTES", get("LOG_CSV_MAX_BYTES"), 64 * MIB),
            log_csv_keep=_int("LOG_CSV_KEEP", get("LOG_CSV_KEEP"), 5),
            log_exclude_prefixes=tuple(
                p.strip() for p in get("LOG_EXCLUDE_PREFIXES", "/static,/health").split(",") if p.strip()
            ),
            log_flush=get("LOG_FLUSH", "background"),
            log_redact_extra=_patterns("LOG_REDACT_EXTRA", get("LOG_REDACT_EXTRA")),
            template_reload=_bool(get("TEMPLATE_RELOAD"), False),
            web_concurrency=max(1, _int("WEB_CONCURRENCY", get("WEB_CONCURRENCY"), 1)),
            turso_database_url=get("TURSO_DATABASE_URL"),
            turso_auth_token=get("TURSO_AUTH_TOKEN"),
            import_throttle_ms=_int("IMPORT_THROTTLE_MS", get("IMPORT_THROTTLE_MS"), 0),
            supabase_url=get("SUPABASE_URL"),
            supabase_anon_key=get("SUPABASE_ANON_KEY"),
            warnings=tuple(warnings),
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
    try:
        number = int(value) if value else default
    except ValueError:
        number = -1
    if number < 0:
        raise SystemExit(f"{name} must be a whole number of at least 0, got {value!r}")
    return number


def _patterns(name: str, value: str) -> tuple[str, ...]:
    # A bad regex must stop start-up with the variable's name, not fail on the first request.
    patterns = tuple(p.strip() for p in value.split(",") if p.strip())
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SystemExit(f"{name}: {pattern!r} is not a valid regular expression ({exc})") from None
    return patterns


def _bool(value: str, default: bool) -> bool:
    if not value:
        return default
    return value.lower() in {"1", "true", "yes", "on"}
