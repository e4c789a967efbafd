"""`python -m cli grant-admin EMAIL`: admin chores without a page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main
from settings import Settings
from store.sqlite import connect

ROOT = Path(__file__).resolve().parents[2]


def add_user(data_dir: Path, email: str, is_admin: bool = False) -> None:
    conn = connect(data_dir / "app.db")
    with conn:
        conn.execute(
            "INSERT INTO users (email, password_hash, is_admin) VALUES (?, 'scrypt$x', ?)",
            (email, is_admin),
        )
    conn.close()


def is_admin(data_dir: Path, email: str) -> bool:
    conn = connect(data_dir / "app.db")
    try:
        return bool(conn.execute("SELECT is_admin FROM users WHERE email = ?", (email,)).fetchone()[0])
    finally:
        conn.close()


def test_grant_admin(tmp_path: Path, capsys):
    add_user(tmp_path, "first@example.com", is_admin=True)
    add_user(tmp_path, "second@example.com")
    assert not is_admin(tmp_path, "second@example.com")
    assert main(["grant-admin", "second@example.com"], settings=Settings(data_dir=tmp_path)) == 0
    assert is_admin(tmp_path, "second@example.com")
    assert "second@example.com is now an admin." in capsys.readouterr().out
    # idempotent
    assert main(["grant-admin", "second@example.com"], settings=Settings(data_dir=tmp_path)) == 0


def test_grant_admin_normalises_the_email(tmp_path: Path):
    add_user(tmp_path, "mixed@example.com")
    assert main(["grant-admin", "  Mixed@Example.COM "], settings=Settings(data_dir=tmp_path)) == 0
    assert is_admin(tmp_path, "mixed@example.com")


def test_grant_admin_unknown_email(tmp_path: Path, capsys):
    add_user(tmp_path, "someone@example.com")
    assert main(["grant-admin", "nobody@example.com"], settings=Settings(data_dir=tmp_path)) == 1
    err = capsys.readouterr().err
    assert "No local account" in err and "nobody@example.com" in err
    assert not is_admin(tmp_path, "someone@example.com")


def test_grant_admin_on_a_fresh_data_dir(tmp_path: Path):
    data_dir = tmp_path / "new"
    assert main(["grant-admin", "x@example.com"], settings=Settings(data_dir=data_dir)) == 1


@pytest.mark.parametrize("argv", [[], ["grant-admin"], ["no-such-command"]])
def test_usage_errors(argv: list[str], tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv, settings=Settings(data_dir=tmp_path))
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_runs_as_a_module_with_settings_from_the_environment(tmp_path: Path):
    add_user(tmp_path, "env@example.com")
    env = {k: v for k, v in os.environ.items() if k != "K_SERVICE"}
    env["DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "cli", "grant-admin", "env@example.com"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert is_admin(tmp_path, "env@example.com")
