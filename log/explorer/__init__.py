"""The read side: filters, queries, the reader that runs them, and SVG charts of the results.

A log explorer imports this namespace (`from log import explorer`); nothing here writes.
"""

from log.core.rows import UNMATCHED
from log.core.trace import canonical_uuid
from log.explorer import charts, list_rows, spans, trace_rows, waterfall
from log.explorer.queries import (
    MAX_ID,
    PRESETS,
    UTC,
    EndpointStats,
    FilterError,
    LogFilters,
    OverviewPlan,
    endpoint_stats,
    parse_filters,
    status_totals,
)
from log.explorer.reader import LogReader

__all__ = [
    "MAX_ID",
    "PRESETS",
    "UNMATCHED",
    "UTC",
    "EndpointStats",
    "FilterError",
    "LogFilters",
    "LogReader",
    "OverviewPlan",
    "canonical_uuid",
    "charts",
    "endpoint_stats",
    "list_rows",
    "parse_filters",
    "spans",
    "status_totals",
    "trace_rows",
    "waterfall",
]
