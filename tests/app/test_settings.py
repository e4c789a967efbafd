"""Settings: environment plus optional .env file, quote unwrapping, the generated SECRET_KEY."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app import create_app
from settings import MIB, Settings, load_or_create_key, unquote

ROOT = Path(__file__).resolve().parents[2]


def from_env(environ: dict[str, str], env_file: Path | None = None) -> Settings:
    return Settings.from_env(environ, env_file=env_file)


def test_defaults_without_environment():
    s = from_env({})
    assert s.max_request_bytes == MIB == 1024 * 1024
    assert s.max_import_bytes == 10 * MIB
    assert s.data_dir == Path("var")
    assert s.secret_key == ""
    assert not s.on_cloud_run and not s.https_only and not s.trusted_proxy
    assert s.log_sinks == ("csv", "turso")
    assert s.warnings == ()


def test_reads_environment():
    s = from_env(
        {
            "DATA_DIR": "/srv/data",
            "SECRET_KEY": "k1",
            "MAX_REQUEST_BYTES": "2048",
            "ADMIN_EMAILS": " A@Example.com, b@example.com ,,",
            "HTTPS_ONLY": "yes",
            "LOG_SINKS": "csv, stdout",
        }
    )
    assert s.data_dir == Path("/srv/data")
    assert s.secret_key == "k1"
    assert s.max_request_bytes == 2048
    assert s.admin_emails == {"a@example.com", "b@example.com"}
    assert s.https_only is True
    assert s.log_sinks == ("csv", "stdout")


def test_reads_env_file_and_environment_wins(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nSECRET_KEY=from-file\nMAX_REQUEST_BYTES=4096\nDATA_DIR=/file\n")
    s = from_env({"DATA_DIR": "/env"}, env_file)
    assert s.secret_key == "from-file"
    assert s.max_request_bytes == 4096
    assert s.data_dir == Path("/env")


def test_missing_env_file_is_fine(tmp_path: Path):
    s = from_env({"SECRET_KEY": "x"}, tmp_path / "does-not-exist.env")
    assert s.secret_key == "x"


@pytest.mark.parametrize("quote", ['"', "'"])
def test_quoted_environment_value_is_unwrapped_with_warning(quote: str):
    s = from_env({"SECRET_KEY": f"{quote}abc{quote}"})
    assert s.secret_key == "abc"
    assert len(s.warnings) == 1
    assert "SECRET_KEY" in s.warnings[0] and "quotes" in s.warnings[0]
    assert "abc" not in s.warnings[0]  # the warning names the setting, never the secret


@pytest.mark.parametrize("value", ['"abc\'', '"abc', 'abc"', '"', "a'b'c", ""])
def test_unmatched_quotes_are_kept(value: str):
    assert unquote("X", value) == (value, None)


def test_quoted_integer_setting_is_unwrapped():
    s = from_env({"MAX_REQUEST_BYTES": '"2048"'})
    assert s.max_request_bytes == 2048
    assert any("MAX_REQUEST_BYTES" in w for w in s.warnings)


@pytest.mark.parametrize("value", ["abc", "1.5", "1MiB", "0x10", "1e6"])
def test_bad_integer_setting_is_a_clear_error(value: str):
    with pytest.raises(SystemExit) as exc:
        from_env({"MAX_REQUEST_BYTES": value})
    message = str(exc.value)
    assert "MAX_REQUEST_BYTES" in message and repr(value) in message


def test_negative_size_setting_is_a_clear_error():
    with pytest.raises(SystemExit, match="MAX_IMPORT_BYTES"):
        from_env({"MAX_IMPORT_BYTES": "-1"})


CLOUD_RUN = {"K_SERVICE": "svc", "TURSO_DATABASE_URL": "libsql://logs-org.turso.io", "TURSO_AUTH_TOKEN": "t"}


def test_cloud_run_defaults():
    s = from_env({**CLOUD_RUN, "SECRET_KEY": "k"})
    assert s.on_cloud_run and s.https_only and s.trusted_proxy
    assert s.log_sinks == ("stdout", "turso")
    assert not s.logs_per_instance
    assert not from_env({**CLOUD_RUN, "HTTPS_ONLY": "false"}).https_only


def test_refuses_to_start_on_cloud_run_without_secret_key(tmp_path: Path):
    s = from_env({**CLOUD_RUN, "DATA_DIR": str(tmp_path / "data")})
    with pytest.raises(SystemExit, match="SECRET_KEY"):
        s.with_secret_key()
    with pytest.raises(SystemExit, match="SECRET_KEY"):
        create_app(s)
    assert not (tmp_path / "data" / "secret_key").exists()


def test_explicit_secret_key_is_used_as_is(tmp_path: Path):
    s = from_env({"SECRET_KEY": "given", "DATA_DIR": str(tmp_path)})
    assert s.with_secret_key().secret_key == "given"
    assert not (tmp_path / "secret_key").exists()


def test_secret_key_generated_once_and_reused(tmp_path: Path):
    s = from_env({"DATA_DIR": str(tmp_path / "data")})
    first = s.with_secret_key().secret_key
    assert len(first) >= 32
    key_file = tmp_path / "data" / "secret_key"
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert from_env({"DATA_DIR": str(tmp_path / "data")}).with_secret_key().secret_key == first
    assert load_or_create_key(key_file) == first
    # no temporary files left behind
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["secret_key"]


def test_different_data_dirs_get_different_keys(tmp_path: Path):
    assert load_or_create_key(tmp_path / "a" / "k") != load_or_create_key(tmp_path / "b" / "k")


def test_key_race_between_threads(tmp_path: Path):
    path = tmp_path / "secret_key"
    n = 16
    barrier = threading.Barrier(n)

    def race(_: int) -> str:
        barrier.wait()
        return load_or_create_key(path)

    with ThreadPoolExecutor(n) as pool:
        keys = set(pool.map(race, range(n)))
    assert keys == {path.read_text().strip()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]


RACER = """
import sys, time
from pathlib import Path
from settings import load_or_create_key
go = Path(sys.argv[1])
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    pass  # spin: start together as closely as possible
print(load_or_create_key(Path(sys.argv[2])))
"""


def test_key_race_between_processes(tmp_path: Path):
    go, path = tmp_path / "go", tmp_path / "data" / "secret_key"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(go), str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    keys = {out.strip() for out, _ in results}
    assert keys == {path.read_text().strip()}
    assert sorted(os.listdir(path.parent)) == ["secret_key"]


@pytest.mark.parametrize("content", ["", "\n", "   "])
def test_empty_key_file_is_refused_not_used(tmp_path: Path, content: str):
    # An empty key would sign every session with "": anyone could forge cookies.
    path = tmp_path / "secret_key"
    path.write_text(content)
    with pytest.raises(SystemExit, match="secret_key"):
        load_or_create_key(path)



@pytest.mark.anyio
async def test_warnings_are_logged_at_start_up(tmp_path: Path, caplog):
    s = from_env({"SECRET_KEY": "'quoted'", "DATA_DIR": str(tmp_path)})
    app = create_app(s)
    with caplog.at_level("WARNING", logger="app"):
        async with app.router.lifespan_context(app):
            pass
    messages = [r.getMessage() for r in caplog.records]
    assert any("SECRET_KEY was wrapped in quotes" in m for m in messages)
    assert all("quoted" not in m.replace("SECRET_KEY was wrapped in quotes", "") for m in messages)


def test_log_exclude_prefixes_are_configurable(tmp_path):
    from settings import Settings

    assert Settings.from_env({}, env_file=None).log_exclude_prefixes == ("/static", "/health")
    custom = Settings.from_env({"LOG_EXCLUDE_PREFIXES": " /static , /metrics,"}, env_file=None)
    assert custom.log_exclude_prefixes == ("/static", "/metrics")


# --- settings are checked at start ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("MAX_REQUEST_BYTES", "64MiB", "from 1024 to 33554432"),
        ("MAX_REQUEST_BYTES", "100", "from 1024 to 33554432"),
        ("MAX_REQUEST_BYTES", "67108864", "from 1024 to 33554432"),
        ("MAX_IMPORT_BYTES", "1073741824", "from 1024 to 33554432"),
        ("HTTPS_ONLY", "enabled", "on (1, true, yes, on) or off (0, false, no, off)"),
        ("TEMPLATE_RELOAD", "2", "on (1, true, yes, on) or off (0, false, no, off)"),
        ("LOG_DB_EPHEMERAL", "y", "on (1, true, yes, on) or off (0, false, no, off)"),
        # The tracing options, read through TracingConfig.from_env, stop start-up the same way.
        ("LOG_HTML_BODIES", "Summary", "summary, full"),
        ("LOG_SINKS", "csv,datadog", "csv, stdout, turso"),
        ("LOG_FLUSH", "never", "background, request"),
        ("WEB_CONCURRENCY", "1000", "from 1 to 64"),
        ("TRUST_PROXY", "yes please", "on (1, true, yes, on) or off (0, false, no, off)"),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line(name: str, value: str, allowed: str):
    with pytest.raises(SystemExit) as exc:
        from_env({name: value})
    message = str(exc.value.code)
    assert "\n" not in message
    assert message.startswith(name) and allowed in message and value.split(",")[-1] in message, message


@pytest.mark.parametrize(("value", "expected"), [("TRUE", True), ("on", True), ("1", True), ("No", False), ("off", False), ("0", False)])
def test_booleans_take_either_spelling_in_any_case(value: str, expected: bool):
    s = from_env({"HTTPS_ONLY": value, "TEMPLATE_RELOAD": value, "LOG_DB_EPHEMERAL": value})
    assert s.https_only is s.template_reload is s.log_db_ephemeral is expected


def test_the_bounds_are_in_the_docs():
    from settings import LIMITS

    doc = (ROOT / "docs" / "settings.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in doc.splitlines() if line.startswith("| `")}
    for name, (least, most) in LIMITS.items():
        assert f"{least:,}" in rows[name] and f"{most:,}" in rows[name], name
    assert "LOG_DB_EPHEMERAL" in rows


# --- Cloud Run needs a remote log database --------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {"K_SERVICE": "svc", "SECRET_KEY": "k"},  # demo mode (no Supabase) too
        {"K_SERVICE": "svc", "SECRET_KEY": "k", "SUPABASE_URL": "https://p.supabase.co", "SUPABASE_ANON_KEY": "a"},
        {"K_SERVICE": "svc", "SECRET_KEY": "k", "TURSO_DATABASE_URL": "file:/tmp/logs.db"},
        {"K_SERVICE": "svc", "SECRET_KEY": "k", "LOG_DB_EPHEMERAL": "0"},
    ],
)
def test_cloud_run_refuses_a_log_database_on_the_instance(environ: dict[str, str]):
    with pytest.raises(SystemExit) as exc:
        from_env(environ)
    message = str(exc.value.code)
    assert "\n" not in message
    for words in ("Cloud Run", "TURSO_DATABASE_URL", "TURSO_AUTH_TOKEN", "LOG_DB_EPHEMERAL=1"):
        assert words in message, message


@pytest.mark.parametrize(
    ("environ", "per_instance"),
    [
        ({"K_SERVICE": "svc", "LOG_DB_EPHEMERAL": "1"}, True),  # the operator's explicit choice
        ({"K_SERVICE": "svc", "LOG_DB_EPHEMERAL": "1", "TURSO_DATABASE_URL": "file:/tmp/l.db"}, True),
        ({"K_SERVICE": "svc", "TURSO_DATABASE_URL": "libsql://logs-org.turso.io"}, False),
        ({"K_SERVICE": "svc", "TURSO_DATABASE_URL": "https://logs-org.turso.io"}, False),
        ({"K_SERVICE": "svc", "LOG_SINKS": ""}, True),  # logging off: nothing is written to lose
        ({}, False),  # off Cloud Run the file stays on the machine's disk
        ({"LOG_DB_EPHEMERAL": "1"}, False),
    ],
)
def test_cloud_run_starts_with_a_remote_log_database_or_the_opt_in(environ: dict[str, str], per_instance: bool):
    assert from_env({"SECRET_KEY": "k", **environ}).logs_per_instance is per_instance


def test_deploy_doc_quotes_the_cloud_run_error_as_the_code_says_it():
    with pytest.raises(SystemExit) as exc:
        from_env({"K_SERVICE": "svc", "SECRET_KEY": "k"})
    assert f"    {exc.value.code}\n" in (ROOT / "docs" / "deploy.md").read_text()
