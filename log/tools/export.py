"""Rows from the log database back to CSV files (the `logs export` command), in the CSV sink's
exact format (log/core/csv_codec.py), so a deployment that logs to Turso only (Cloud Run, CSV off)
can still get a local copy, and log.sinks.csv_sink.read_rows reads it back.

Pages are keyset-paged on id (WHERE id > last ORDER BY id LIMIT n): each page is one request
and costs the same however deep into the table it is, unlike OFFSET.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import anyio

from log.config import TracingConfig
from log.core.csv_codec import encode_rows, header_line
from log.core.rows import TABLES
from log.db.database import LogDatabase
from log.tools.progress import ProgressBar
from log.tools.sync import with_log_database

Progress = Callable[[str, int, int], None]  # (table, rows written so far, rows expected)

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
STAMP = "%Y-%m-%d %H:%M:%S.%f"
MIN_ID, MAX_ID = -(2**63), 2**63 - 1  # SQLite's INTEGER range


def parse_when(text: str, now: dt.datetime) -> str:
    """'2026-11-27', '2026-11-27 10:00', '2026-11-27T10:00:00Z' (UTC) or '90m', '24h', '7d'
    (ago) -> the created_at text format ('YYYY-MM-DD HH:MM:SS.fff'), which sorts as time does."""
    text = text.strip()
    m = _RELATIVE.match(text)
    if m:
        when = now - dt.timedelta(**{_UNITS[m[2]]: int(m[1])})
    else:
        try:
            when = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            raise ValueError(f"not a date/time or a duration such as 24h: {text!r}") from None
        if when.tzinfo is not None:
            when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when.strftime(STAMP)[:-3]


def page_where(*, since: str | None, until: str | None) -> str:
    """One keyset page's WHERE fragment; its args are (from_id, [since], [until], limit)."""
    where = ["id >= ?"]
    if since is not None:
        where.append("created_at >= ?")
    if until is not None:
        where.append("created_at < ?")
    return f"{' AND '.join(where)} ORDER BY id LIMIT ?"


def count_sql(table: str, *, since: str | None, until: str | None) -> str:
    where = ["1"]
    if since is not None:
        where.append("created_at >= ?")
    if until is not None:
        where.append("created_at < ?")
    return f"SELECT count(*) AS n FROM {table} WHERE {' AND '.join(where)}"


async def export_table(
    db: LogDatabase,
    table: str,
    out_dir: str | os.PathLike[str],
    *,
    since: str | None = None,
    until: str | None = None,
    page_size: int = 500,
    progress: Progress | None = None,
) -> int:
    """Write out_dir/{table}.csv (replacing it only once complete); returns the row count."""
    row_type = TABLES[table]
    bounds = [b for b in (since, until) if b is not None]
    total = (await db.select(count_sql(table, since=since, until=until), bounds))[0]["n"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final, tmp = out / f"{table}.csv", out / f".{table}.csv.part"
    where, from_id, written = page_where(since=since, until=until), MIN_ID, 0
    with tmp.open("w", encoding="utf-8", newline="") as f:
        f.write(header_line(row_type))
        while True:
            page = await db.fetch_rows(row_type, where, [from_id, *bounds, page_size])
            if not page:
                break
            f.write(encode_rows(page))
            written += len(page)
            if progress is not None:
                progress(table, written, max(total, written))
            if len(page) < page_size or page[-1].id == MAX_ID:
                break
            from_id = page[-1].id + 1
    os.replace(tmp, final)
    return written


def export_logs(
    config: TracingConfig, *, since: str | None, until: str | None, out: str | os.PathLike[str] | None,
    page_size: int = 500, now: dt.datetime | None = None, err: TextIO | None = None,
) -> int:
    """Copy both tables' rows (created_at in [since, until)) to CSV files in `out`
    (default DATA_DIR/logs-export); returns a process exit status."""
    err = err or sys.stderr
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    try:
        lo = parse_when(since, now) if since else None
        hi = parse_when(until, now) if until else None
    except ValueError as exc:
        print(f"logs export: {exc}", file=err)
        return 2
    out_dir = config.data_dir / "logs-export" if out is None else Path(out)
    if out_dir.resolve() == config.logs_path.resolve():
        print("logs export: --out must not be the live CSV directory (LOG_DIR)", file=err)
        return 2
    bar = ProgressBar("export", err)

    async def work(db: LogDatabase) -> int:
        counts: dict[str, int] = {}
        try:
            for table in TABLES:
                counts[table] = await export_table(db, table, out_dir, since=lo, until=hi,
                                                   page_size=page_size, progress=bar)
        except Exception as exc:  # LogDatabaseError, or a table that does not exist yet
            bar.end()
            print(f"logs export: {exc}", file=err)
            return 1
        bar.end()
        for table, n in counts.items():
            print(f"  {table}: {n} rows -> {out_dir / (table + '.csv')}")
        return 0

    return anyio.run(with_log_database, config, work)
