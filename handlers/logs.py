"""The log explorer (admins only): request list with filters, one trace, and an overview.

Everyone who is not an admin, signed out included, gets the app's ordinary 404 page: the
explorer does not admit it exists. The tracing package's reader (request.state.tracing.reader)
runs the queries; this module turns filters and rows into templates' context.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handlers._web import render
from log import LogDatabaseError, explorer
from log.explorer import MAX_ID, PRESETS, UTC, FilterError, canonical_uuid, charts, parse_filters, spans, waterfall

PAGE_SIZE = 50
TOP_ENDPOINTS = 15


def _now(request: Request) -> dt.datetime:
    # Tests and benchmarks may pin the clock by putting `log_clock` in the lifespan state.
    clock: Callable[[], dt.datetime] | None = getattr(request.state, "log_clock", None)
    return clock() if clock else dt.datetime.now(UTC)


def _reader(request: Request) -> explorer.LogReader:
    return request.state.tracing.reader


def _is_admin(request: Request) -> bool:
    user = getattr(request.state, "user", None)
    return bool(user is not None and user.is_admin)


def _not_found(request: Request) -> Response:
    return render(request, "not_found.html", status=404, block="not_found")


def _query(params: dict[str, str], **extra: str) -> str:
    """The current filters as a query string (only the non-empty ones), plus `extra`."""
    keep = {k: v for k, v in params.items() if v and k != "before"}
    keep.update({k: v for k, v in extra.items() if v})
    return urlencode(keep)


async def list_logs(request: Request) -> Response:
    if not _is_admin(request):
        return _not_found(request)
    params = {k: v for k, v in request.query_params.items()}
    ctx: dict[str, Any] = {"params": params, "rows": [], "next_url": None, "error": None,
                           "presets": list(PRESETS), "first_page": "before" not in params}
    try:
        filters = parse_filters(params)
        before = _before_id(params.get("before", ""))
    except FilterError as exc:
        ctx["error"] = str(exc)
        return render(request, "logs.html", ctx, status=422, block="log_results")
    try:
        rows = await _reader(request).requests(filters, now=_now(request), limit=PAGE_SIZE + 1, before_id=before)
    except LogDatabaseError as exc:
        ctx["error"] = f"The log database did not answer: {exc.message}"
        return render(request, "logs.html", ctx, status=503, block="log_results")
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        ctx["next_url"] = "/logs?" + _query(params, before=str(rows[-1]["id"]))
    ctx["rows"] = rows
    ctx["newest_url"] = "/logs?" + _query(params)
    return render(request, "logs.html", ctx, block="log_results")


def _before_id(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_ID:
        raise FilterError("Invalid value for “before”: expected a row id.")
    return int(raw)


def pretty(text: str | None) -> str | None:
    """JSON text -> indented JSON; anything else as it is."""
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


async def _trace_emails(request: Request, user_ids: tuple[str, ...]) -> dict[str, str]:
    """user id -> email where the store can tell (the embedded store can; Supabase without a
    service key cannot): the trace page shows users by id otherwise."""
    lookup = getattr(request.state.store, "user_emails", None)
    if lookup is None or not user_ids:
        return {}
    return await lookup(set(user_ids))


async def show_trace(request: Request) -> Response:
    if not _is_admin(request):
        return _not_found(request)
    trace_id = canonical_uuid(request.path_params["trace_id"])
    if trace_id is None:
        return _not_found(request)
    try:
        api, steps = await _reader(request).trace(trace_id)
    except LogDatabaseError as exc:
        return render(request, "logs_trace.html", {"trace": trace_id, "wf": None, "error": exc.message}, status=503)
    if not api and not steps:
        return _not_found(request)
    wf = spans.build(api, steps)
    ctx = {"trace": trace_id, "wf": wf, "error": None, "tracks": waterfall, "pretty": pretty,
           "emails": await _trace_emails(request, wf.users),
           "started": min(r.created_at for r in [*api, *steps]), "failed": sum(1 for s in wf.steps if s.failed)}
    return render(request, "logs_trace.html", ctx)


async def overview(request: Request) -> Response:
    if not _is_admin(request):
        return _not_found(request)
    params = {k: v for k, v in request.query_params.items()}
    ctx: dict[str, Any] = {"params": params, "presets": list(PRESETS), "error": None}
    try:
        filters = parse_filters(params)
    except FilterError as exc:
        ctx["error"] = str(exc)
        return render(request, "logs_overview.html", ctx, status=422, block="overview")
    try:
        plan, series_rows, part_rows = await _reader(request).overview(filters, now=_now(request))
    except LogDatabaseError as exc:
        ctx["error"] = f"The log database did not answer: {exc.message}"
        return render(request, "logs_overview.html", ctx, status=503, block="overview")
    ctx.update(overview_context(plan.start, plan.end, plan.bucket_minutes, series_rows, part_rows))
    return render(request, "logs_overview.html", ctx, block="overview")


def overview_context(
    start: dt.datetime, end: dt.datetime, bucket_minutes: int, series_rows: list[dict], part_rows: list[dict]
) -> dict[str, Any]:
    """Query results -> what the overview template shows (charts are SVG markup)."""
    by_bucket: dict[int, dict[int, int]] = {}
    for r in series_rows:
        counts = by_bucket.setdefault(r["bucket"], {})
        counts[r["status_class"]] = counts.get(r["status_class"], 0) + int(r["n"])
    first = int(start.timestamp() // 60) // bucket_minutes * bucket_minutes
    last = int(end.timestamp() // 60) // bucket_minutes * bucket_minutes
    buckets = [
        (dt.datetime.fromtimestamp(m * 60, UTC), by_bucket.get(m, {}))
        for m in range(first, last + 1, bucket_minutes)
    ]
    stats = explorer.endpoint_stats(part_rows)
    totals = explorer.status_totals(stats)
    slowest = sorted((s for s in stats if s.p95 is not None), key=lambda s: (-(s.p95 or 0), s.endpoint))
    failing = sorted((s for s in stats if s.errors), key=lambda s: (-s.errors, s.endpoint))[:10]
    top = slowest[:TOP_ENDPOINTS]
    return {
        "start": start, "end": end, "bucket_minutes": bucket_minutes, "buckets": buckets,
        "total": sum(totals.values()), "totals": totals, "stats": stats, "slowest": top, "failing": failing,
        "class_label": charts.class_label, "class_color": charts.class_color,
        "requests_svg": charts.requests_chart(buckets, bucket_minutes),
        "status_svg": charts.status_chart(totals),
        "latency_svg": charts.latency_chart([(s.endpoint, s.p50, s.p95, s.p99) for s in top]),
    }


routes = [
    Route("/logs", list_logs, methods=["GET"]),
    Route("/logs/overview", overview, methods=["GET"]),
    Route("/logs/traces/{trace_id}", show_trace, methods=["GET"]),
]
