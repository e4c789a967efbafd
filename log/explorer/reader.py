"""Read access to the log database: what a log explorer or a progress bar asks of it.

The SQL is built by the pure functions of queries.py; this shell only runs it. Every method
raises LogDatabaseError when the database does not answer. Rows reach the log database only
when the "turso" sink writes them: `written` says so (without it, reads find nothing new).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from log.core.rows import ApiLog, TaskProgressLog
from log.db.database import LogDatabase, fetch_rows
from log.explorer.queries import (
    RARE_STATUS_ROWS,
    TRACE_API_WHERE,
    TRACE_STEPS_WHERE,
    UTC,
    LogFilters,
    OverviewPlan,
    build_list_query,
    build_overview,
    build_tail_query,
    chart_window,
    extent_query,
    new_errors_query,
    route_paths_query,
    status_class_count,
)


class LogReader:
    def __init__(self, db: LogDatabase | None, *, written: bool) -> None:
        self.db = db
        self.written = written and db is not None

    def _db(self) -> LogDatabase:
        if self.db is None:
            raise RuntimeError("the log database is not open (Tracing.open() has not run)")
        return self.db

    async def requests(
        self, filters: LogFilters, *, now: dt.datetime, limit: int, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """One page of api_logs rows matching `filters`, newest first (keyset: ids below before_id)."""
        db = self._db()
        rare = False
        if (count_query := status_class_count(filters)) is not None:
            rare = (await db.select(*count_query))[0]["n"] <= RARE_STATUS_ROWS
        sql, args = build_list_query(filters, now=now, limit=limit, before_id=before_id, rare_status=rare)
        return await db.select(sql, args)

    async def tail(self, filters: LogFilters, *, now: dt.datetime, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Rows matching `filters` newer than after_id, newest first (the live tail's poll)."""
        return await self._db().select(*build_tail_query(filters, now=now, after_id=after_id, limit=limit))

    async def new_errors(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        """Error signatures first seen in [start, end), newest first (queries.new_errors_query)."""
        return await self._db().select(*new_errors_query(start, end))

    async def route_paths(self, route: str, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        """The literal paths behind a route template in [start, end), busiest first."""
        return await self._db().select(*route_paths_query(route, start, end))

    async def trace(self, trace_id: str) -> tuple[list[ApiLog], list[TaskProgressLog]]:
        """Every request and task row of one trace, each in time order."""
        db = self._db()
        api = await fetch_rows(db, ApiLog, TRACE_API_WHERE, [trace_id])
        steps = await fetch_rows(db, TaskProgressLog, TRACE_STEPS_WHERE, [trace_id])
        return api, steps

    async def overview(
        self, filters: LogFilters, *, now: dt.datetime
    ) -> tuple[OverviewPlan, list[dict[str, Any]], list[dict[str, Any]]]:
        """The overview's plan, its time-series rows and its per-endpoint rows (from rollups)."""
        db = self._db()
        oldest = None
        if filters.range in ("all", "custom"):
            found = await db.select("SELECT MIN(minute) AS m FROM api_status_minute")
            if found and found[0]["m"] is not None:
                oldest = dt.datetime.fromtimestamp(found[0]["m"] * 60, UTC)
        plan = build_overview(filters, now=now, oldest=oldest)
        extent = (await db.select(*extent_query(plan.start, plan.end)))[0]
        plan = chart_window(plan, extent["lo"], extent["hi"])
        series_rows = await db.select(*plan.series)
        part_rows = [row for part in plan.endpoint_parts for row in await db.select(*part)]
        return plan, series_rows, part_rows

    async def last_step(self, trace_id: str, task_name: str) -> dict[str, Any] | None:
        """The latest row of a task run (step_name, status, output_data), or None."""
        rows = await self._db().select(
            "SELECT step_name, status, output_data FROM task_progress_logs"
            " WHERE trace_id = ? AND task_name = ? ORDER BY execution_order DESC LIMIT 1",
            [trace_id, task_name],
        )
        return rows[0] if rows else None
