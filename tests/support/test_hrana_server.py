"""The local Hrana server against hand-written JSON shaped like the spec's structures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.hrana_server import HranaServer, Running, running


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def srv(tmp_path: Path, clock: FakeClock) -> Iterator[Running]:
    with running(HranaServer(str(tmp_path / "db.sqlite"), stream_idle_s=5, clock=clock)) as r:
        yield r


def post(r: Running, body: object, **headers: str) -> httpx.Response:
    return httpx.post(f"{r.url}/v2/pipeline", json=body, headers=headers, timeout=10)


def ex(sql: str, *args: dict) -> dict:
    return {"type": "execute", "stmt": {"sql": sql, "args": list(args)}}


CLOSE = {"type": "close"}


def test_health(srv: Running) -> None:
    assert httpx.get(f"{srv.url}/v2").status_code == 200


def test_execute_and_close(srv: Running) -> None:
    resp = post(srv, {"baton": None, "requests": [
        ex("SELECT ? + 1 AS n, ? AS t, ? AS f, NULL AS z",
           {"type": "integer", "value": "41"}, {"type": "text", "value": "hé"},
           {"type": "float", "value": 1.5}),
        CLOSE]})
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["baton"] is None  # closed by the pipeline's last request
    result = doc["results"][0]["response"]["result"]
    assert [c["name"] for c in result["cols"]] == ["n", "t", "f", "z"]
    assert result["rows"] == [[{"type": "integer", "value": "42"}, {"type": "text", "value": "hé"},
                               {"type": "float", "value": 1.5}, {"type": "null"}]]
    assert doc["results"][1] == {"type": "ok", "response": {"type": "close"}}


def test_blob_is_returned_without_padding_and_accepted_either_way(srv: Running) -> None:
    resp = post(srv, {"baton": None, "requests": [
        ex("SELECT ?", {"type": "blob", "base64": "YQ"}), CLOSE]})  # "a" without padding
    row = resp.json()["results"][0]["response"]["result"]["rows"][0]
    assert row == [{"type": "blob", "base64": "YQ"}]


def test_baton_is_single_use(srv: Running) -> None:
    first = post(srv, {"baton": None, "requests": [ex("SELECT 1")]}).json()
    baton = first["baton"]
    assert isinstance(baton, str)
    second = post(srv, {"baton": baton, "requests": [ex("SELECT 2")]})
    assert second.status_code == 200
    assert second.json()["baton"] not in (None, baton)
    reused = post(srv, {"baton": baton, "requests": [ex("SELECT 3")]})
    assert reused.status_code == 400


def test_request_after_close_is_a_protocol_error(srv: Running) -> None:
    resp = post(srv, {"baton": None, "requests": [CLOSE, ex("SELECT 1")]})
    assert resp.status_code == 400


def test_integer_as_json_number_is_rejected(srv: Running) -> None:
    resp = post(srv, {"baton": None, "requests": [
        ex("SELECT ?", {"type": "integer", "value": 5}), CLOSE]})
    assert resp.status_code == 400
    assert "integer" in resp.json()["message"]


def test_sql_error_is_in_band(srv: Running) -> None:
    resp = post(srv, {"baton": None, "requests": [ex("SELEKT 1"), ex("SELECT 1"), CLOSE]})
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert results[0]["type"] == "error"
    assert "syntax" in results[0]["error"]["message"]
    assert results[1]["type"] == "ok"  # the server executes all requests, even after an error


def test_args_with_named_args_is_an_in_band_error(srv: Running) -> None:
    stmt = {"sql": "SELECT ?", "args": [{"type": "null"}],
            "named_args": [{"name": ":a", "value": {"type": "null"}}]}
    resp = post(srv, {"baton": None, "requests": [{"type": "execute", "stmt": stmt}, CLOSE]})
    assert resp.status_code == 200
    assert resp.json()["results"][0]["type"] == "error"


def test_named_args(srv: Running) -> None:
    stmt = {"sql": "SELECT :a", "named_args": [{"name": "a", "value": {"type": "text", "value": "x"}}]}
    resp = post(srv, {"baton": None, "requests": [{"type": "execute", "stmt": stmt}, CLOSE]})
    assert resp.json()["results"][0]["response"]["result"]["rows"] == [[{"type": "text", "value": "x"}]]


def test_constraint_violation_mid_batch_commits_nothing(srv: Running) -> None:
    post(srv, {"baton": None, "requests": [ex("CREATE TABLE t (id INTEGER PRIMARY KEY)"), CLOSE]})
    one = {"type": "integer", "value": "1"}
    steps = [
        {"stmt": {"sql": "BEGIN"}},
        {"condition": {"type": "ok", "step": 0}, "stmt": {"sql": "INSERT INTO t VALUES (?)", "args": [one]}},
        {"condition": {"type": "ok", "step": 1}, "stmt": {"sql": "INSERT INTO t VALUES (?)", "args": [one]}},
        {"condition": {"type": "ok", "step": 2}, "stmt": {"sql": "COMMIT"}},
        {"condition": {"type": "not", "cond": {"type": "ok", "step": 3}}, "stmt": {"sql": "ROLLBACK"}},
    ]
    resp = post(srv, {"baton": None, "requests": [{"type": "batch", "batch": {"steps": steps}}, CLOSE]})
    result = resp.json()["results"][0]["response"]["result"]
    assert [e is None for e in result["step_errors"]] == [True, True, False, True, True]
    assert "UNIQUE" in result["step_errors"][2]["message"]
    assert result["step_results"][3] is None  # COMMIT skipped
    assert result["step_results"][4] is not None  # ROLLBACK ran
    count = post(srv, {"baton": None, "requests": [ex("SELECT count(*) FROM t"), CLOSE]})
    assert count.json()["results"][0]["response"]["result"]["rows"] == [[{"type": "integer", "value": "0"}]]


def test_bearer_token_required_when_configured(tmp_path: Path) -> None:
    with running(HranaServer(str(tmp_path / "a.db"), token="s3cret")) as r:
        denied = post(r, {"baton": None, "requests": [CLOSE]})
        assert denied.status_code == 401
        assert "error" in denied.json()
        ok = post(r, {"baton": None, "requests": [CLOSE]}, authorization="Bearer s3cret")
        assert ok.status_code == 200


def test_idle_stream_expires(srv: Running, clock: FakeClock) -> None:
    baton = post(srv, {"baton": None, "requests": [ex("SELECT 1")]}).json()["baton"]
    clock.now += 6
    resp = post(srv, {"baton": baton, "requests": [ex("SELECT 1")]})
    assert resp.status_code == 400
    assert resp.json()["code"] == "STREAM_EXPIRED"


def test_fault_injection_and_request_count(srv: Running) -> None:
    srv.server.inject("500")
    srv.server.inject("429")
    before = srv.server.pipeline_requests
    assert post(srv, {"baton": None, "requests": [CLOSE]}).status_code == 500
    assert post(srv, {"baton": None, "requests": [CLOSE]}).status_code == 429
    assert post(srv, {"baton": None, "requests": [CLOSE]}).status_code == 200
    assert srv.server.pipeline_requests - before == 3


def test_truncated_and_dropped_responses(srv: Running) -> None:
    srv.server.inject("truncate")
    cut = post(srv, {"baton": None, "requests": [ex("SELECT 1"), CLOSE]})
    with pytest.raises(ValueError):
        cut.json()
    srv.server.inject("drop")
    with pytest.raises(httpx.TransportError):
        post(srv, {"baton": None, "requests": [ex("SELECT 1"), CLOSE]})
