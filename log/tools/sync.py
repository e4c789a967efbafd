"""`logs sync`: every CSV row (all rotated files, all workers) -> the log database.

Idempotent and resumable: a checkpoint in the log directory remembers how far each table got
for this database; a second run inserts nothing. Rows older than the retention window
(LOG_RETENTION_DAYS) are skipped: the prune may have deleted them, and the rollups would count
them again. Prints read / already present / inserted / failed / conflicts (/ skipped as expired)
per table.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

import anyio
import httpx

from log.config import TracingConfig
from log.core.retention import keep_from
from log.db.database import LogDatabase, open_log_database
from log.sinks.base import SinkError
from log.sinks.replay import load_checkpoint, save_checkpoint, sync_csv
from log.sinks.turso_sink import TursoSink
from log.tools.progress import ProgressBar

CHECKPOINT_NAME = ".sync-checkpoint"


async def with_log_database(config: TracingConfig, work: Callable[[LogDatabase], Awaitable[int]]) -> int:
    """Run `work` against the configured log database, opened for it and closed after."""
    async with httpx.AsyncClient() as http:
        db = open_log_database(config.log_database_url, config.auth_token or None, http)
        try:
            return await work(db)
        finally:
            await db.aclose()


def sync_logs(
    config: TracingConfig, *, full: bool = False, batch_size: int = 500,
    out: TextIO | None = None, err: TextIO | None = None, now: dt.datetime | None = None,
) -> int:
    """Send the CSV rows (but expired ones) to the log database; returns a process exit status
    (0: all sent)."""
    out, err = out or sys.stdout, err or sys.stderr
    keep = keep_from(now or dt.datetime.now(dt.UTC), config.retention_days)
    url = config.log_database_url
    checkpoint = config.logs_path / CHECKPOINT_NAME
    bar = ProgressBar("sync", err)

    async def work(db: LogDatabase) -> int:
        sink = TursoSink(db)
        try:
            await sink.open()
            results = await sync_csv(
                config.logs_path, sink, synced_upto={} if full else load_checkpoint(checkpoint, url),
                batch_size=batch_size, progress=bar,
                on_checkpoint=lambda upto: save_checkpoint(checkpoint, url, upto), keep_from=keep,
            )
        except SinkError as exc:
            bar.end()
            print(f"logs sync: {exc}", file=err)
            return 1
        bar.end()
        print(f"logs sync into {db!r} from {config.logs_path}:", file=out)
        for table, counts in results.items():
            print(f"  {table}: {counts.summary()}", file=out)
        failed = sum(c.failed for c in results.values())
        if failed:
            print(f"logs sync: {failed} rows failed; run it again to retry them", file=err)
        if any(c.conflicts for c in results.values()):
            print("logs sync: some ids already hold different content in the database (see the log)", file=err)
        return 1 if failed else 0

    return anyio.run(with_log_database, config, work)
