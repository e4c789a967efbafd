"""The log explorer's SQL, built as pure functions: filters in, (sql, args) out.

Nothing here touches a database. Every value from the URL becomes a `?` argument; the only
text spliced into SQL is fixed fragments chosen by this module (column lists, operators), so
no filter value can change a statement's shape. Every statement is a SELECT (read-only).

Time: created_at is TEXT "YYYY-MM-DD HH:MM:SS.fff" in UTC, so comparing strings compares
instants. Ids are Snowflake ids whose top bits are the ms at which the id was issued, which is
never before the request was received; a time range's start therefore also bounds the id from
below, which lets "newest first" queries walk the primary key and stop (see `id_floor`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

import msgspec

from log.core import ids
from log.core.rows import UNMATCHED
from log.core.trace import canonical_uuid

UTC = dt.timezone.utc
UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
PRESETS: dict[str, dt.timedelta] = {
    "15m": dt.timedelta(minutes=15),
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
}
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
LIST_COLUMNS = (
    "id", "trace_id", "method", "endpoint", "response_status", "duration_ms", "ip_address", "user_id", "created_at"
)

# Snowflake layout (log/core/ids.py): ms since its epoch in the bits above worker + sequence.
SNOWFLAKE_EPOCH_MS = ids.EPOCH_MS
SNOWFLAKE_SHIFT = ids.WORKER_BITS + ids.SEQUENCE_BITS
# Ids are issued after the request is received; the slack absorbs a wall clock stepped back
# between the two (NTP) without dropping rows from a range.
ID_FLOOR_SLACK = dt.timedelta(minutes=5)
MAX_ID = 2**63 - 1

Query = tuple[str, list[Any]]  # (sql with ? placeholders, args)

_TEXT = r"^[^\x00-\x1f\x7f\ud800-\udfff]*$"  # printable, encodable: no NUL/CR/LF, no lone surrogates
Text = Annotated[str, msgspec.Meta(max_length=200, pattern=_TEXT)]


class LogFilters(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """The explorer's filters, exactly as the URL carries them (empty = not filtering)."""

    range: Literal["15m", "1h", "24h", "7d", "all", "custom"] = "24h"
    from_: Text = msgspec.field(default="", name="from")
    to: Text = ""
    status: Literal["", "1xx", "2xx", "3xx", "4xx", "5xx", "errors"] = ""  # errors = 4xx + 5xx
    code: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None
    method: Literal["", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = ""
    endpoint: Text = ""
    route: Text = ""  # a route template, exactly ("/items/{item_id:int}", "(unmatched)")
    user: Text = ""
    trace: Text = ""
    min_ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)] | None = None


class FilterError(ValueError):
    """A filter value the explorer cannot use; the message is shown to the admin as is."""


_FIELD_RE = re.compile(r"at `\$\.(\w+)`")


def parse_filters(params: Mapping[str, str]) -> LogFilters:
    """Query parameters -> LogFilters, or FilterError naming the bad parameter."""
    data: dict[str, Any] = {k: v.strip() for k, v in params.items() if k in _PARAMS and v.strip()}
    if path := data.pop("path", ""):
        # One field for both: a route template ("{...}" or "(unmatched)") matches the route
        # column exactly, anything else is a path prefix.
        data["route" if is_route_template(path) else "endpoint"] = path
    if "method" in data:
        data["method"] = data["method"].upper()
    if "from" in data or "to" in data:
        data["range"] = "custom"  # typed dates win over the preset they were typed next to
    try:
        filters = msgspec.convert(data, LogFilters, strict=False)
    except msgspec.ValidationError as exc:
        found = _FIELD_RE.search(str(exc))
        name = found.group(1) if found else "filter"
        raise FilterError(f"Invalid value for “{name}”: {str(exc).split(' - at ')[0]}") from None
    start, end = time_window(filters, dt.datetime(2000, 1, 1, tzinfo=UTC))  # validates from/to
    if start and end and start >= end:
        raise FilterError("“from” must be before “to”.")
    if filters.trace and canonical_uuid(filters.trace) is None:
        raise FilterError("Invalid value for “trace”: expected a trace id (UUID).")
    return filters


_PARAMS = frozenset(
    {"range", "from", "to", "status", "code", "method", "path", "endpoint", "route", "user", "trace", "min_ms"}
)


def is_route_template(text: str) -> bool:
    return "{" in text or text == UNMATCHED


def parse_instant(value: str, name: str) -> dt.datetime:
    """An <input type=datetime-local> value (or ISO 8601) read as UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(f"Invalid value for “{name}”: expected a date and time like 2026-01-31T13:45.") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed.replace(tzinfo=UTC)


def time_window(filters: LogFilters, now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """[start, end) of the filtered range; None = unbounded on that side."""
    if filters.range == "custom":
        start = parse_instant(filters.from_, "from") if filters.from_ else None
        end = parse_instant(filters.to, "to") if filters.to else None
        return start, end
    if filters.range == "all":
        return None, None
    return now - PRESETS[filters.range], None


def stamp(t: dt.datetime) -> str:
    """A datetime as created_at text (UTC, ms)."""
    t = t.astimezone(UTC)
    # Not strftime: its %Y does not zero-pad years before 1000 on glibc, and "500-01-01" would
    # sort after "2026-..." as text.
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond // 1000:03d}"


def id_floor(start: dt.datetime) -> int:
    """The smallest Snowflake id a row received at or after `start` can have."""
    ms = math.floor(start.timestamp() * 1000) - SNOWFLAKE_EPOCH_MS - ID_FLOOR_SLACK // dt.timedelta(milliseconds=1)
    return min(max(ms, 0) << SNOWFLAKE_SHIFT, MAX_ID)  # far-future dates: still an SQLite INTEGER


def where_clause(filters: LogFilters, now: dt.datetime, *, rare_status: bool = False) -> tuple[list[str], list[Any]]:
    """AND-ed conditions on api_logs for every active filter."""
    where: list[str] = []
    args: list[Any] = []
    start, end = time_window(filters, now)
    if start is not None:
        where += ["id >= ?", "created_at >= ?"]
        args += [id_floor(start), stamp(start)]
    if end is not None:
        where.append("created_at < ?")
        args.append(stamp(end))
    if filters.code is not None:
        where.append("response_status = ?")
        args.append(filters.code)
    if filters.status:
        low, high = status_range(filters.status)
        # Unary + keeps SQLite off the status index for a class: walking ids newest first finds
        # a page of even 2% of rows quickly, a range scan + sort of all 2xx would not. A class
        # the rollups say is rare (rare_status) is the opposite case: see build_list_query.
        where.append("response_status BETWEEN ? AND ?" if rare_status else "+response_status BETWEEN ? AND ?")
        args += [low, high]
    if filters.method:
        where.append("method = ?")
        args.append(filters.method)
    if filters.endpoint:
        # A prefix test with no LIKE wildcards to escape: % and _ in the filter are literal.
        where.append("substr(endpoint, 1, ?) = ?")
        args += [len(filters.endpoint), filters.endpoint]
    if filters.route:
        where.append("route = ?")  # idx_api_logs_route
        args.append(filters.route)
    if filters.user:
        where.append("user_id = ?")
        args.append(filters.user)
    if filters.trace:
        where.append("trace_id = ?")
        args.append(canonical_uuid(filters.trace) or filters.trace)
    if filters.min_ms is not None:
        where.append("duration_ms >= ?")
        args.append(filters.min_ms)
    return where, args


def status_range(status: str) -> tuple[int, int]:
    """A status filter ("5xx", "errors") -> the inclusive range of response codes it keeps."""
    if status == "errors":
        return 400, 599
    low = int(status[0]) * 100
    return low, low + 99


def status_classes(status: str) -> list[int]:
    low, high = status_range(status)
    return list(range(low // 100, high // 100 + 1))


def build_list_query(
    filters: LogFilters, *, now: dt.datetime, limit: int, before_id: int | None, rare_status: bool = False
) -> tuple[str, list[Any]]:
    """Newest first, `limit` rows, keyset-paginated on id (rows with id < before_id).

    rare_status: the status class filter matches few rows in the whole table (the caller asked
    the rollups, see status_class_count), so read them through the status index and sort them
    instead of walking every id looking for them. Same rows either way; only the plan differs."""
    rare = rare_status and bool(filters.status) and filters.code is None
    where, args = where_clause(filters, now, rare_status=rare)
    if before_id is not None:
        where.append("id < ?")
        args.append(before_id)
    source = "api_logs INDEXED BY idx_api_logs_status" if rare else "api_logs"
    sql = (
        f"SELECT {', '.join(LIST_COLUMNS)} FROM {source}"
        f" WHERE {' AND '.join(where) or '1'} ORDER BY id DESC LIMIT ?"
    )
    return sql, [*args, limit]


RARE_STATUS_ROWS = 5_000  # below ~sqrt(page size x table rows), index hits + sort beat an id walk


def status_class_count(filters: LogFilters) -> Query | None:
    """How many rows of the filter's status class exist at all; None when no class filter is set.
    Compared with RARE_STATUS_ROWS to pick build_list_query's plan. From the hourly rollup (the
    sum of the minutes: a month is ~3k rows, 0.1 ms; the minutes' ~100k took 4 ms a page)."""
    if not filters.status:
        return None
    classes = status_classes(filters.status)
    return (
        "SELECT COALESCE(SUM(n), 0) AS n FROM api_status_hour WHERE status_class BETWEEN ? AND ?",
        [classes[0], classes[-1]],
    )


def build_tail_query(filters: LogFilters, *, now: dt.datetime, after_id: int, limit: int) -> Query:
    """The live tail's poll: rows matching `filters` newer than the newest one shown (keyset on
    the primary key: only the few new rows are read), newest first."""
    where, args = where_clause(filters, now)
    # One lower bound on id, the tighter one: given the range's floor and "id > after" both,
    # SQLite may walk from the floor (every row of the range) instead of from `after`.
    if where[:1] == ["id >= ?"]:
        args[0] = max(args[0], after_id + 1)
    else:
        where.insert(0, "id >= ?")
        args.insert(0, after_id + 1)
    return (
        f"SELECT {', '.join(LIST_COLUMNS)} FROM api_logs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        [*args, limit],
    )


# Trace page ------------------------------------------------------------------------------

TRACE_API_WHERE = "trace_id = ? ORDER BY created_at, id"
TRACE_STEPS_WHERE = "trace_id = ? ORDER BY created_at, execution_order, id"


# Latency histogram ------------------------------------------------------------------------
# Buckets: 0..15 ms exact, then 8 buckets per power of two (each at most 12.5% wide), up to
# 2^32 ms; one overflow bucket above; -1 = no duration. The same function exists three times
# and tests keep them equal: bucket_of (Python), bucket_sql (raw rows), log/db/rollups.sql (backfill)
# and log/db/rollup_batch.sql (each write batch).

MAX_EXP = 31
OVERFLOW_BUCKET = 16 + 8 * (MAX_EXP - 3)  # 240: just above the last regular bucket


def bucket_of(duration_ms: int | None) -> int:
    if duration_ms is None or duration_ms < 0:
        return -1
    if duration_ms < 16:
        return duration_ms
    e = duration_ms.bit_length() - 1
    if e > MAX_EXP:
        return OVERFLOW_BUCKET
    return (duration_ms >> (e - 3)) + 8 * (e - 3)


def bucket_bounds(bucket: int) -> tuple[int, int]:
    """Inclusive [lo, hi] ms of a bucket (hi of the overflow bucket is unbounded: -1)."""
    if bucket < 16:
        return bucket, bucket
    if bucket >= OVERFLOW_BUCKET:
        return 1 << (MAX_EXP + 1), -1
    e = (bucket - 16) // 8 + 4
    m = bucket - 8 * (e - 3)
    return m << (e - 3), ((m + 1) << (e - 3)) - 1


def bucket_sql(col: str) -> str:
    whens = "".join(
        f" WHEN {col} < {1 << (e + 1)} THEN ({col} >> {e - 3}) + {8 * (e - 3)}" for e in range(4, MAX_EXP + 1)
    )
    return f"CASE WHEN {col} IS NULL OR {col} < 0 THEN -1 WHEN {col} < 16 THEN {col}{whens} ELSE {OVERFLOW_BUCKET} END"


def path_sql(col: str) -> str:
    """The endpoint without its query string: rollups group by path."""
    return f"CASE WHEN instr({col}, '?') > 0 THEN substr({col}, 1, instr({col}, '?') - 1) ELSE {col} END"


def route_key_sql(route_col: str, endpoint_col: str) -> str:
    """The rollups' per-route key: the route template, else (no template known) the path."""
    return f"COALESCE({route_col}, {path_sql(endpoint_col)})"


def status_class_sql(col: str) -> str:
    return f"COALESCE({col} / 100, 0)"


def percentile(hist: Mapping[int, int], p: float) -> int | None:
    """Nearest-rank percentile from a histogram -> the upper bound (ms) of its bucket.

    The exact nearest-rank value lies in the returned bucket, so the answer is exact to the
    bucket's width (<= 12.5%, exact below 16 ms)."""
    counts = sorted((b, n) for b, n in hist.items() if b >= 0 and n > 0)
    total = sum(n for _, n in counts)
    if total == 0:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for bucket, n in counts:
        seen += n
        if seen >= rank:
            lo, hi = bucket_bounds(bucket)
            return hi if hi >= 0 else lo
    raise AssertionError("unreachable: rank <= total")


# Overview -------------------------------------------------------------------------------


class OverviewPlan(msgspec.Struct, frozen=True):
    start: dt.datetime
    end: dt.datetime
    bucket_minutes: int
    series: Query  # rows: bucket (epoch minute), status_class, n
    endpoint_parts: tuple[Query, ...]  # rows: endpoint, status_class, bucket, n (summed across parts)
    # The time chart's own window: the part of [start, end) that holds data (see chart_window);
    # None = the whole range.
    chart_start: dt.datetime | None = None
    chart_end: dt.datetime | None = None


def bucket_minutes_for(span: dt.timedelta) -> int:
    """Bar width for a range: at most 180 bars."""
    for minutes in (1, 5, 10, 15, 30, 60, 180, 360, 720, 1440):
        if span / dt.timedelta(minutes=minutes) <= 180:
            return minutes
    return math.ceil(span / dt.timedelta(days=180)) * 1440


def _epoch_minutes(t: dt.datetime) -> int:
    return math.floor(t.timestamp() / 60)


# (table, key column, seconds per unit), coarsest first.
ROLLUP_LEVELS: tuple[tuple[str, str, int], ...] = (("api_latency_day", "day", 86_400), ("api_latency_hour", "hour", 3_600))

Piece = tuple[str, Any, Any]  # ("raw", start, end) | (table, first unit, end unit)


def cover(start: dt.datetime, end: dt.datetime, levels: Sequence[tuple[str, str, int]] = ROLLUP_LEVELS) -> list[Piece]:
    """Split [start, end) into whole days, then whole hours, then raw rows at the edges:
    few rollup rows for long ranges, exact boundaries everywhere."""
    if start >= end:
        return []
    if not levels:
        return [("raw", start, end)]
    table, _col, seconds = levels[0]
    lo = math.ceil(start.timestamp() / seconds)
    hi = math.floor(end.timestamp() / seconds)
    if lo >= hi:
        return cover(start, end, levels[1:])
    lo_t = dt.datetime.fromtimestamp(lo * seconds, UTC)
    hi_t = dt.datetime.fromtimestamp(hi * seconds, UTC)
    return [(table, lo, hi), *cover(start, lo_t, levels[1:]), *cover(hi_t, end, levels[1:])]


def _part(piece: Piece) -> Query:
    kind, lo, hi = piece
    if kind == "raw":
        return _raw_part(lo, hi)
    column = next(col for table, col, _ in ROLLUP_LEVELS if table == kind)
    return (
        f"SELECT endpoint, status_class, bucket, SUM(n) AS n FROM {kind}"
        f" WHERE {column} >= ? AND {column} < ? GROUP BY 1, 2, 3",
        [lo, hi],
    )


def _raw_part(start: dt.datetime, end: dt.datetime, *, subtract: bool = False) -> Query:
    return (
        f"SELECT {route_key_sql('route', 'endpoint')} AS endpoint, {status_class_sql('response_status')} AS status_class,"
        f" {bucket_sql('duration_ms')} AS bucket, {'-' if subtract else ''}COUNT(*) AS n FROM api_logs"
        " WHERE id >= ? AND created_at >= ? AND created_at < ? GROUP BY 1, 2, 3",
        [id_floor(start), stamp(start), stamp(end)],
    )


TOTAL_PART: Query = ("SELECT endpoint, status_class, bucket, n FROM api_latency_total", [])
FAR_FUTURE = dt.datetime(9999, 12, 31, tzinfo=UTC)


def all_time_parts(end: dt.datetime) -> tuple[Query, ...]:
    """Every request counted, as of `end`: the all-time rollup (one row per route, status class and
    bucket) minus the rows stamped at or after `end` (none unless a clock ran ahead), read back
    from api_logs with a negative count. Summing every day's rollup rows instead took 0.3 s on a
    month of 1M requests; this reads ~10k rows."""
    return (TOTAL_PART, _raw_part(end, FAR_FUTURE, subtract=True))


def build_overview(filters: LogFilters, *, now: dt.datetime, oldest: dt.datetime | None = None) -> OverviewPlan:
    """Queries for the overview of filters' time range (other filters do not apply here).

    Per-endpoint numbers are exact for the range: whole days and hours come from the rollups,
    the partial hours at either edge from api_logs itself (under two hours of rows); all time
    (given `oldest`, the rollups' first minute) from the all-time rollup (all_time_parts).
    Percentiles are exact to their histogram bucket (queries.percentile) either way. The
    requests-per-bucket series has minute resolution (the first bar may start up to a minute
    early)."""
    start, end = time_window(filters, now)
    # Every row counted: from the oldest minute in the rollups (on or after 1970) to now.
    everything = start is None and end is None and oldest is not None and oldest >= UNIX_EPOCH
    # Clamp to [1970, now]: the rollups' unix-time keys start there and nothing is logged later.
    end = max(min(end, now) if end is not None else now, UNIX_EPOCH + dt.timedelta(minutes=1))
    if start is None:  # "all" or an open custom start: from the oldest row we have
        start = oldest or end - PRESETS["7d"]
    elif oldest is not None and start < oldest:  # no empty bars for years before the first row
        start = oldest
    start = max(start, UNIX_EPOCH)
    if start >= end:
        start = end - dt.timedelta(minutes=1)
    minutes = bucket_minutes_for(end - start)
    series = series_query(start, end, minutes)
    if everything and start < end:
        return OverviewPlan(start, end, minutes, series, all_time_parts(end))
    parts = [_part(p) for p in cover(start, end)]
    return OverviewPlan(start, end, minutes, series, tuple(parts))


def extent_query(start: dt.datetime, end: dt.datetime) -> Query:
    """The first and last minute with any request in [start, end) (rollups' primary key)."""
    lo, hi = _epoch_minutes(start), _epoch_minutes(end) + 1
    return (
        "SELECT (SELECT MIN(minute) FROM api_status_minute WHERE minute >= ? AND minute < ?) AS lo,"
        " (SELECT MAX(minute) FROM api_status_minute WHERE minute >= ? AND minute < ?) AS hi",
        [lo, hi, lo, hi],
    )


# The time chart narrows to the data when more than this share of the range is empty.
EMPTY_SHARE = 0.1


def series_query(start: dt.datetime, end: dt.datetime, minutes: int) -> Query:
    """Requests per bar and status class over the minutes [start's, end's]. Bars of whole hours
    read the whole hours inside from api_status_hour and only the edges' minutes from
    api_status_minute (a month of minutes is ~200k rows; of hours, ~4k); the same counts."""
    lo, hi = _epoch_minutes(start), _epoch_minutes(end) + 1
    first_hour, end_hour = -(-lo // 60), hi // 60  # whole hours inside [lo, hi)
    if minutes % 60 or first_hour >= end_hour:
        return (
            "SELECT (minute / ?) * ? AS bucket, status_class, SUM(n) AS n FROM api_status_minute"
            " WHERE minute >= ? AND minute < ? GROUP BY 1, 2 ORDER BY 1",
            [minutes, minutes, lo, hi],
        )
    return (
        "SELECT (m / ?) * ? AS bucket, status_class, SUM(n) AS n FROM ("
        "SELECT hour * 60 AS m, status_class, n FROM api_status_hour WHERE hour >= ? AND hour < ?"
        " UNION ALL SELECT minute, status_class, n FROM api_status_minute WHERE minute >= ? AND minute < ?"
        " UNION ALL SELECT minute, status_class, n FROM api_status_minute WHERE minute >= ? AND minute < ?"
        ") GROUP BY 1, 2 ORDER BY 1",
        [minutes, minutes, first_hour, end_hour, lo, first_hour * 60, end_hour * 60, hi],
    )


def chart_window(plan: OverviewPlan, lo: int | None, hi: int | None) -> OverviewPlan:
    """Fit the time chart to the data present: with the first and last minute that hold rows
    (lo, hi: epoch minutes), a range mostly empty gets its chart over [lo, hi] with bars sized
    for that span (a day of traffic in a 7-day range is not squeezed into one bar); the empty
    parts are drawn as such by the chart. Per-route numbers still cover the whole range."""
    if lo is None or hi is None:
        return plan
    data_start = max(plan.start, dt.datetime.fromtimestamp(lo * 60, UTC))
    data_end = min(plan.end, dt.datetime.fromtimestamp((hi + 1) * 60, UTC))
    span = plan.end - plan.start
    if data_end <= data_start or (span - (data_end - data_start)) <= span * EMPTY_SHARE:
        return plan
    minutes = bucket_minutes_for(data_end - data_start)
    return msgspec.structs.replace(
        plan, bucket_minutes=minutes, series=series_query(data_start, data_end, minutes),
        chart_start=data_start, chart_end=data_end,
    )


def exception_type_sql(message: str) -> str:
    """"ValueError: boom" -> "ValueError"; a message with no short type prefix -> its first 80
    characters. The same CASE is in log/db/rollups.sql (api_error_signatures)."""
    return (
        f"CASE WHEN instr({message}, ':') BETWEEN 2 AND 80 THEN substr({message}, 1, instr({message}, ':') - 1)"
        f" ELSE substr({message}, 1, 80) END"
    )


def exception_type(message: str | None) -> str:
    """Python's twin of exception_type_sql ('' for no message)."""
    if message is None:
        return ""
    colon = message.find(":") + 1
    return message[: colon - 1] if 2 <= colon <= 80 else message[:80]


def new_errors_query(start: dt.datetime, end: dt.datetime, *, limit: int = 20) -> Query:
    """Error signatures (route + 5xx status + exception type) whose first occurrence falls in
    [start, end), newest first, from the api_error_signatures rollup (log/db/rollups.sql).
    Rows: route, status, exception, first_id, trace_id (of the first occurrence), first_at, n."""
    return (
        "SELECT route, status, exception, first_id, first_trace AS trace_id, first_at, n"
        " FROM api_error_signatures WHERE first_at >= ? AND first_at < ? ORDER BY first_at DESC LIMIT ?",
        [stamp(start), stamp(end), limit],
    )


PATHS_SAMPLE = 5_000  # the drill-down reads at most this many of the route's newest rows


def route_paths_query(route: str, start: dt.datetime, end: dt.datetime, *, limit: int = 25) -> Query:
    """Drill-down: the literal paths (query string cut) behind one route template in [start, end),
    busiest first, among the route's newest PATHS_SAMPLE requests of the range (walked newest
    first through the route index, so a busy route over a long range costs the same as a quiet
    one). Rows: path, n, errors (5xx), sampled (rows read)."""
    return (
        f"SELECT {path_sql('endpoint')} AS path, COUNT(*) AS n, SUM(response_status >= 500) AS errors,"
        " SUM(COUNT(*)) OVER () AS sampled FROM ("
        "SELECT endpoint, response_status FROM api_logs INDEXED BY idx_api_logs_route"
        " WHERE route = ? AND id >= ? AND created_at >= ? AND created_at < ? ORDER BY id DESC LIMIT ?"
        ") GROUP BY 1 ORDER BY n DESC, path LIMIT ?",
        [route, id_floor(start), stamp(start), stamp(end), PATHS_SAMPLE, limit],
    )


class EndpointStats(msgspec.Struct, frozen=True):
    endpoint: str
    total: int
    by_class: dict[int, int]
    p50: int | None
    p95: int | None
    p99: int | None

    @property
    def errors(self) -> int:
        return self.by_class.get(5, 0)

    @property
    def client_errors(self) -> int:
        return self.by_class.get(4, 0)

    @property
    def error_rate(self) -> float:
        """Share of requests answered 5xx, in percent."""
        return 100 * self.errors / self.total if self.total else 0.0


def endpoint_stats(rows: Iterable[Mapping[str, Any]]) -> list[EndpointStats]:
    """Sum (endpoint, status_class, bucket, n) rows from every part -> per-endpoint stats,
    busiest first."""
    hist: dict[str, dict[int, int]] = {}
    classes: dict[str, dict[int, int]] = {}
    for r in rows:
        ep, n = r["endpoint"], int(r["n"])
        h = hist.setdefault(ep, {})
        h[r["bucket"]] = h.get(r["bucket"], 0) + n
        c = classes.setdefault(ep, {})
        c[r["status_class"]] = c.get(r["status_class"], 0) + n
    out = [
        EndpointStats(
            ep, sum(classes[ep].values()), {c: n for c, n in classes[ep].items() if n},
            percentile(h, 50), percentile(h, 95), percentile(h, 99),
        )
        for ep, h in hist.items()
        if any(classes[ep].values())  # a part may subtract (all_time_parts): drop what nets to 0
    ]
    return sorted(out, key=lambda s: (-s.total, s.endpoint))


def status_totals(stats: Sequence[EndpointStats]) -> dict[int, int]:
    totals: dict[int, int] = {}
    for s in stats:
        for cls, n in s.by_class.items():
            totals[cls] = totals.get(cls, 0) + n
    return dict(sorted(totals.items()))
