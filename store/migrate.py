"""Numbered migrations (store/migrations/NNN_name.sql), applied in order on start.

`PRAGMA user_version` records the last applied number, so each file runs exactly once.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def pending(current: int, directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob("*.sql"):
        match = re.match(r"(\d+)_", path.name)
        if match and int(match.group(1)) > current:
            found.append((int(match.group(1)), path))
    return sorted(found)


def statements(script: str) -> list[str]:
    """A migration file's statements, each whole: pieces up to each `;` are joined until
    sqlite3.complete_statement says the statement ends (so a `;` inside a string literal or a
    trigger's BEGIN ... END does not split it)."""
    out, buf = [], ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                out.append(buf)
            buf = ""
    return out


def migrate(conn: sqlite3.Connection, directory: Path = MIGRATIONS_DIR) -> int:
    """Apply the pending files in order, each in its own transaction with its version number.

    Several processes may start on one database at once (WEB_CONCURRENCY): each file runs under
    BEGIN IMMEDIATE, which takes the write lock before the version is read, so the second process
    waits (busy_timeout), then finds the file applied and skips it. A failing file rolls back to
    the previous version."""
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            todo = pending(current, directory)
            if not todo:
                conn.rollback()
                return current
            number, path = todo[0]
            for sql in statements(path.read_text()):
                conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.commit()
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
