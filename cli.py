"""Command line: `python -m cli <command>`. Admin chores that have no page."""

from __future__ import annotations

import argparse
import sys

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
    args = parser.parse_args(argv)
    settings = settings or Settings.from_env()
    if args.command == "grant-admin":
        return grant_admin(settings, args.email)
    return 2


if __name__ == "__main__":
    sys.exit(main())
