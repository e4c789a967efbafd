"""The real app (create_app, its lifespan, Tracing with CSV + Turso sinks) against the strict
local Hrana server, while that server is stopped, failing, sabotaged or refusing the token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest

from app import create_app
from cli import main as cli_main
from log.sinks.csv_sink import read_rows
from log.tracing import Tracing
from tests.support.app import make_settings
from tests.support.hrana_server import HranaServer, running

TOKEN = "app-fault-token"
N = 30



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def app_client(settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Tracing]]:
    """The app with its lifespan run by hand (as uvicorn would), and an in-process client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope, receive, send):
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, state["tracing"]


def settings_for(tmp_path: Path, port: int, token: str = TOKEN) -> Any:
    return make_settings(tmp_path, log_sinks=("csv", "turso"), turso_database_url=f"http://127.0.0.1:{port}",
                         turso_auth_token=token)


def csv_ids(settings: Any) -> list[int]:
    return [r.id for r in read_rows(settings.logs_path, "api_logs")]


def db_ids(db_path: Path) -> list[int]:
    try:
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            return [row[0] for row in conn.execute("SELECT id FROM api_logs ORDER BY id")]
    except sqlite3.OperationalError:  # the table is not there yet
        return []


async def until(condition, timeout: float = 30.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.02)


def reports_of_401(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The app's own log lines about the 401 (httpx's request lines excluded)."""
    return [rec.getMessage() for rec in caplog.records
            if "401" in rec.getMessage() and rec.name.startswith(("log", "app"))]


async def requests(client: httpx.AsyncClient, n: int) -> list[int]:
    return [(await client.get("/", params={"n": i})).status_code for i in range(n)]


@pytest.mark.anyio
@pytest.mark.parametrize("outage", ["stopped", "503"])
async def test_turso_outage_loses_no_request_and_no_row(tmp_path: Path, outage: str) -> None:
    port, db_path = free_port(), tmp_path / "remote.db"
    settings = settings_for(tmp_path, port)
    server = HranaServer(str(db_path), token=TOKEN)
    up = running(server, port=port)
    up.__enter__()
    try:
        async with app_client(settings) as (client, logs):
            assert (await client.get("/")).status_code == 200
            await until(lambda: len(db_ids(db_path)) == 1)  # warm: lease taken, tables made
            if outage == "stopped":
                up.__exit__(None, None, None)
            else:
                server.inject("503", times=12)
            assert await requests(client, N) == [200] * N  # 0 failed requests
            await until(lambda: len(csv_ids(settings)) == N + 1)  # CSV first, whatever Turso does
            # The outage outlasts the client's own retries: the lane itself failed and backs off.
            await until(lambda: logs.stats()["sinks"]["turso"]["failed_batches"] >= 1)
            if outage == "stopped":
                assert len(db_ids(db_path)) == 1
                up = running(HranaServer(str(db_path), token=TOKEN), port=port)
                up.__enter__()
            await until(lambda: logs.stats()["sinks"]["turso"]["queued"] == 0)  # acknowledged
            assert db_ids(db_path) == sorted(csv_ids(settings))  # every row, each id once
            assert len(set(csv_ids(settings))) == N + 1
            turso = logs.stats()["sinks"]["turso"]
            assert turso["queued"] == 0 and turso["conflicts"] == 0 and turso["last_error"]
            assert logs.stats()["replay"]["failed_rounds"] == 0  # automatic replay is running
    finally:
        up.__exit__(None, None, None)


def ids_in(arg: dict) -> list[int]:
    """The ids a SELECT-existing argument carries: one integer, or a JSON array of them (text)."""
    return json.loads(arg["value"]) if arg["type"] == "text" else [int(arg["value"])]


class SabotageAfterInsert:
    """Wraps the Hrana server: for the next `times` api_logs batches, the statement after the
    batch's last INSERT is replaced by one that fails, so the server has already run inserts
    when the request fails; then answers 503 (like a primary that died mid-transaction).
    Records which ids each api_logs batch carried and how many of them were left stored."""

    def __init__(self, inner: HranaServer, times: int) -> None:
        self.inner, self.left = inner, times
        self.batches: list[tuple[bool, list[int]]] = []  # (sabotaged, ids)
        self.left_after_failure: list[int] = []

    def close(self) -> None:
        self.inner.close()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v2/pipeline":
            return await self.inner(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        doc = json.loads(body)
        steps = next((r["batch"]["steps"] for r in doc["requests"] if r.get("type") == "batch"), [])
        inserts = [i for i, s in enumerate(steps) if s["stmt"]["sql"].startswith("INSERT INTO api_logs")]
        ids = [i for s in steps if s["stmt"]["sql"].startswith("SELECT") and "FROM api_logs" in s["stmt"]["sql"]
               for a in s["stmt"]["args"] for i in ids_in(a)]
        sabotage = bool(inserts) and self.left > 0
        if inserts:
            self.batches.append((sabotage, ids))
        if sabotage:
            self.left -= 1
            steps[inserts[-1] + 1]["stmt"]["sql"] = "SELECT no_such_column FROM injected_failure"
            body = json.dumps(doc).encode()

        async def replay_body():
            return {"type": "http.request", "body": body, "more_body": False}

        if not sabotage:
            return await self.inner(scope, replay_body, send)

        async def swallow(message):
            pass

        await self.inner(scope, replay_body, swallow)
        stored = set(db_ids(Path(self.inner.db_path)))
        self.left_after_failure.append(len(stored & set(ids)))
        await send({"type": "http.response.start", "status": 503, "headers": [(b"retry-after", b"0")]})
        await send({"type": "http.response.body", "body": b"injected failure mid-transaction"})


@pytest.mark.anyio
async def test_a_failed_transaction_is_retried_whole_and_never_half_applied(tmp_path: Path) -> None:
    port, db_path = free_port(), tmp_path / "remote.db"
    settings = settings_for(tmp_path, port)
    wrapper = SabotageAfterInsert(HranaServer(str(db_path), token=TOKEN), times=3)
    with running(wrapper, port=port):  # type: ignore[arg-type]
        async with app_client(settings) as (client, logs):
            assert await requests(client, N) == [200] * N
            await until(lambda: len(db_ids(db_path)) == N)
            assert db_ids(db_path) == sorted(csv_ids(settings))
    assert wrapper.left == 0 and wrapper.left_after_failure == [0, 0, 0]  # rolled back each time
    # Each failed batch was sent again with exactly the same rows, until it went through.
    first_ok = next(i for i, (sabotaged, _) in enumerate(wrapper.batches) if not sabotaged)
    assert first_ok == 3
    assert {tuple(ids) for _, ids in wrapper.batches[: first_ok + 1]} == {tuple(wrapper.batches[0][1])}
    assert sum(len(ids) for bad, ids in wrapper.batches if not bad) == N


@pytest.mark.anyio
async def test_wrong_token_is_reported_clearly_once_without_a_retry_storm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db_path = tmp_path / "remote.db"
    with running(HranaServer(str(db_path), token=TOKEN)) as r:
        port = int(r.url.rsplit(":", 1)[1])
        settings = settings_for(tmp_path, port, token="wrong-token-value")
        with caplog.at_level(logging.INFO):
            async with app_client(settings) as (client, logs):
                await until(lambda: logs.stats()["sinks"]["turso"]["blocked"])
                reports_at_start = reports_of_401(caplog)
                requests_at_start = r.server.pipeline_requests
                assert await requests(client, N) == [200] * N
                await until(lambda: len(csv_ids(settings)) == N)
                health = (await client.get("/health")).json()
                turso = health["logs"]["sinks"]["turso"]
                assert turso["blocked"] and turso["queued"] == N  # rows kept, not dropped
                assert "401" in turso["last_error"] and "TURSO_AUTH_TOKEN" in turso["last_error"]
                requests_while_running = r.server.pipeline_requests
                reports_while_serving = reports_of_401(caplog)
        reports = reports_of_401(caplog)
    # Start-up tried the database twice (worker-id lease, then the sink's tables); nothing after.
    # Start-up only (schema preparation, then the sink's own table check): none per request.
    assert requests_at_start <= 2
    assert requests_while_running == requests_at_start == r.server.pipeline_requests
    # Said at start-up (the lease, the sink, the lane), never per request or retry; and the
    # shutdown summary says how many rows stayed behind (in CSV) and why.
    assert reports_while_serving == reports_at_start and len(reports_at_start) <= 2
    assert reports[len(reports_at_start):] == [
        f"log sink turso: {N} rows not written at shutdown ({turso['last_error']})"]
    assert all("TURSO_AUTH_TOKEN" in m for m in reports)
    assert "wrong-token-value" not in caplog.text and "wrong-token-value" not in json.dumps(health)
    assert len(set(csv_ids(settings))) == N and db_ids(db_path) == []


@pytest.mark.anyio
async def test_shutdown_sends_what_is_left_within_the_deadline(tmp_path: Path) -> None:
    with running(HranaServer(str(tmp_path / "remote.db"), token=TOKEN)) as r:
        settings = settings_for(tmp_path, int(r.url.rsplit(":", 1)[1]))
        async with app_client(settings) as (client, logs):
            assert await requests(client, N) == [200] * N
        # No polling: the lifespan's shutdown itself flushed every row.
        assert db_ids(tmp_path / "remote.db") == sorted(csv_ids(settings)) and len(csv_ids(settings)) == N
        assert logs.stats()["sinks"]["turso"]["unflushed"] == 0


@pytest.mark.anyio
async def test_turso_down_at_shutdown_rows_stay_in_csv_and_sync_sends_them_once(tmp_path: Path) -> None:
    port, db_path = free_port(), tmp_path / "remote.db"
    settings = settings_for(tmp_path, port)
    up = running(HranaServer(str(db_path), token=TOKEN), port=port)
    up.__enter__()
    try:
        async with app_client(settings) as (client, logs):
            assert (await client.get("/")).status_code == 200
            await until(lambda: len(db_ids(db_path)) == 1)
            up.__exit__(None, None, None)  # Turso goes away; requests keep coming, then shutdown
            assert await requests(client, N) == [200] * N
    finally:
        up.__exit__(None, None, None)
    assert logs.stats()["sinks"]["turso"]["unflushed"] == N
    assert len(csv_ids(settings)) == N + 1 and len(db_ids(db_path)) == 1
    with running(HranaServer(str(db_path), token=TOKEN), port=port):
        code = await anyio.to_thread.run_sync(cli_main, ["logs", "sync"], settings)
        assert code == 0
        assert db_ids(db_path) == sorted(csv_ids(settings))  # all of them, 0 duplicates
        again = await anyio.to_thread.run_sync(cli_main, ["logs", "sync", "--full"], settings)
        assert again == 0 and len(db_ids(db_path)) == N + 1
