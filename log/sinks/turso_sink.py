"""TursoSink: log rows into the log database (Turso over HTTP, or a local SQLite file).

One batch = one transaction = one HTTP request: for each chunk, SELECT the ids that already
exist, then INSERT ... ON CONFLICT(id) DO NOTHING; for api_logs, the explorer's rollups count
the rows the batch inserted, in the same transaction (log/db/rollup_batch.sql). Reading before writing inside the same
transaction tells us exactly which rows were replays (same content: harmless) and which were
conflicts (same id, different content: counted and logged, never silently dropped), so a retry
after a lost response can never duplicate or half-apply a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import chain
from typing import Any

import msgspec
from msgspec.structs import astuple

from log.db import hrana
from log.db.errors import LogDatabaseError
from log.core.rows import TABLES, LogRow, columns
from log.sinks.base import SinkError, WriteResult
from log.db.database import LogDatabase, Statement
from log.db.schema import COUNT_STAGED, STAGE_SQL, apply_schema

logger = logging.getLogger("log.turso")

class WritePlan(msgspec.Struct, frozen=True):
    """The statements of one batch's transaction, and where the reads and inserts are in it."""

    statements: list[Statement]
    selects: list[int]
    inserts: list[int]


def write_statements(table: str, rows: Sequence[LogRow], *, as_json: bool = True) -> WritePlan:
    """For each chunk of CHUNK_ROWS rows: SELECT the ids already stored, (api_logs: stage the
    new ids for the rollups), INSERT the chunk; then (api_logs) count the staged rows into the
    rollups, one INSERT ... SELECT ... GROUP BY per rollup table (log/db/rollup_batch.sql).

    Over HTTP (`as_json`) a chunk travels as one JSON text argument (hrana.insert_json_sql)
    unless one of its values would not come out of SQLite's JSON functions as it went in; such
    a chunk binds one argument per value. A database in this process (`file:`) binds every
    value as it is (`as_json=False`): binding is C code there, and SQLite then does not parse a
    JSON text once per column of every row.
    """
    cols = columns(TABLES[table])
    rollups = table == "api_logs"
    out: list[Statement] = []
    selects: list[int] = []
    inserts: list[int] = []
    for chunk in hrana.chunks(rows, hrana.CHUNK_ROWS):
        doc = rows_json(chunk) if as_json else None
        if doc is None:
            for part in hrana.chunks(chunk, hrana.chunk_size(len(cols))):
                ids = [r.id for r in part]
                selects.append(len(out))
                out.append((hrana.select_by_ids_sql(table, cols, len(part)), ids))
                if rollups:
                    out.append((STAGE_SQL, [_json.encode(ids).decode()]))
                inserts.append(len(out))
                # Struct fields are the columns, in order (log/core/rows.py).
                out.append((hrana.insert_sql(table, cols, len(part)), list(chain.from_iterable(map(astuple, part)))))
        else:
            ids_json = _json.encode([r.id for r in chunk]).decode()
            selects.append(len(out))
            out.append((hrana.select_by_json_ids_sql(table, cols), [ids_json]))
            if rollups:
                out.append((STAGE_SQL, [ids_json]))
            inserts.append(len(out))
            out.append((hrana.insert_json_sql(table, cols), [doc]))
    if rollups and rows:
        out.extend((sql, ()) for sql in COUNT_STAGED)
    return WritePlan(out, selects, inserts)


_json = msgspec.json.Encoder()
_JSON_SAFE = frozenset({str, int, type(None)})
_INT64 = (-(2**63), 2**63 - 1)


def rows_json(rows: Sequence[LogRow]) -> str | None:
    """The rows as one JSON array of arrays (column order), or None when a value would not
    survive SQLite's JSON functions intact: text holding a NUL (cut there), an integer outside
    64 bits (read back as a float), or anything but text, integer or NULL. Checked a column at
    a time: the types of a column in one C-level pass, the range of its integers only where
    it has some."""
    tuples = [astuple(r) for r in rows]
    for column in zip(*tuples):
        kinds = set(map(type, column))
        if not kinds <= _JSON_SAFE:
            return None
        if int in kinds:
            ints = column if len(kinds) == 1 else [v for v in column if v.__class__ is int]
            if min(ints) < _INT64[0] or max(ints) > _INT64[1]:
                return None
    doc = _json.encode(tuples)
    # The escape shows up in the encoding whenever a text holds a NUL (and, rarely, when a
    # text holds a backslash followed by "u0000": then the exact check below says no).
    if b"\\u0000" in doc and any("\x00" in v for t in tuples for v in t if v.__class__ is str):
        return None
    return doc.decode()


class Classified(msgspec.Struct, frozen=True):
    new: int
    already_present: int
    conflict_ids: list[int]


def classify(rows: Sequence[LogRow], existing: dict[int, dict[str, Any]]) -> Classified:
    """Compare the batch with what was already stored (and with earlier rows of the same batch)."""
    seen: dict[int, LogRow] = {}
    new = same = 0
    conflicts: list[int] = []
    for row in rows:
        if row.id in seen:
            before: LogRow | None = seen[row.id]
        elif row.id in existing:
            before = _as_row(type(row), existing[row.id])
        else:
            before = None
        if before is None and row.id not in existing:
            new += 1
            seen[row.id] = row
        elif before == row:
            same += 1
        else:
            conflicts.append(row.id)
    return Classified(new, same, conflicts)


def _as_row(row_type: type[LogRow], stored: dict[str, Any]) -> LogRow | None:
    try:
        return msgspec.convert(stored, row_type)
    except msgspec.ValidationError:
        return None  # stored with other types: it cannot be equal, so it is a conflict


class TursoSink:
    name = "turso"

    def __init__(self, db: LogDatabase, *, schema_ready: bool = False) -> None:
        self.db = db
        # True when the owner has already applied the schema (Tracing does, before leasing).
        self._schema_ready = schema_ready

    def __repr__(self) -> str:
        return f"TursoSink({self.db!r})"

    async def open(self) -> None:
        if self._schema_ready:
            return
        try:
            await apply_schema(self.db)
            self._schema_ready = True
        except LogDatabaseError as exc:
            # Not logged here: the fan-out reports the stopped lane, and the tracing layer has already
            # said why the database is unusable (one clear line, not three).
            raise SinkError(f"turso: cannot prepare tables: {exc.message}", retryable=exc.retryable) from None

    async def write(self, table: str, rows: Sequence[LogRow]) -> WriteResult:
        if table not in TABLES:
            raise SinkError(f"turso: unknown table {table!r}", retryable=False)
        if not rows:
            return WriteResult(inserted=0)
        try:
            plan = write_statements(table, rows, as_json=not getattr(self.db, "in_process", False))
            outcomes = await self.db.transaction(plan.statements)
        except LogDatabaseError as exc:
            raise SinkError(f"turso: {table} batch not written: {exc.message}", retryable=exc.retryable) from None
        existing = {r["id"]: r for i in plan.selects for r in outcomes[i].rows}
        inserted = sum(outcomes[i].affected_row_count for i in plan.inserts)
        result = classify(rows, existing)
        if result.conflict_ids:
            logger.warning(
                "turso: %d %s rows kept their stored version, ids differ in content: %s",
                len(result.conflict_ids), table, result.conflict_ids[:10],
            )
        if inserted != result.new:  # the database and our reading disagree: say so, trust the DB
            logger.warning("turso: %s inserted %d rows, expected %d", table, inserted, result.new)
        return WriteResult(inserted, result.already_present, len(result.conflict_ids))

    async def close(self) -> None:
        """Nothing to release: the HTTP client belongs to the app's lifespan."""
