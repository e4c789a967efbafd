"""The log tables' DDL (log/schema.sql) as constants, read once: it ships with the code.

STATEMENTS splits the script for clients that take one statement per request (Turso's
/v2/pipeline); sqlite3's executescript can take SCHEMA_SQL whole.
"""

from __future__ import annotations

from pathlib import Path

SCHEMA_SQL: str = (Path(__file__).parent / "schema.sql").read_text(encoding="utf-8")


def _statements(script: str) -> tuple[str, ...]:
    # The DDL has no string literals containing ';' or comment lines with ';', so a plain split is exact.
    body = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return tuple(s.strip() for s in body.split(";") if s.strip())


STATEMENTS: tuple[str, ...] = _statements(SCHEMA_SQL)
