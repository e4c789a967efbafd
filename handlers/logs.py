"""The log explorer (admins only): request list with filters, one trace, and an overview.

Everyone who is not an admin, signed out included, gets the app's ordinary 404 page: the
explorer does not admit it exists. The tracing package's reader (request.state.tracing.reader)
runs the queries; this module turns filters and rows into templates' context.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from handlers._web import is_htmx, render
from log import LogDatabaseError, explorer
from log.explorer import (
    MAX_ID, PRESETS, UTC, FilterError, canonical_uuid, charts, list_rows, parse_filters, spans, trace_rows, waterfall,
)

PAGE_SIZE = 50
# The live tail's poll. Its own requests are not logged (settings.py adds this path to the
# tracing's excluded prefixes), so the tail never shows itself polling.
TAIL_PATH = "/logs/tail"
TAIL_LIMIT = 100  # rows per poll; a burst beyond this shows on the next reload


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


def _without_empty(request: Request) -> Response | None:
    """A plain GET form submits every field; empty filters are left out of the URL, so such a
    request is sent on to the same URL without them (htmx requests drop them in app.js)."""
    items = request.query_params.multi_items()
    if is_htmx(request) or all(v.strip() for _, v in items):
        return None
    query = urlencode([(k, v) for k, v in items if v.strip()])
    return RedirectResponse(request.url.path + ("?" + query if query else ""), status_code=303)


async def _emails(request: Request, user_ids: Iterable[str | None]) -> dict[str, str]:
    """user id -> email, where the store can tell (the embedded store can; Supabase without a
    service key cannot, and emails are not copied into logs): users are shown by id otherwise."""
    lookup = getattr(request.state.store, "user_emails", None)
    ids = {u for u in user_ids if u}
    if lookup is None or not ids:
        return {}
    return await lookup(ids)


async def _user_by_email(request: Request, filters: explorer.LogFilters) -> explorer.LogFilters:
    """The user filter takes an email where the store can tell its account id (logs hold ids)."""
    lookup = getattr(request.state.store, "user_id_for_email", None)
    if "@" not in filters.user or lookup is None:
        return filters
    user_id = await lookup(filters.user)
    return msgspec.structs.replace(filters, user=user_id) if user_id else filters


async def list_logs(request: Request) -> Response:
    if not _is_admin(request):
        return _not_found(request)
    if (clean := _without_empty(request)) is not None:
        return clean
    params = {k: v for k, v in request.query_params.items()}
    ctx: dict[str, Any] = {"params": params, "rows": [], "next_url": None, "error": None,
                           "presets": list(PRESETS), "first_page": "before" not in params,
                           "tail": False, "rows_html": ""}
    try:
        filters = parse_filters(params)
        before = _row_id(params.get("before", ""), "before")
    except FilterError as exc:
        ctx["error"] = str(exc)
        return render(request, "logs.html", ctx, status=422, block="log_results")
    filters = await _user_by_email(request, filters)
    try:
        rows = await _reader(request).requests(filters, now=_now(request), limit=PAGE_SIZE + 1, before_id=before)
    except LogDatabaseError as exc:
        ctx["error"] = f"The log database did not answer: {exc.message}"
        return render(request, "logs.html", ctx, status=503, block="log_results")
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        ctx["next_url"] = "/logs?" + _query(params, before=str(rows[-1]["id"]))
    ctx["rows"] = rows
    ctx["rows_html"] = list_rows.request_rows(rows, await _emails(request, (r["user_id"] for r in rows)))
    ctx["newest_url"] = "/logs?" + _query(params)
    # The live tail runs on the first page only: it adds rows above the newest one shown.
    ctx["tail"] = params.get("tail") == "1" and before is None
    ctx["tail_url"] = _tail_url(params, rows[0]["id"] if rows else 0)
    ctx["tail_on_url"] = "/logs?" + _query(params, tail="1")
    ctx["tail_off_url"] = "/logs?" + _query({k: v for k, v in params.items() if k != "tail"})
    return render(request, "logs.html", ctx, block="log_results")


def _tail_url(params: dict[str, str], after: int) -> str:
    return TAIL_PATH + "?" + _query({k: v for k, v in params.items() if k != "tail"}, after=str(after))


async def tail(request: Request) -> Response:
    """One poll of the live tail: rows newer than `after` (the newest shown), as table rows for
    the top of the list, plus the poller again with the new `after`. Nothing new: 204, and the
    poller keeps its URL."""
    if not _is_admin(request):
        return _not_found(request)
    params = {k: v for k, v in request.query_params.items()}
    try:
        filters = parse_filters(params)
        after = _row_id(params.get("after", ""), "after") or 0
    except FilterError as exc:
        return Response(str(exc), status_code=422, media_type="text/plain")
    try:
        filters = await _user_by_email(request, filters)
        rows = await _reader(request).tail(filters, now=_now(request), after_id=after, limit=TAIL_LIMIT)
    except LogDatabaseError as exc:
        # Keep polling: the next poll may find the database back.
        return Response(f"The log database did not answer: {exc.message}", status_code=204)
    if not rows:
        return Response(status_code=204)
    # after=0: the list was empty when rendered, so its "no requests" row goes.
    emails = await _emails(request, (r["user_id"] for r in rows))
    ctx = {"rows_html": list_rows.request_rows(rows, emails), "tail_url": _tail_url(params, rows[0]["id"]), "clear_empty": after == 0}
    return render(request, "_logs_tail.html", ctx, partial=True)


def _row_id(raw: str, name: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_ID:
        raise FilterError(f"Invalid value for “{name}”: expected a row id.")
    return int(raw)


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
    ctx = {"trace": trace_id, "wf": wf, "error": None, "tracks": waterfall, "rows": trace_rows,
           "emails": await _emails(request, wf.users),
           "started": min(r.created_at for r in [*api, *steps]), "failed": sum(1 for s in wf.steps if s.failed)}
    return render(request, "logs_trace.html", ctx)


async def overview(request: Request) -> Response:
    if not _is_admin(request):
        return _not_found(request)
    if (clean := _without_empty(request)) is not None:
        return clean
    params = {k: v for k, v in request.query_params.items()}
    ctx: dict[str, Any] = {"params": params, "presets": list(PRESETS), "error": None}
    try:
        filters = parse_filters(params)
    except FilterError as exc:
        ctx["error"] = str(exc)
        return render(request, "logs_overview.html", ctx, status=422, block="overview")
    reader = _reader(request)
    try:
        plan, series_rows, part_rows = await reader.overview(filters, now=_now(request))
        new_errors = await reader.new_errors(plan.start, plan.end)
        paths = await reader.route_paths(filters.route, plan.start, plan.end) if filters.route else []
    except LogDatabaseError as exc:
        ctx["error"] = f"The log database did not answer: {exc.message}"
        return render(request, "logs_overview.html", ctx, status=503, block="overview")
    ctx.update(overview_context(plan, series_rows, part_rows))
    ctx.update({"new_errors": new_errors, "route": filters.route, "paths": paths,
                "range_query": _query({k: v for k, v in params.items() if k in ("range", "from", "to")})})
    return render(request, "logs_overview.html", ctx, block="overview")


def _series(start: dt.datetime, end: dt.datetime, bucket_minutes: int, series_rows: list[dict]) -> list:
    by_bucket: dict[int, dict[int, int]] = {}
    for r in series_rows:
        counts = by_bucket.setdefault(r["bucket"], {})
        counts[r["status_class"]] = counts.get(r["status_class"], 0) + int(r["n"])
    first = int(start.timestamp() // 60) // bucket_minutes * bucket_minutes
    last = int((end.timestamp() - 1) // 60) // bucket_minutes * bucket_minutes
    return [
        (dt.datetime.fromtimestamp(m * 60, UTC), by_bucket.get(m, {}))
        for m in range(first, max(last, first) + 1, bucket_minutes)
    ]


def overview_context(plan: explorer.OverviewPlan, series_rows: list[dict], part_rows: list[dict]) -> dict[str, Any]:
    """Query results -> what the overview template shows (charts are SVG markup)."""
    chart_start, chart_end = plan.chart_start or plan.start, plan.chart_end or plan.end
    buckets = _series(chart_start, chart_end, plan.bucket_minutes, series_rows)
    empty_before = (plan.start, chart_start) if chart_start > plan.start else None
    empty_after = (chart_end, plan.end) if chart_end < plan.end else None
    stats = explorer.endpoint_stats(part_rows)
    totals = explorer.status_totals(stats)
    failing = sorted((s for s in stats if s.errors), key=lambda s: (-s.errors, s.endpoint))[:10]
    scale = charts.nice_max(max((s.p99 or s.p95 or s.p50 or 0 for s in stats), default=0))
    return {
        "start": plan.start, "end": plan.end, "bucket_minutes": plan.bucket_minutes, "buckets": buckets,
        "empty_before": empty_before, "empty_after": empty_after,
        "total": sum(totals.values()), "totals": totals, "stats": stats, "failing": failing,
        "latency_scale": scale, "latency_bar": charts.latency_bar,
        "class_label": charts.class_label, "class_color": charts.class_color,
        "requests_svg": charts.requests_chart(buckets, plan.bucket_minutes, empty_before=empty_before,
                                              empty_after=empty_after),
        "status_svg": charts.status_chart(totals),
    }


routes = [
    Route("/logs", list_logs, methods=["GET"]),
    Route(TAIL_PATH, tail, methods=["GET"]),
    Route("/logs/overview", overview, methods=["GET"]),
    Route("/logs/traces/{trace_id}", show_trace, methods=["GET"]),
]
