"""The log database's DDL: the tables (schema.sql) and the explorer's rollups (rollups.sql).

Both ship with the package and are applied together, idempotently, in ONE transaction
(`apply_schema`): the rollups' backfill must see their tables empty or not at all. Hrana runs
one statement per Stmt, so the scripts are split here, by the one splitter of the package.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Protocol

HERE = Path(__file__).parent
SCHEMA_PATH = HERE / "schema.sql"
ROLLUPS_PATH = HERE / "rollups.sql"
SCHEMA_SQL: str = SCHEMA_PATH.read_text(encoding="utf-8")
ROLLUPS_SQL: str = ROLLUPS_PATH.read_text(encoding="utf-8")


def split_statements(script: str) -> list[str]:
    """Split a script into statements, keeping trigger bodies (BEGIN ...; ... END) whole."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip().rstrip(";").strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement at the end of the script: {buf[:80]!r}")
    return out


# Tables and indexes, then rollup tables, triggers and backfill.
STATEMENTS: tuple[str, ...] = tuple(split_statements(SCHEMA_SQL + "\n" + ROLLUPS_SQL))


class _Transactional(Protocol):
    async def transaction(self, statements: list[tuple[str, tuple[()]]]) -> object: ...


async def apply_schema(db: _Transactional) -> None:
    """Create what is missing (tables, indexes, rollups) in one transaction; safe on every start."""
    await db.transaction([(sql, ()) for sql in STATEMENTS])
