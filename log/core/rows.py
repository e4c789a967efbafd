"""The two log tables as frozen Structs.

Field order IS the contract: it is the CSV column order and the INSERT column order
(see schema.sql, and the seed's table definitions). Only ever append fields, with defaults.
JSON columns hold JSON *text* (already encoded), never Python objects.
"""

from __future__ import annotations

import msgspec


class ApiLog(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    trace_id: str
    method: str
    endpoint: str
    request_header: str | None  # JSON text
    request_body: str | None  # JSON text
    response_status: int | None
    response_body: str | None  # JSON text
    duration_ms: int | None
    ip_address: str | None
    user_id: str | None  # TEXT, not the seed's INTEGER: Supabase user ids are UUIDs
    created_at: str  # UTC "YYYY-MM-DD HH:MM:SS.fff", when the request was received
    # Not in the seed's table: the matched route's template ("/items/{item_id:int}"), UNMATCHED
    # when the app's router found no route, None when unknown (no router ran; rows from before).
    route: str | None = None


class TaskProgressLog(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    trace_id: str
    task_name: str
    step_name: str
    status: str  # START | IN_PROGRESS | SUCCESS | FAILED
    input_data: str | None  # JSON text
    output_data: str | None  # JSON text
    error_message: str | None
    stack_trace: str | None
    execution_order: int
    created_at: str  # UTC "YYYY-MM-DD HH:MM:SS.fff"


LogRow = ApiLog | TaskProgressLog

# api_logs.route of a request the app's router had no route for (404s): one key for all of them,
# so probes of random paths do not each become a row of the explorer's per-route tables.
UNMATCHED = "(unmatched)"

# task_progress_logs.status: the one vocabulary.
START, IN_PROGRESS, SUCCESS, FAILED = "START", "IN_PROGRESS", "SUCCESS", "FAILED"
TASK_STATUSES = frozenset({START, IN_PROGRESS, SUCCESS, FAILED})

TABLES: dict[str, type[ApiLog] | type[TaskProgressLog]] = {
    "api_logs": ApiLog,
    "task_progress_logs": TaskProgressLog,
}


def table_of(row: LogRow) -> str:
    return "api_logs" if isinstance(row, ApiLog) else "task_progress_logs"


def columns(row_type: type[ApiLog] | type[TaskProgressLog]) -> tuple[str, ...]:
    return row_type.__struct_fields__
