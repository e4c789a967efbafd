"""TracingConfig checks its values: from the environment (from_env) and when built by hand
(__post_init__). A bad value is one line naming the variable, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from log import ConfigError, TracingConfig
from log.config import FLUSH_MODES, HTML_MODES, LIMITS, SINKS


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("LOG_HTML_BODIES", "Summary", "summary, full"),
        ("LOG_HTML_BODIES", "none", "summary, full"),
        ("LOG_FLUSH", "Request", "background, request"),
        ("LOG_FLUSH", "sync", "background, request"),
        ("LOG_SINKS", "csv,file", "csv, stdout, turso"),
        ("LOG_SINKS", "CSV", "csv, stdout, turso"),
        ("LOG_SINKS", "stdout,stdout", "csv, stdout, turso"),
        ("LOG_BODY_MAX_BYTES", "2000000", "from 0 to 1048576"),
        ("LOG_BODY_MAX_BYTES", "-1", "from 0 to 1048576"),
        ("LOG_BODY_MAX_BYTES", "16k", "from 0 to 1048576"),
        ("LOG_CSV_MAX_BYTES", "1000", "from 65536 to 1073741824"),
        ("LOG_CSV_MAX_BYTES", "2147483648", "from 65536 to 1073741824"),
        ("LOG_CSV_KEEP", "1000", "from 0 to 100"),
        ("WEB_CONCURRENCY", "0", "from 1 to 64"),
        ("WEB_CONCURRENCY", "100", "from 1 to 64"),
        ("WEB_CONCURRENCY", "two", "from 1 to 64"),
        ("TRUST_PROXY", "maybe", "on (1, true, yes, on) or off (0, false, no, off)"),
        ("TURSO_DATABASE_URL", "wss://db.example.turso.io", "libsql://, https://, http://, file:"),
        ("LOG_EXCLUDE_PREFIXES", "/static,health", "must start with /"),
    ],
)
def test_a_bad_value_stops_with_one_line(name: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as exc:
        TracingConfig.from_env({name: value})
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(name), message
    assert allowed in message, message
    # The value as given, except a database URL, of which only the scheme is shown (it may hold a token).
    shown = "wss:" if name == "TURSO_DATABASE_URL" else value.split(",")[-1]
    assert shown in message, message
    assert "db.example" not in message


def test_a_database_url_is_never_echoed_in_full() -> None:
    with pytest.raises(ConfigError) as exc:
        TracingConfig.from_env({"TURSO_DATABASE_URL": "wss://db.turso.io?authToken=s3cret"})
    assert "s3cret" not in str(exc.value)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"LOG_HTML_BODIES": "full", "LOG_FLUSH": "request", "LOG_SINKS": "stdout,csv,turso"},
        {"LOG_SINKS": ""},
        {"LOG_BODY_MAX_BYTES": "0", "LOG_CSV_KEEP": "0", "LOG_CSV_MAX_BYTES": "65536"},
        {"LOG_BODY_MAX_BYTES": "1048576", "LOG_CSV_KEEP": "100", "WEB_CONCURRENCY": "64"},
        {"TURSO_DATABASE_URL": "libsql://db-org.turso.io"},
        {"TURSO_DATABASE_URL": "http://127.0.0.1:8080"},
        {"TURSO_DATABASE_URL": "file:/tmp/logs.db"},
        {"TRUST_PROXY": "TRUE"},
        {"TRUST_PROXY": "Off"},
    ],
)
def test_allowed_values_are_accepted(environ: dict[str, str]) -> None:
    assert isinstance(TracingConfig.from_env(environ), TracingConfig)  # a refused value raises ConfigError


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("Yes", True), ("on", True), ("0", False), ("FALSE", False), ("no", False)])
def test_booleans_take_either_spelling_in_any_case(value: str, expected: bool) -> None:
    assert TracingConfig.from_env({"TRUST_PROXY": value}).trusted_proxy is expected


@pytest.mark.parametrize(
    ("field", "value", "name"),
    [
        ("html_bodies", "Summary", "LOG_HTML_BODIES"),
        ("flush", "later", "LOG_FLUSH"),
        ("sinks", ("csv", "kafka"), "LOG_SINKS"),
        ("body_max_bytes", 10 * 1024 * 1024, "LOG_BODY_MAX_BYTES"),
        ("workers", 0, "WEB_CONCURRENCY"),
        ("database_url", "postgres://x", "TURSO_DATABASE_URL"),
        ("exclude_prefixes", ("static",), "LOG_EXCLUDE_PREFIXES"),
    ],
)
def test_a_config_built_by_hand_is_checked_too(field: str, value: object, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        TracingConfig(**{field: value})  # type: ignore[arg-type]


def test_every_checked_variable_is_in_the_docs_with_its_allowed_values() -> None:
    root = Path(__file__).resolve().parents[2]
    settings_doc = (root / "docs" / "settings.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in settings_doc.splitlines() if line.startswith("| `")}
    for mode in HTML_MODES:
        assert f"`{mode}`" in rows["LOG_HTML_BODIES"]
    for mode in FLUSH_MODES:
        assert f"`{mode}`" in rows["LOG_FLUSH"]
    for sink in SINKS:
        assert f"`{sink}`" in rows["LOG_SINKS"]
    for name, least, most in LIMITS.values():
        assert f"{least:,}" in rows[name] and f"{most:,}" in rows[name], name
