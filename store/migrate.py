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


def migrate(conn: sqlite3.Connection, directory: Path = MIGRATIONS_DIR) -> int:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, path in pending(current, directory):
        # executescript commits first; wrap each file in its own transaction so a failing
        # migration leaves the database at the previous version, not half-migrated.
        try:
            conn.executescript(f"BEGIN;\n{path.read_text()}\nPRAGMA user_version = {number};\nCOMMIT;")
        except sqlite3.Error:
            # executescript stops at the error with our BEGIN still open; the next commit on
            # this connection would otherwise persist half the file.
            if conn.in_transaction:
                conn.rollback()
            raise
        current = number
    return current
