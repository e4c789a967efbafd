"""Command line: `python -m cli <command>`. Admin chores that have no page.

    python -m cli grant-admin EMAIL
    python -m cli logs sync [--full] [--batch N]
    python -m cli logs export [--since WHEN] [--until WHEN] [--out DIR] [--page-size N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx

from log.tools.export import export_table, parse_when
from log.sinks.replay import load_checkpoint, progress_line, save_checkpoint, sync_csv
from log.core.rows import TABLES
from log.sinks.base import SinkError
from log.db.database import LogDatabase, open_log_database
from log.sinks.turso_sink import TursoSink
from settings import Settings
from store.sqlite import SqliteStore

CHECKPOINT_NAME = ".sync-checkpoint"


def grant_admin(settings: Settings, email: str) -> int:
    store = SqliteStore(settings.data_dir / "app.db")
    try:
        if store.grant_admin(email.strip().lower()):
            print(f"{email} is now an admin.")
            return 0
        print(f"No local account with email {email}.", file=sys.stderr)
        return 1
    finally:
        store.conn.close()


class ProgressBar:
    """Plain-text progress on stderr: one line per table, redrawn with \r."""

    def __init__(self, verb: str, out: TextIO) -> None:
        self.verb, self.out, self.table = verb, out, None

    def __call__(self, table: str, done: int, total: int) -> None:
        if self.table not in (None, table):
            self.out.write("\n")
        self.table = table
        self.out.write(progress_line(f"{self.verb} {table:<18}", done, total))
        self.out.flush()

    def end(self) -> None:
        if self.table is not None:
            self.out.write("\n")
            self.out.flush()


async def _with_db(settings: Settings, work: Callable[[LogDatabase], Awaitable[int]]) -> int:
    async with httpx.AsyncClient() as http:
        db = open_log_database(settings.log_database_url, settings.turso_auth_token or None, http)
        try:
            return await work(db)
        finally:
            await db.aclose()


def logs_sync(settings: Settings, *, full: bool = False, batch_size: int = 500, err: TextIO | None = None) -> int:
    err = err or sys.stderr
    url = settings.log_database_url
    checkpoint = settings.logs_path / CHECKPOINT_NAME
    bar = ProgressBar("sync", err)

    async def work(db: LogDatabase) -> int:
        sink = TursoSink(db)
        try:
            await sink.open()
            results = await sync_csv(
                settings.logs_path, sink, synced_upto={} if full else load_checkpoint(checkpoint, url),
                batch_size=batch_size, progress=bar,
                on_checkpoint=lambda upto: save_checkpoint(checkpoint, url, upto),
            )
        except SinkError as exc:
            bar.end()
            print(f"logs sync: {exc}", file=err)
            return 1
        bar.end()
        print(f"logs sync into {db!r} from {settings.logs_path}:")
        for table, counts in results.items():
            print(f"  {table}: {counts.summary()}")
        failed = sum(c.failed for c in results.values())
        if failed:
            print(f"logs sync: {failed} rows failed; run it again to retry them", file=err)
        if any(c.conflicts for c in results.values()):
            print("logs sync: some ids already hold different content in the database (see the log)", file=err)
        return 1 if failed else 0

    return anyio.run(_with_db, settings, work)


def logs_export(
    settings: Settings, *, since: str | None, until: str | None, out: str | None,
    page_size: int = 500, now: dt.datetime | None = None, err: TextIO | None = None,
) -> int:
    err = err or sys.stderr
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    try:
        lo = parse_when(since, now) if since else None
        hi = parse_when(until, now) if until else None
    except ValueError as exc:
        print(f"logs export: {exc}", file=err)
        return 2
    out_dir = settings.data_dir / "logs-export" if out is None else Path(out)
    if out_dir.resolve() == settings.logs_path.resolve():
        print("logs export: --out must not be the live CSV directory (LOG_DIR)", file=err)
        return 2
    bar = ProgressBar("export", err)

    async def work(db: LogDatabase) -> int:
        counts: dict[str, Any] = {}
        try:
            for table in TABLES:
                counts[table] = await export_table(db, table, out_dir, since=lo, until=hi,
                                                   page_size=page_size, progress=bar)
        except Exception as exc:  # HranaError, or a table that does not exist yet
            bar.end()
            print(f"logs export: {exc}", file=err)
            return 1
        bar.end()
        for table, n in counts.items():
            print(f"  {table}: {n} rows -> {out_dir / (table + '.csv')}")
        return 0

    return anyio.run(_with_db, settings, work)


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli")
    commands = parser.add_subparsers(dest="command", required=True)
    grant = commands.add_parser("grant-admin", help="make a local account an admin")
    grant.add_argument("email")
    logs = commands.add_parser("logs", help="tracing logs: CSV files <-> log database (Turso)")
    logs_cmds = logs.add_subparsers(dest="logs_command", required=True)
    sync = logs_cmds.add_parser(
        "sync", help="send every CSV row to TURSO_DATABASE_URL (idempotent, resumable)"
    )
    sync.add_argument("--full", action="store_true", help="ignore the checkpoint, re-send everything")
    sync.add_argument("--batch", type=int, default=500, help="rows per request (default 500)")
    export = logs_cmds.add_parser("export", help="copy rows from the log database to CSV files")
    export.add_argument("--since", help="created_at >= this (2026-11-27, '2026-11-27 10:00', or 24h / 7d ago)")
    export.add_argument("--until", help="created_at < this (same forms)")
    export.add_argument("--out", help="output directory (default DATA_DIR/logs-export)")
    export.add_argument("--page-size", type=int, default=500, help="rows per request (default 500)")
    args = parser.parse_args(argv)
    settings = settings or Settings.from_env()
    if args.command == "grant-admin":
        return grant_admin(settings, args.email)
    if args.command == "logs" and args.logs_command == "sync":
        return logs_sync(settings, full=args.full, batch_size=max(1, args.batch))
    if args.command == "logs" and args.logs_command == "export":
        return logs_export(settings, since=args.since, until=args.until, out=args.out,
                           page_size=max(1, args.page_size))
    return 2


if __name__ == "__main__":
    sys.exit(main())
