"""The tracing log at app level: what the real app actually wrote, read back from disk.

Every HTTP request -> exactly one api_logs row, in the CSV file (log/csv_sink.read_rows) and in
the file: log database (DATA_DIR/logs.db), with the same ids and the same content. Secrets never
reach either. Client disconnects (499) need a real server, so those run under uvicorn.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import msgspec
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app import create_app
from log.sinks.csv_sink import read_rows
from log.core.ids import EPOCH_MS
from log.core.rows import TABLES, ApiLog, columns
from settings import Settings
from tests.support.app import ROOT, AppClient, free_port, make_settings
from tests.support.hrana_server import HranaServer, running

pytestmark = pytest.mark.anyio

CREATED_AT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}")



# -- extra routes the real app lacks: a crash, a probe under /logs, a request we can hold -------


class BoomError(RuntimeError):
    pass


async def boom(request: Request) -> Response:
    raise BoomError("kaboom: the handler fell over")


async def logs_probe(request: Request) -> Response:
    return JSONResponse({"marker": "LOGS-BODY-MARKER"})


async def echo(request: Request) -> Response:
    # Reads the body, as a JSON API would: the log captures only what the app reads.
    return JSONResponse({"size": len(await request.body())})


async def slow_stream(request: Request) -> Response:
    async def chunks():
        yield b"first chunk\n"
        await anyio.sleep_forever()  # until the client goes away

    return StreamingResponse(chunks(), media_type="text/plain")


TEST_ROUTES = [
    Route("/boom", boom, methods=["GET"]),
    Route("/logs/probe", logs_probe, methods=["GET"]),
    Route("/echo", echo, methods=["POST"]),
    Route("/slow-stream", slow_stream, methods=["GET"]),
]


def app_with_test_routes():
    """uvicorn --factory entry point: the real app from the environment plus TEST_ROUTES."""
    app = create_app(Settings.from_env(env_file=None))
    app.router.routes.extend(TEST_ROUTES)
    return app


# -- running the app in-process ---------------------------------------------------------------


class Made(msgspec.Struct):
    """One request the client made, as the client saw it."""

    method: str
    path: str
    status: int
    sent_trace: str | None
    got_trace: str
    started: float
    finished: float


@contextlib.asynccontextmanager
async def serving(settings: Settings, routes=(), made: list[Made] | None = None) -> AsyncIterator[tuple[AppClient, dict]]:
    """The app with its lifespan; every request gets a fresh X-Trace-ID unless it has one.
    Leaving the block closes the lifespan, so every accepted row has been written."""
    app = create_app(settings)
    app.router.routes.extend(routes)
    made = made if made is not None else []
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope, receive, send):
            scope["state"] = dict(state)  # what uvicorn does with lifespan state
            await app(scope, receive, send)

        async def on_request(request: httpx.Request) -> None:
            request.extensions["sent_trace"] = request.headers.get("x-trace-id")
            request.extensions["started"] = time.time()
            if "x-trace-id" not in request.headers:
                request.headers["X-Trace-ID"] = request.extensions["sent_trace"] = str(uuid.uuid4())

        async def on_response(response: httpx.Response) -> None:
            req = response.request
            made.append(
                Made(
                    method=req.method, path=req.url.path, status=response.status_code,
                    sent_trace=req.extensions["sent_trace"], got_trace=response.headers["x-trace-id"],
                    started=req.extensions["started"], finished=time.time(),
                )
            )

        client = AppClient(
            transport=httpx.ASGITransport(with_state),
            base_url="http://testserver",
            event_hooks={"request": [on_request], "response": [on_response]},
        )
        async with client:
            yield client, state


def csv_rows(settings: Settings, table: str = "api_logs") -> list:
    return list(read_rows(settings.logs_path, table))


def db_rows(settings: Settings, table: str = "api_logs") -> list:
    row_type = TABLES[table]
    cols = columns(row_type)
    with contextlib.closing(sqlite3.connect(settings.data_dir / "logs.db")) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute(f"SELECT {','.join(cols)} FROM {table} ORDER BY id").fetchall()
    return [msgspec.convert(dict(r), row_type) for r in found]


def raw_log_bytes(settings: Settings) -> bytes:
    """Every byte any sink wrote: the CSV files and the log database (with its WAL)."""
    paths = [p for p in Path(settings.logs_path).iterdir()]
    paths += [p for p in settings.data_dir.iterdir() if p.name.startswith("logs.db")]
    assert paths
    return b"".join(p.read_bytes() for p in paths if p.is_file())


def epoch_of(created_at: str) -> float:
    stamp = dt.datetime.strptime(created_at, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def logged(made: list[Made]) -> list[Made]:
    return [m for m in made if not m.path.startswith(("/static", "/health"))]


# -- every request is one row, CSV == DB ------------------------------------------------------

PLANTED = {
    "auth": "PLANTED-AUTH-HEADER-7f3a",
    "cookie": "PLANTED-COOKIE-VALUE-91bd",
    "form_pw": "PLANTED-FORM-PASSWORD-55c1",
    "json_pw": "PLANTED-JSON-PASSWORD-0e2d",
    "query": "PLANTED-QUERY-TOKEN-c4a9",
    "csrf": "PLANTED-CSRF-HEADER-d871",
    "signup_pw": "PLANTED-SIGNUP-PASSWORD-3b6f",
}
# Logged next to the secrets: they must show up, or the grep proves nothing.
VISIBLE = ["VISIBLE-JSON-COLOR", "VISIBLE-FORM-NAME", "VISIBLE-QUERY-Q", "VISIBLE-HEADER-X"]


async def make_mixed_requests(client: AppClient) -> dict[str, int]:
    """One of every kind of request the issue lists (plus signing up), each answered.
    -> {trace id: status} of the requests made while signed in."""
    r = await client.signup("alice@example.com", password=PLANTED["signup_pw"])
    assert r.status_code == 303, r.text
    csrf = client.csrf
    signed_in: dict[str, int] = {}

    async def go(method: str, url: str, **kw) -> httpx.Response:
        response = await client.request(method, url, **kw)
        signed_in[response.headers["x-trace-id"]] = response.status_code
        return response

    assert (await go("GET", "/items")).status_code == 200
    # form (htmx create) with a password field planted next to the item fields
    r = await go("POST", "/items", headers=client.htmx(), data={
        "name": "VISIBLE-FORM-NAME", "quantity": "2", "description": "", "password": PLANTED["form_pw"]})
    assert r.status_code == 200
    # invalid form: 422 with the form again (an error page: its HTML is logged, minus the token)
    r = await go("POST", "/items", headers=client.htmx(), data={"name": "", "quantity": "x"})
    assert r.status_code == 422 and client.csrf in r.text
    # JSON with a password nested two levels deep
    body = {"name": "json item", "profile": {"prefs": {"password": PLANTED["json_pw"], "color": "VISIBLE-JSON-COLOR"}}}
    r = await go("POST", "/echo", headers=client.htmx(), json=body)
    assert r.status_code == 200
    # multipart, with the token as a form field (no-JS form) and a file part
    r = await go("POST", "/items", data={"name": "multi", "quantity": "1", "description": "", "csrf_token": csrf},
                 files={"attachment": ("a.bin", b"\x00\x01\x02" * 50, "application/octet-stream")})
    assert r.status_code == 303
    # binary body
    r = await go("POST", "/echo", headers={**client.htmx(), "Content-Type": "application/octet-stream"},
                 content=bytes(range(256)) * 4)
    assert r.json() == {"size": 1024}
    # invalid UTF-8 in a form body
    r = await go("POST", "/items", headers={**client.htmx(), "Content-Type": "application/x-www-form-urlencoded"},
                 content=b"name=\xff\xfe\xfd&quantity=1&description=")
    assert r.status_code in (200, 400, 422)
    # oversized body -> 413 (MAX_REQUEST_BYTES is 4096 here)
    r = await go("POST", "/items", headers={**client.htmx(), "Content-Type": "text/plain"}, content=b"x" * 20_000)
    assert r.status_code == 413
    assert (await go("GET", "/no/such/page")).status_code == 404
    assert (await go("DELETE", "/items", headers=client.htmx())).status_code == 405
    assert (await go("GET", "/boom")).status_code == 500
    r = await go("GET", "/items/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv") and "VISIBLE-FORM-NAME" in r.text
    # secret in the query string, next to an ordinary parameter
    r = await go("GET", f"/items?q=VISIBLE-QUERY-Q&access_token={PLANTED['query']}")
    assert r.status_code == 200
    # a forged CSRF header: refused, still logged, the value scrubbed
    r = await go("POST", "/items", headers={"HX-Request": "true", "X-CSRF-Token": PLANTED["csrf"]}, data={"name": "x"})
    assert r.status_code == 403
    # Authorization and a hand-made Cookie header (anonymous: replaces the session cookie)
    anon = {"Authorization": f"Bearer {PLANTED['auth']}", "Cookie": f"theme={PLANTED['cookie']}",
            "X-Harmless": "VISIBLE-HEADER-X"}
    async with httpx.AsyncClient(transport=client._transport, base_url="http://testserver",
                                 event_hooks=client.event_hooks) as other:
        r = await other.get("/items", headers=anon)
        assert r.status_code == 200
        r = await other.post("/login", data={"email": "alice@example.com", "password": PLANTED["form_pw"]})
        assert r.status_code == 403  # no CSRF token: refused before the handler, body still logged
    # not logged at all
    assert (await go("GET", "/health")).status_code == 200
    assert (await go("GET", "/static/app.css")).status_code == 200
    return signed_in


async def test_every_request_is_one_row_in_csv_and_db_identical(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_sinks=("csv", "turso"), max_request_bytes=4096)
    made: list[Made] = []
    async with serving(settings, TEST_ROUTES, made) as (client, _):
        signed_in = await make_mixed_requests(client)
        assert len(signed_in) >= 15
        session_cookie = client.cookies.get("session")
        csrf = client.csrf
    expected = logged(made)
    assert len(expected) >= 18 and len(made) == len(expected) + 2

    rows = csv_rows(settings)
    assert len(rows) == len(expected)
    # CSV and the log database: the same rows, ids included, field by field.
    assert db_rows(settings) == rows

    by_trace = {row.trace_id: row for row in rows}
    assert len(by_trace) == len(rows)
    assert len({row.id for row in rows}) == len(rows)
    user_ids = set()
    for m in expected:
        row = by_trace[m.got_trace]
        assert m.got_trace == m.sent_trace  # a valid incoming X-Trace-ID is kept
        assert (row.method, row.endpoint.split("?")[0], row.response_status) == (m.method, m.path, m.status)
        assert CREATED_AT.fullmatch(row.created_at)
        # received at: between the client sending and getting the answer (ms rounding)
        assert m.started - 0.001 <= epoch_of(row.created_at) <= m.finished + 0.001
        assert row.ip_address == "127.0.0.1"
        if m.got_trace in signed_in and m.status != 413:
            # (a 413 is refused before the session is read: it has no user)
            user_ids.add(row.user_id)
        elif m.got_trace not in signed_in:
            assert row.user_id is None or m.path in ("/signup", "/")  # anonymous, or signing up
    assert len(user_ids) == 1 and None not in user_ids  # every signed-in request carries her id
    # ids follow the order the (sequential) requests were made
    assert [by_trace[m.got_trace].id for m in expected] == sorted(row.id for row in rows)

    statuses = {m.status for m in expected}
    assert {200, 303, 403, 404, 405, 413, 422, 500} <= statuses

    # the crash: a FAILED task row in the request's trace with the text and the stack
    crash_trace = next(m.got_trace for m in expected if m.path == "/boom")
    tasks = [t for t in csv_rows(settings, "task_progress_logs") if t.trace_id == crash_trace]
    assert len(tasks) == 1
    assert tasks[0].status == "FAILED"
    assert tasks[0].error_message == "BoomError: kaboom: the handler fell over"
    assert "Traceback" in tasks[0].stack_trace and "in boom" in tasks[0].stack_trace
    assert db_rows(settings, "task_progress_logs") == csv_rows(settings, "task_progress_logs")

    # each kind of body is logged the way log/bodies.py promises
    def row_for(method: str, path: str, status: int) -> ApiLog:
        (m,) = [m for m in expected if (m.method, m.path, m.status) == (method, path, status)]
        return by_trace[m.got_trace]

    def body(text: str | None):
        return msgspec.json.decode(text) if text is not None else None

    echo_bodies = [body(by_trace[m.got_trace].request_body) for m in expected if m.path == "/echo"]
    assert echo_bodies[0]["profile"]["prefs"] == {"password": "[REDACTED]", "color": "VISIBLE-JSON-COLOR"}
    assert echo_bodies[1]["summary"] == {"content_type": "application/octet-stream", "size": 1024,
                                         "sha256": hashlib.sha256(bytes(range(256)) * 4).hexdigest(),
                                         "captured_bytes": 1024}
    multipart = body(row_for("POST", "/items", 303).request_body)
    assert multipart["summary"]["content_type"] == "multipart/form-data"
    forms = [body(by_trace[m.got_trace].request_body) for m in expected if (m.method, m.path, m.status) == ("POST", "/items", 200)]
    assert forms == [
        {"name": "VISIBLE-FORM-NAME", "quantity": "2", "description": "", "password": "[REDACTED]"},
        {"name": "\xff\xfe\xfd", "quantity": "1", "description": ""},  # raw bytes: as the app read them (latin-1)
    ]
    # the app's crash page (the tracing layer's on_crash hook) quotes the trace id as a reference
    boom = row_for("GET", "/boom", 500)
    assert f"Reference: {boom.trace_id}" in msgspec.json.decode(boom.response_body)
    assert "VISIBLE-FORM-NAME" in body(row_for("GET", "/items/export.csv", 200).response_body)
    assert all(isinstance(r.duration_ms, int) and r.duration_ms >= 0 for r in rows)

    # the query secret is scrubbed in the endpoint, the rest of the query kept
    q_row = next(r for r in rows if "access_token" in r.endpoint)
    assert q_row.endpoint == "/items?q=VISIBLE-QUERY-Q&access_token=[REDACTED]"

    raw = raw_log_bytes(settings)
    for name, secret in PLANTED.items():
        assert secret.encode() not in raw, name
    assert session_cookie and session_cookie.encode() not in raw
    assert csrf.encode() not in raw
    for marker in VISIBLE:
        assert marker.encode() in raw, marker


async def test_trace_ids_kept_replaced_and_returned(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_sinks=("csv",))
    incoming = str(uuid.uuid4())
    async with serving(settings) as (client, _):
        kept = await client.get("/", headers={"X-Trace-ID": incoming.upper()})
        replaced = await client.get("/", headers={"X-Trace-ID": "not-a-uuid; DROP TABLE"})
        fresh = await client.get("/")
    assert kept.headers["x-trace-id"] == incoming
    new = replaced.headers["x-trace-id"]
    assert new != "not-a-uuid; DROP TABLE" and uuid.UUID(new).version == 7  # a new, time-ordered id
    assert fresh.headers["x-trace-id"] != new
    rows = csv_rows(settings)
    assert [r.trace_id for r in rows] == [incoming, new, fresh.headers["x-trace-id"]]
    # the page carries its trace id, for htmx requests to send back
    assert f'data-trace-id="{incoming}"' in kept.text


async def test_created_at_is_when_the_request_arrived(tmp_path: Path) -> None:
    entered, release = anyio.Event(), anyio.Event()

    async def held(request: Request) -> Response:
        entered.set()
        await release.wait()
        return Response("done")

    settings = make_settings(tmp_path, log_sinks=("csv",))
    async with serving(settings, [Route("/held", held)]) as (client, _):
        async with anyio.create_task_group() as tg:
            before = time.time()
            tg.start_soon(client.get, "/held")
            await entered.wait()
            # a moment that is surely after the arrival and before completion
            while time.time() < before + 0.05:
                await anyio.sleep(0.005)  # waiting for the clock to move on, not for a result
            middle = time.time()
            release.set()
    (row,) = csv_rows(settings)
    assert epoch_of(row.created_at) <= middle
    assert epoch_of(row.created_at) >= before - 0.001
    # the id is made at completion, its timestamp part is not before arrival
    assert (row.id >> 22) + EPOCH_MS >= round(epoch_of(row.created_at) * 1000)


async def test_excluded_prefixes_and_no_bodies_for_logs_pages(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_sinks=("csv", "turso"))
    async with serving(settings, TEST_ROUTES) as (client, _):
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/static/app.css")).status_code == 200
        assert (await client.get("/static/nope.css")).status_code == 404
        probe = await client.get("/logs/probe")
        assert probe.json() == {"marker": "LOGS-BODY-MARKER"}
        page = await client.get("/", headers={"Accept": "application/json"})
        assert page.status_code == 200
        # the real explorer, as its admin (the first local account)
        await client.signup("admin@example.com")
        for path in ("/logs", "/logs/overview"):
            explorer = await client.get(path)
            assert explorer.status_code == 200 and "<table" in explorer.text
        # the live tail's polls are not logged, so the tail never shows itself
        poll = await client.get("/logs/tail?after=0")
        assert poll.status_code in (200, 204)  # 204: no row has reached the log database yet
    rows = csv_rows(settings)
    assert not any(r.endpoint.startswith("/logs/tail") for r in rows)
    assert not any(r.endpoint.startswith("/logs/tail") for r in db_rows(settings))
    assert [r.endpoint for r in rows][:2] == ["/logs/probe", "/"]
    assert rows[0].response_status == 200 and rows[0].response_body is None
    # other pages are summarised: the size the client got, none of the bytes kept (size_only)
    assert msgspec.json.decode(rows[1].response_body) == {
        "summary": {"content_type": "text/html", "size": len(page.content), "captured_bytes": 0}}
    assert b"LOGS-BODY-MARKER" not in raw_log_bytes(settings)
    explorer_rows = [r for r in rows if r.endpoint.startswith("/logs/overview") or r.endpoint == "/logs"]
    assert len(explorer_rows) == 2
    assert all(r.response_status == 200 and r.response_body is None and r.user_id for r in explorer_rows)
    assert not any(r.endpoint.startswith(("/health", "/static")) for r in rows)


async def test_extra_redaction_keys_from_settings(tmp_path: Path) -> None:
    environ = {"LOG_REDACT_EXTRA": "iban, ^member_no$", "DATA_DIR": str(tmp_path), "SECRET_KEY": "k",
               "LOG_SINKS": "csv,turso"}
    settings = Settings.from_env(environ, env_file=None)
    assert settings.log_redact_extra == ("iban", "^member_no$")
    async with serving(settings, TEST_ROUTES) as (client, _):
        await client.signup("bob@example.com")
        body = {"payment": {"iban": "DE00-PLANTED-IBAN", "member_no": "PLANTED-MEMBER", "bank": "VISIBLE-BANK"},
                "old_member_no": "VISIBLE-NOT-ANCHORED"}
        r = await client.post("/echo", json=body, headers={**client.htmx(), "X-IBAN": "PLANTED-IBAN-HEADER"})
        assert r.status_code == 200
        r = await client.get("/items?my_iban=PLANTED-IBAN-QUERY&q=VISIBLE-Q2")
        assert r.status_code == 200
    raw = raw_log_bytes(settings)
    for secret in (b"DE00-PLANTED-IBAN", b"PLANTED-MEMBER", b"PLANTED-IBAN-HEADER", b"PLANTED-IBAN-QUERY"):
        assert secret not in raw, secret
    for visible in (b"VISIBLE-BANK", b"VISIBLE-NOT-ANCHORED", b"VISIBLE-Q2"):
        assert visible in raw, visible
    assert db_rows(settings) == csv_rows(settings)


def test_a_bad_extra_redaction_pattern_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="LOG_REDACT_EXTRA"):
        Settings.from_env({"LOG_REDACT_EXTRA": "ok,(unclosed"}, env_file=None)


# -- sinks that fail or hang never fail or hold up a request ------------------------------------


async def test_a_dead_log_database_fails_no_request(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    settings = make_settings(tmp_path, log_sinks=("csv", "turso"), turso_database_url=f"http://127.0.0.1:{closed}")
    made: list[Made] = []
    async with serving(settings, made=made) as (client, state):
        await client.signup("carol@example.com")
        for i in range(10):
            assert (await client.get(f"/items?q={i}")).status_code == 200
        deadline = time.monotonic() + 10
        while True:
            turso = (await client.get("/health")).json()["logs"]["sinks"]["turso"]
            if turso["failed_batches"] or time.monotonic() > deadline:
                break
            await anyio.sleep(0.02)  # polling the health counters with a deadline
        assert turso["failed_batches"] >= 1
        assert "ConnectError" in turso["last_error"] or "refused" in turso["last_error"].lower()
        assert turso["written"] == 0
        # Give up on the dead sink quickly at shutdown; the CSV lane is drained first anyway.
        await state["tracing"].aclose(deadline=0.5)
    rows = csv_rows(settings)
    assert len(rows) == len(logged(made)) == 13  # signing up (3 requests) + the 10 list requests
    assert [r.trace_id for r in rows] == [m.got_trace for m in logged(made)]
    assert all(r.response_status in (200, 303) for r in rows)


async def test_a_hanging_log_database_holds_up_no_request(tmp_path: Path) -> None:
    server = HranaServer(str(tmp_path / "remote.db"))
    with running(server) as remote:
        settings = make_settings(tmp_path / "app", log_sinks=("csv", "turso"), turso_database_url=remote.url)
        settings.data_dir.mkdir()
        async with serving(settings) as (client, state):
            server.inject("delay", times=1, delay=4.0)  # longer than the requests below take
            before = server.pipeline_requests
            assert (await client.get("/")).status_code == 200
            deadline = time.monotonic() + 10
            while server.pipeline_requests == before and time.monotonic() < deadline:
                await anyio.sleep(0.01)  # wait until the sink's write is stuck in the server
            assert server.pipeline_requests > before and not server.faults
            for i in range(20):
                assert (await client.get(f"/?n={i}")).status_code == 200
            # every request above finished while the database had not acknowledged a single row
            stats = (await client.get("/health")).json()["logs"]["sinks"]
            assert stats["turso"]["written"] == 0 and stats["turso"]["queued"] == 21
            # then the stuck write ends and the lane catches up (before shutdown's deadline)
            deadline = time.monotonic() + 20
            while stats["turso"]["written"] < 21 and time.monotonic() < deadline:
                await anyio.sleep(0.05)  # polling the sink counters with a deadline
                stats = (await client.get("/health")).json()["logs"]["sinks"]
        with contextlib.closing(sqlite3.connect(tmp_path / "remote.db")) as conn:
            remote_ids = [r[0] for r in conn.execute("SELECT id FROM api_logs ORDER BY id")]
    assert remote_ids == [r.id for r in csv_rows(settings)] and len(remote_ids) == 21


# -- client disconnects, under a real uvicorn ---------------------------------------------------


@contextlib.contextmanager
def uvicorn_with_test_routes(data_dir: Path, env: dict[str, str]):
    port = free_port()
    full_env = {**os.environ, "DATA_DIR": str(data_dir), "SECRET_KEY": "live-secret", **env}
    full_env.pop("K_SERVICE", None)
    with open(data_dir / "server.log", "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "tests.app.test_request_logging:app_with_test_routes",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(url, process), 30, lambda: (data_dir / "server.log").read_text())
        yield url, port, process
    finally:
        process.terminate()
        process.wait(timeout=20)


def _healthy(url: str, process: subprocess.Popen) -> bool:
    assert process.poll() is None, "server exited"
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(condition: Callable[[], bool], seconds: float, explain: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds}s\n{explain()}")
        time.sleep(0.02)  # polling interval while waiting for a condition


def test_client_disconnects_are_logged_as_499(tmp_path: Path) -> None:
    trace_stream, trace_upload = str(uuid.uuid4()), str(uuid.uuid4())
    with uvicorn_with_test_routes(tmp_path, {"LOG_SINKS": "csv,turso"}) as (url, port, process):
        assert httpx.get(f"{url}/").status_code == 200
        # a streaming response: read its first chunk, then hang up while it is still going
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(f"GET /slow-stream HTTP/1.1\r\nHost: x\r\nX-Trace-ID: {trace_stream}\r\n\r\n".encode())
            received = b""
            while b"first chunk" not in received:
                data = sock.recv(4096)
                assert data, received
                received += data
        # an upload that stops half way
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                f"POST /items HTTP/1.1\r\nHost: x\r\nX-Trace-ID: {trace_upload}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\nname=half".encode()
            )
        assert httpx.get(f"{url}/no-such").status_code == 404
        assert httpx.get(f"{url}/boom").status_code == 500
        logs = tmp_path / "logs"
        wait_for(lambda: logs.is_dir() and len(list(read_rows(logs, "api_logs"))) == 5, 15)
        assert process.poll() is None
    rows = {r.trace_id: r for r in read_rows(tmp_path / "logs", "api_logs")}
    assert len(rows) == 5
    assert rows[trace_stream].response_status == 499 and rows[trace_stream].endpoint == "/slow-stream"
    assert rows[trace_upload].response_status == 499 and rows[trace_upload].method == "POST"
    assert sorted(r.response_status for r in rows.values()) == [200, 404, 499, 499, 500]
    settings = make_settings(tmp_path)
    assert db_rows(settings) == csv_rows(settings)


# -- HTML kept in logs (error pages) loses the page's secrets ----------------------------------


@pytest.mark.parametrize(
    ("html", "kept"),
    [
        ("""<body hx-headers='{"X-CSRF-Token": "SECRET", "X-Trace-ID": "t-1"}'>""", "t-1"),
        ('<input type="hidden" name="csrf_token" value="SECRET"><input name="q" value="kept">', "kept"),
        ('<meta name="csrf-token" content="SECRET"><meta name="x" content="kept">', "kept"),
        ("<div data-session-id=SECRET data-page=kept>", "kept"),
        ('<div hx-vals="{&quot;csrf_token&quot;: &quot;SECRET&quot;, &quot;n&quot;: &quot;kept&quot;}">', "kept"),
        ('<p>kept</p><input name="password" value="SECR', "kept"),  # cut off by the capture cap
    ],
)
def test_redact_html_scrubs_tokens_in_pages(html: str, kept: str) -> None:
    from log.core.redact import RedactionPolicy, redact_html

    out = redact_html(html, RedactionPolicy())
    assert "SECR" not in out and kept in out and "[REDACTED]" in out
