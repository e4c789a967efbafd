"""log/hrana.py: pure encodings, checked with plain values."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from log.db import hrana
from log.db.hrana import HttpStatusError, StatementError, TransportError


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (None, {"type": "null"}),
        (True, {"type": "integer", "value": "1"}),
        (False, {"type": "integer", "value": "0"}),
        (2**63 - 1, {"type": "integer", "value": "9223372036854775807"}),
        (-5, {"type": "integer", "value": "-5"}),
        (1.5, {"type": "float", "value": 1.5}),
        ("hé", {"type": "text", "value": "hé"}),
        (b"ab", {"type": "blob", "base64": "YWI="}),
    ],
)
def test_encode_value(value: object, encoded: dict) -> None:
    assert hrana.encode_value(value) == encoded


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 2**63, -(2**63) - 1, object(), [1]])
def test_unencodable_values_are_rejected_for_good(bad: object) -> None:
    with pytest.raises(hrana.EncodeError) as info:
        hrana.encode_value(bad)
    assert not info.value.retryable


@given(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.text(),
                 st.floats(allow_nan=False, allow_infinity=False), st.binary()))
def test_value_round_trip_through_json(value: object) -> None:
    wire = json.loads(json.dumps(hrana.encode_value(value)))
    assert hrana.decode_value(wire) == value


def test_decode_blob_without_padding() -> None:
    assert hrana.decode_value({"type": "blob", "base64": "YQ"}) == b"a"


@pytest.mark.parametrize(
    "bad",
    [{"type": "integer", "value": 5}, {"type": "integer", "value": "x"}, {"type": "text"},
     {"type": "float", "value": "1"}, {"type": "blob", "base64": "!!"}, {"type": "nope"}, "text"],
)
def test_decode_rejects_malformed_values(bad: object) -> None:
    with pytest.raises(TransportError):
        hrana.decode_value(bad)


def test_insert_sql_and_chunking() -> None:
    assert hrana.insert_sql("t", ["id", "a"], 2) == "INSERT INTO t (id,a) VALUES (?,?),(?,?) ON CONFLICT(id) DO NOTHING"
    assert hrana.chunk_size(12) == 100
    assert hrana.chunk_size(1000) == 32  # stays under SQLite's 32766 bound parameters
    assert [len(c) for c in hrana.chunks(list(range(250)), 100)] == [100, 100, 50]


def test_transaction_batch_conditions() -> None:
    a, b = hrana.stmt("A"), hrana.stmt("B", [1])
    steps = hrana.transaction_batch([a, b])["batch"]["steps"]
    assert [s["stmt"]["sql"] for s in steps] == ["BEGIN IMMEDIATE", "A", "B", "COMMIT", "ROLLBACK"]
    assert "condition" not in steps[0]
    assert steps[1]["condition"] == {"type": "ok", "step": 0}
    assert steps[2]["condition"] == {"type": "ok", "step": 1}
    assert steps[3]["condition"] == {"type": "and", "conds": [{"type": "ok", "step": i} for i in range(3)]}
    assert steps[4]["condition"] == {"type": "not", "cond": {"type": "ok", "step": 3}}
    assert steps[2]["stmt"]["args"] == [{"type": "integer", "value": "1"}]


def test_pipeline_body_always_ends_with_close() -> None:
    doc = json.loads(hrana.pipeline_body([hrana.execute_request(hrana.stmt("SELECT 1"))]))
    assert doc["baton"] is None
    assert doc["requests"][-1] == {"type": "close"}


def _ok(value: str = "0") -> dict:
    return {"cols": [], "rows": [], "affected_row_count": int(value), "last_insert_rowid": None}


def test_transaction_outcomes_success_and_step_error() -> None:
    good = {"type": "batch", "result": {"step_results": [_ok(), _ok("3"), _ok(), None],
                                        "step_errors": [None, None, None, None]}}
    assert [o.affected_row_count for o in hrana.transaction_outcomes(good, 1)] == [3]
    bad = {"type": "batch", "result": {
        "step_results": [_ok(), None, None, _ok()],
        "step_errors": [None, {"message": "UNIQUE constraint failed", "code": "SQLITE_CONSTRAINT"}, None, None]}}
    with pytest.raises(StatementError) as info:
        hrana.transaction_outcomes(bad, 1)
    assert info.value.code == "SQLITE_CONSTRAINT" and not info.value.retryable


def test_in_band_stream_error_is_typed() -> None:
    with pytest.raises(StatementError) as info:
        hrana.response_of({"type": "error", "error": {"message": "no such table: x"}}, "execute")
    assert "no such table" in str(info.value)


def test_stmt_outcome_decodes_rows_by_column_name() -> None:
    result = {"cols": [{"name": "id", "decltype": "INTEGER"}, {"name": "t", "decltype": None}],
              "rows": [[{"type": "integer", "value": "7"}, {"type": "null"}]],
              "affected_row_count": 0, "last_insert_rowid": None}
    assert hrana.stmt_outcome(result).rows == [{"id": 7, "t": None}]


@pytest.mark.parametrize("body", [b"", b'{"results": 1}', b'{"baton": null, "results": [{"type": "ok"'])
def test_unreadable_pipeline_bodies_are_retryable_transport_errors(body: bytes) -> None:
    with pytest.raises(TransportError) as info:
        hrana.parse_pipeline(body)
    assert info.value.retryable


@pytest.mark.parametrize(
    ("status", "body", "message", "retryable"),
    [
        (401, b'{"error": "Unauthorized"}', "HTTP 401: Unauthorized (check TURSO_AUTH_TOKEN)", False),
        (400, b'{"message": "bad baton", "code": "STREAM_EXPIRED"}', "HTTP 400: bad baton", True),
        (400, b'{"message": "oops", "code": "PROTOCOL_ERROR"}', "HTTP 400: oops", False),
        (404, b"<html><body>Not   Found</body></html>", "HTTP 404: <html><body>Not Found</body></html>", False),
        (502, b"", "HTTP 502: (empty body)", True),
        (429, b"slow down", "HTTP 429: slow down", True),
    ],
)
def test_http_errors_are_parsed_defensively(status: int, body: bytes, message: str, retryable: bool) -> None:
    error = hrana.error_from_http(status, body)
    assert isinstance(error, HttpStatusError)
    assert str(error).startswith(message)
    assert error.retryable is retryable


def test_retry_after_header_is_kept() -> None:
    assert hrana.error_from_http(429, b"", "2").retry_after == 2.0
    assert hrana.error_from_http(429, b"", "Wed, 21 Oct 2015 07:28:00 GMT").retry_after is None


@pytest.mark.parametrize(
    ("code", "retryable"),
    [("SQLITE_BUSY", True), ("SQLITE_BUSY_SNAPSHOT", True), ("SQLITE_LOCKED", True),
     ("STREAM_EXPIRED", True), ("SQLITE_CONSTRAINT_NOTNULL", False), (None, False)],
)
def test_in_band_retryable_codes(code: str | None, retryable: bool) -> None:
    assert StatementError("x", code=code).retryable is retryable
