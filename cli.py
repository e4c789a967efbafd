"""Command line: `python -m cli <command>`. Admin chores that have no page.

    python -m cli grant-admin EMAIL
    python -m cli logs sync [--full] [--batch N]
    python -m cli logs export [--since WHEN] [--until WHEN] [--out DIR] [--page-size N]
    python -m cli logs prune [--dry-run] [--batch N]
"""

from __future__ import annotations

import argparse
import sys

from log import export_logs, prune_logs, sync_logs
from settings import Settings
from store.sqlite import SqliteStore


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
    prune = logs_cmds.add_parser(
        "prune",
        help="delete log rows, rollups and rotated CSV files past LOG_RETENTION_DAYS / LOG_ROLLUP_RETENTION_DAYS",
    )
    prune.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    prune.add_argument("--batch", type=int, default=5000, help="rows per transaction (default 5000)")
    args = parser.parse_args(argv)
    settings = settings or Settings.from_env()
    if args.command == "grant-admin":
        return grant_admin(settings, args.email)
    if args.command == "logs" and args.logs_command == "sync":
        return sync_logs(settings.tracing, full=args.full, batch_size=max(1, args.batch))
    if args.command == "logs" and args.logs_command == "export":
        return export_logs(settings.tracing, since=args.since, until=args.until, out=args.out,
                           page_size=max(1, args.page_size))
    if args.command == "logs" and args.logs_command == "prune":
        return prune_logs(settings.tracing, dry_run=args.dry_run, batch_size=max(1, args.batch))
    return 2


if __name__ == "__main__":
    sys.exit(main())
