"""Hrana 2 over HTTP (libSQL's /v2/pipeline), as pure functions: values, statements, batches,
response parsing and typed errors. No I/O here; log/db/database.py is the shell that sends the bytes.

Spec: tursodatabase/libsql docs/HTTP_V2_SPEC.md and docs/HRANA_3_SPEC.md ("Shared structures").
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any

import msgspec

from log.db.errors import (
    EncodeError,
    HttpStatusError,
    LogDatabaseError,
    StatementError,
    TransportError,
    retryable_code,
)

# SQLite's default SQLITE_MAX_VARIABLE_NUMBER since 3.32; a statement must bind fewer.
SQLITE_MAX_PARAMS = 32766
CHUNK_ROWS = 100  # rows per INSERT: small statements keep server-side parse/plan cheap

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

CLOSE: dict[str, Any] = {"type": "close"}


# -- values -------------------------------------------------------------------------------


def encode_value(value: Any) -> dict[str, Any]:
    """Python value -> Hrana Value. bool is checked before int because bool is an int subclass."""
    # Text first: most values in log rows are text (6,000 values in a 500-row batch). An exact
    # type check, so a str subclass still goes through the isinstance checks below.
    if value.__class__ is str:
        return {"type": "text", "value": value}
    if value is None:
        return {"type": "null"}
    if isinstance(value, bool):
        return {"type": "integer", "value": "1" if value else "0"}
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise EncodeError(f"integer out of SQLite's 64-bit range: {value}")
        return {"type": "integer", "value": str(value)}  # string: JSON numbers lose precision
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EncodeError(f"cannot send non-finite float {value!r}: JSON has no NaN/inf")
        return {"type": "float", "value": value}
    if isinstance(value, str):
        return {"type": "text", "value": value}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"type": "blob", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    raise EncodeError(f"no Hrana encoding for {type(value).__name__}")


def decode_value(value: Any) -> Any:
    """Hrana Value -> Python value. Strict about shape: a malformed value is a protocol error."""
    if not isinstance(value, dict):
        raise TransportError(f"malformed value: {value!r}")
    kind = value.get("type")
    try:
        if kind == "null":
            return None
        if kind == "integer":
            raw = value["value"]
            return int(raw) if isinstance(raw, str) else _bad(value)
        if kind == "float":
            raw = value["value"]
            ok = isinstance(raw, int | float) and not isinstance(raw, bool)
            return float(raw) if ok else _bad(value)
        if kind == "text":
            raw = value["value"]
            return raw if isinstance(raw, str) else _bad(value)
        if kind == "blob":
            raw = value["base64"]
            # Servers may omit '=' padding; restore it before strict decoding.
            return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (KeyError, ValueError, binascii.Error):
        _bad(value)
    return _bad(value)


def _bad(value: Any) -> Any:
    raise TransportError(f"malformed value: {value!r}")


# -- statements and batches ---------------------------------------------------------------


def stmt(sql: str, args: Sequence[Any] = (), *, want_rows: bool = True) -> dict[str, Any]:
    return {"sql": sql, "args": [encode_value(a) for a in args], "want_rows": want_rows}


def execute_request(statement: dict[str, Any]) -> dict[str, Any]:
    return {"type": "execute", "stmt": statement}


def transaction_batch(statements: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """BEGIN IMMEDIATE; each statement only if the previous one succeeded; COMMIT only if all
    succeeded; ROLLBACK if COMMIT did not succeed. Steps are 0..n+2; statement i is step i+1.

    IMMEDIATE takes the write lock up front so a read-then-write batch cannot hit a lock upgrade
    deadlock (SQLITE_BUSY) halfway through.
    """
    steps: list[dict[str, Any]] = [{"stmt": stmt("BEGIN IMMEDIATE", want_rows=False)}]
    for i, statement in enumerate(statements):
        steps.append({"condition": {"type": "ok", "step": i}, "stmt": statement})
    n = len(steps)
    all_ok = {"type": "and", "conds": [{"type": "ok", "step": i} for i in range(n)]}
    steps.append({"condition": all_ok, "stmt": stmt("COMMIT", want_rows=False)})
    not_committed = {"type": "not", "cond": {"type": "ok", "step": n}}
    steps.append({"condition": not_committed, "stmt": stmt("ROLLBACK", want_rows=False)})
    return {"type": "batch", "batch": {"steps": steps}}


def pipeline_body(requests: Sequence[dict[str, Any]], baton: str | None = None) -> bytes:
    """One stream per unit of work: `close` is always the last request, so no baton is ever reused."""
    return _encoder.encode({"baton": baton, "requests": [*requests, CLOSE]})


def insert_sql(table: str, columns: Sequence[str], nrows: int) -> str:
    one = "(" + ",".join("?" * len(columns)) + ")"
    return (
        f"INSERT INTO {table} ({','.join(columns)}) VALUES "
        + ",".join([one] * nrows)
        + " ON CONFLICT(id) DO NOTHING"
    )


def insert_json_sql(table: str, columns: Sequence[str]) -> str:
    """INSERT rows given as ONE text argument, a JSON array of row arrays in column order.

    One bound value per chunk instead of one per cell: the client encodes the whole chunk in C
    (msgspec) instead of wrapping every cell in a Hrana value object, and the request is half
    the size. JSON keeps the types (integer, text, NULL). SQLite's JSON functions cut text at
    an embedded NUL, so rows holding one must go through insert_sql instead.
    `WHERE true` is SQLite's documented way to let an INSERT ... SELECT take an upsert clause.
    """
    picks = ",".join(f"json_extract(value,'$[{i}]')" for i in range(len(columns)))
    return (
        f"INSERT INTO {table} ({','.join(columns)}) SELECT {picks} FROM json_each(?) WHERE true"
        " ON CONFLICT(id) DO NOTHING"
    )


def select_by_json_ids_sql(table: str, columns: Sequence[str]) -> str:
    """The stored rows whose id is in ONE text argument, a JSON array of ids."""
    return f"SELECT {','.join(columns)} FROM {table} WHERE id IN (SELECT value FROM json_each(?))"


def select_by_ids_sql(table: str, columns: Sequence[str], nids: int) -> str:
    return f"SELECT {','.join(columns)} FROM {table} WHERE id IN ({','.join('?' * nids)})"


def chunk_size(ncols: int, max_rows: int = CHUNK_ROWS) -> int:
    return max(1, min(max_rows, (SQLITE_MAX_PARAMS - 1) // ncols))


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- responses ----------------------------------------------------------------------------


class StmtOutcome(msgspec.Struct, frozen=True):
    rows: list[dict[str, Any]]
    affected_row_count: int


def parse_pipeline(body: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """Response body -> (results, base_url). A body we cannot read is a TransportError: it was
    probably cut short, and the caller's writes are idempotent so a retry is safe."""
    try:
        doc = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise TransportError(f"unreadable pipeline response ({len(body)} bytes): {exc}") from exc
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, list):
        raise TransportError("pipeline response without a results array")
    base_url = doc.get("base_url")
    return results, base_url if isinstance(base_url, str) else None


def response_of(result: Any, expected_type: str) -> dict[str, Any]:
    """One StreamResult -> its StreamResponse, raising StatementError for type == "error"."""
    if not isinstance(result, dict):
        raise TransportError(f"malformed stream result: {result!r}")
    if result.get("type") == "error":
        raise _statement_error(result.get("error"))
    response = result.get("response")
    if result.get("type") != "ok" or not isinstance(response, dict):
        raise TransportError(f"malformed stream result: {result!r}")
    if response.get("type") != expected_type:
        raise TransportError(f"expected a {expected_type} response, got {response.get('type')!r}")
    return response


def _statement_error(error: Any) -> StatementError:
    if isinstance(error, dict):
        code = error.get("code")
        return StatementError(str(error.get("message", error)), code=code if isinstance(code, str) else None)
    return StatementError(str(error))


def stmt_outcome(result: Any) -> StmtOutcome:
    """StmtResult -> rows as dicts keyed by column name, plus affected_row_count."""
    if not isinstance(result, dict):
        raise TransportError(f"malformed statement result: {result!r}")
    names = [col.get("name") for col in result.get("cols", [])]
    rows = [dict(zip(names, map(decode_value, row), strict=True)) for row in result.get("rows", [])]
    return StmtOutcome(rows, int(result.get("affected_row_count", 0)))


def transaction_outcomes(response: dict[str, Any], nstatements: int) -> list[StmtOutcome]:
    """BatchResult of transaction_batch -> one outcome per statement, or the first step error.

    If any step failed, COMMIT was skipped (or failed and ROLLBACK ran): nothing was applied.
    """
    result = response.get("result") or {}
    step_results = result.get("step_results")
    step_errors = result.get("step_errors")
    if not isinstance(step_results, list) or not isinstance(step_errors, list):
        raise TransportError("malformed batch result")
    if len(step_results) != nstatements + 3 or len(step_errors) != nstatements + 3:
        raise TransportError("batch result does not match the batch that was sent")
    for error in step_errors:
        if error is not None:
            raise _statement_error(error)
    if step_results[nstatements + 1] is None:  # COMMIT skipped without any error: not applied
        raise StatementError("transaction was not committed")
    return [stmt_outcome(r) for r in step_results[1 : nstatements + 1]]


_HINTS = {
    401: " (check TURSO_AUTH_TOKEN)",
    403: " (check TURSO_AUTH_TOKEN's permissions)",
    404: " (check TURSO_DATABASE_URL)",
}


def error_from_http(status: int, body: bytes, retry_after: str | None = None) -> HttpStatusError:
    """An HTTP error body may be a Hrana Error, {"error": ...}, or any text/HTML from a proxy."""
    message, code = "", None
    try:
        doc = _decoder.decode(body)
    except msgspec.DecodeError:
        doc = None
    if isinstance(doc, dict):
        inner = doc.get("error", doc)
        if isinstance(inner, dict):
            message, code = str(inner.get("message", "")), inner.get("code")
        elif isinstance(inner, str):
            message = inner
        if not message and isinstance(doc.get("message"), str):
            message = doc["message"]
    if not message:
        text = body[:200].decode("utf-8", "replace").strip()
        message = " ".join(text.split()) or "(empty body)"
    return HttpStatusError(
        f"HTTP {status}: {message}{_HINTS.get(status, '')}",
        code=code if isinstance(code, str) else None,
        status=status,
        retry_after=_seconds(retry_after),
    )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff
