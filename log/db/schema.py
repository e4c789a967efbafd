"""The log database's DDL: the tables (schema.sql) and the explorer's rollups (rollups.sql), and
the statements a write batch runs to keep those rollups (rollup_batch.sql).

Both ship with the package and are applied together, idempotently, in ONE transaction
(`apply_schema`): the rollups' backfill must see their tables empty or not at all. Hrana runs
one statement per Stmt, so the scripts are split here, by the one splitter of the package.

Columns appended to a table after it first shipped (ADDED_COLUMNS) reach a database made before
them by ALTER TABLE ... ADD COLUMN, in the same transaction, between the tables and the rollups
(whose backfill and indexes read them). SQLite has no ADD COLUMN IF NOT EXISTS, so the
columns present are read first (`pragma_table_info`, on `file:` and over Hrana alike) and only
the missing ones are added.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

from log.db.errors import StatementError

HERE = Path(__file__).parent
SCHEMA_PATH = HERE / "schema.sql"
ROLLUPS_PATH = HERE / "rollups.sql"
SCHEMA_SQL: str = SCHEMA_PATH.read_text(encoding="utf-8")
ROLLUPS_SQL: str = ROLLUPS_PATH.read_text(encoding="utf-8")
ROLLUP_BATCH_PATH = HERE / "rollup_batch.sql"

# (table, column, SQL type) added after the table first shipped, oldest first: only ever append.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (("api_logs", "route", "TEXT"),)


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


TABLE_STATEMENTS: tuple[str, ...] = tuple(split_statements(SCHEMA_SQL))
ROLLUP_STATEMENTS: tuple[str, ...] = tuple(split_statements(ROLLUPS_SQL))
# Tables and indexes, then rollup tables, backfill and the staging table.
STATEMENTS: tuple[str, ...] = TABLE_STATEMENTS + ROLLUP_STATEMENTS
# A write batch of api_logs rows: STAGE_SQL (one JSON array of ids) before each INSERT chunk,
# then COUNT_STAGED (the rollup upserts, then emptying the staging table) after the last one.
STAGE_SQL, *_count_staged = split_statements(ROLLUP_BATCH_PATH.read_text(encoding="utf-8"))
COUNT_STAGED: tuple[str, ...] = tuple(_count_staged)


def missing_columns(present: Mapping[str, Collection[str]]) -> list[str]:
    """ALTER statements for the ADDED_COLUMNS an existing table lacks.

    `present` maps a table to the columns it has; a table with none does not exist yet and is
    created by schema.sql with every column."""
    return [
        f"ALTER TABLE {table} ADD COLUMN {column} {kind}"
        for table, column, kind in ADDED_COLUMNS
        if present.get(table) and column not in present[table]
    ]


def schema_statements(alters: list[str]) -> list[str]:
    """Everything apply_schema runs, in order: tables, the columns they lack, rollups."""
    return [*TABLE_STATEMENTS, *alters, *ROLLUP_STATEMENTS]


class _Database(Protocol):
    async def transaction(self, statements: list[tuple[str, tuple[()]]]) -> object: ...

    async def select(self, sql: str, args: Any = ()) -> list[dict[str, Any]]: ...


async def present_columns(db: _Database) -> dict[str, set[str]]:
    """The columns each table of ADDED_COLUMNS has now (an empty set: no such table yet)."""
    tables = sorted({table for table, _, _ in ADDED_COLUMNS})
    return {t: {r["name"] for r in await db.select("SELECT name FROM pragma_table_info(?)", [t])} for t in tables}


async def apply_schema(db: _Database) -> None:
    """Create what is missing (tables, added columns, indexes, rollups) in one transaction; safe
    on every start. Two instances starting together may both see a column missing: the second
    one's ALTER then fails (duplicate column), and it reads the columns again and retries."""
    alters = missing_columns(await present_columns(db))
    try:
        await db.transaction([(sql, ()) for sql in schema_statements(alters)])
    except StatementError:
        if not alters:
            raise
        again = missing_columns(await present_columns(db))
        if again == alters:
            raise  # still missing: the failure was something else
        await db.transaction([(sql, ()) for sql in schema_statements(again)])
