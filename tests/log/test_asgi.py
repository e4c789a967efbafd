import asyncio
import itertools
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from log.core.captured import Captured
from log.core.headers import text_headers
from log.asgi import RequestLogMiddleware, client_ip
from log import PathPrefixes

CAP = 64
CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")



def uuid_source() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


def fake_perf() -> Callable[[], float]:
    ticks = itertools.count()
    return lambda: next(ticks) * 0.25  # each call is a quarter second later


# --- a tiny app exercising every kind of exchange ---------------------------------------------


class AuthLike:
    """Stands in for the session/auth middleware that runs INSIDE the request log."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for k, v in scope["headers"]:
                if k == b"x-user":
                    scope["state"]["user"] = v.decode()
        await self.app(scope, receive, send)


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type="application/octet-stream")


async def json_echo(request: Request) -> Response:
    return JSONResponse({"got": await request.json(), "trace": request.state.trace_id})


async def form(request: Request) -> Response:
    async with request.form() as data:
        return JSONResponse(sorted(data.keys()))


async def limited(request: Request) -> Response:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > 100:
            return PlainTextResponse("too large", status_code=413)
    return PlainTextResponse("ok")


async def boom(request: Request) -> Response:
    raise ValueError("boom")


async def missing_file(request: Request) -> Response:
    raise FileNotFoundError("no such template")


async def stream(request: Request) -> Response:
    async def chunks():
        for i in range(5):
            yield f"chunk{i};".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def late_boom(request: Request) -> Response:
    async def chunks():
        yield b"partial"
        raise RuntimeError("late")

    return StreamingResponse(chunks(), media_type="text/plain")


async def whoami(request: Request) -> Response:
    return PlainTextResponse(request.state.trace_id)


def routes(extra: list[Route] | None = None) -> list[Route]:
    return [
        Route("/echo", echo, methods=["POST"]),
        Route("/json", json_echo, methods=["POST"]),
        Route("/form", form, methods=["POST"]),
        Route("/limited", limited, methods=["POST"]),
        Route("/boom", boom),
        Route("/missing", missing_file),
        Route("/stream", stream),
        Route("/late", late_boom),
        Route("/whoami", whoami),
        Route("/static/app.css", lambda r: PlainTextResponse("body{}")),
        Route("/health", lambda r: PlainTextResponse("ok")),
        *(extra or []),
    ]


def make_app(records: list[Captured], extra: list[Route] | None = None, **kw) -> Starlette:
    options = dict(
        record=records.append,
        body_cap=CAP,
        user_id_of=lambda scope: scope["state"].get("user"),
        clock=lambda: 1_700_000_000.5,
        new_uuid=uuid_source(),
    )
    options.update(kw)
    return Starlette(
        routes=routes(extra),
        middleware=[Middleware(RequestLogMiddleware, **options), Middleware(AuthLike)],
    )


def client_for(app, **kw) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app, client=("203.0.113.9", 5555), **kw)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


# --- mixed requests through the in-process transport ------------------------------------------


@pytest.mark.anyio
async def test_mixed_requests_give_exactly_one_record_each():
    records: list[Captured] = []
    app = make_app(records, perf=fake_perf())
    big = bytes(range(256)) * 4  # 1024 bytes, far above CAP
    async with client_for(app) as c:
        responses = [
            await c.post("/json?x=1&y=%20", json={"a": 1}, headers={"x-user": "user-7"}),
            await c.post("/form", data={"name": "n", "pw": "secret"}),
            await c.post("/form", files={"f": ("a.bin", b"\x00\x01\x02", "application/octet-stream")}, data={"k": "v"}),
            await c.post("/echo", content=b"\x00\xff\xfe binary"),
            await c.post("/echo", content=b"\xc3\x28 invalid utf-8"),
            await c.post("/echo", content=big),
            await c.post("/limited", content=b"x" * 500),
            await c.get("/nope"),
            await c.get("/echo"),
            await c.get("/boom"),
            await c.get("/missing"),
            await c.get("/stream"),
        ]
    n = len(responses)
    assert len(records) == n
    by_path = [(r.method, r.path, r.response_status) for r in records]
    assert by_path == [
        ("POST", "/json", 200),
        ("POST", "/form", 200),
        ("POST", "/form", 200),
        ("POST", "/echo", 200),
        ("POST", "/echo", 200),
        ("POST", "/echo", 200),
        ("POST", "/limited", 413),
        ("GET", "/nope", 404),
        ("GET", "/echo", 405),
        ("GET", "/boom", 500),
        ("GET", "/missing", 500),
        ("GET", "/stream", 200),
    ]
    assert [r.status_code for r in responses] == [r.response_status for r in records]
    # Every response carries its record's trace id; all distinct, all canonical.
    assert [r.headers["x-trace-id"] for r in responses] == [r.trace_id for r in records]
    assert len({r.trace_id for r in records}) == n
    assert all(CANONICAL.fullmatch(r.trace_id) for r in records)

    js, urlform, multipart, binary, invalid, oversized, too_large, _, _, err, missing, streamed = records
    assert js.query_string == "x=1&y=%20"
    assert js.request_body == b'{"a":1}' and js.request_body_size == 7
    assert ("content-type", "application/json") in text_headers(js.request_headers)
    assert js.user_id == "user-7"  # set by the inner auth middleware, read after the app ran
    assert responses[0].json()["trace"] == js.trace_id  # handlers see request.state.trace_id
    assert js.client_ip == "203.0.113.9"
    assert js.received_at == 1_700_000_000.5
    assert js.duration_ms == 250  # start tick to the tick at which the last byte was sent
    assert ("content-type", "application/json") in text_headers(js.response_headers)
    assert ("x-trace-id", js.trace_id) in text_headers(js.response_headers)

    assert urlform.request_body == b"name=n&pw=secret"
    assert multipart.request_body.startswith(b"--") and b"Content-Disposition" in multipart.request_body
    assert len(multipart.request_body) == CAP < multipart.request_body_size
    assert binary.request_body == b"\x00\xff\xfe binary" == binary.response_body
    assert invalid.request_body == b"\xc3\x28 invalid utf-8"
    assert oversized.request_body == big[:CAP] and oversized.request_body_size == len(big)
    assert oversized.response_body == big[:CAP] and oversized.response_body_size == len(big)
    assert responses[5].content == big  # the app and the client still got everything
    assert too_large.request_body == b"x" * CAP and too_large.request_body_size == 500

    assert responses[9].text == "Internal Server Error"
    assert err.exception == "ValueError: boom"
    assert "in boom" in err.stack_trace and "ValueError: boom" in err.stack_trace
    assert err.response_body == b"Internal Server Error"
    # An OSError raised by a handler is an app error, not a client disconnect.
    assert missing.exception == "FileNotFoundError: no such template"
    assert streamed.response_body == b"chunk0;chunk1;chunk2;chunk3;chunk4;"
    assert all(r.exception is None for r in records if r.response_status < 500)


@pytest.mark.anyio
async def test_trace_id_propagation():
    records: list[Captured] = []
    app = make_app(records)
    async with client_for(app) as c:
        kept = await c.get("/whoami", headers={"X-Trace-ID": "0F8FAD5B-D9CB-469F-A165-70867728950E"})
        replaced = await c.get("/whoami", headers={"X-Trace-ID": "abc\u00e9 junk".encode("latin-1")})
        upstream = await c.get("/whoami", headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    assert kept.headers["x-trace-id"] == kept.text == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert replaced.headers["x-trace-id"] == replaced.text == "00000000-0000-4000-8000-000000000001"
    assert upstream.text == "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
    assert [r.trace_id for r in records] == [kept.text, replaced.text, upstream.text]
    assert kept.headers.get_list("x-trace-id") == [kept.text]


@pytest.mark.anyio
async def test_app_set_trace_header_is_replaced_not_duplicated():
    records: list[Captured] = []

    async def sets_own(request):
        return PlainTextResponse("x", headers={"X-Trace-ID": "forged"})

    app = make_app(records, extra=[Route("/own", sets_own)])
    async with client_for(app) as c:
        r = await c.get("/own")
    assert r.headers.get_list("x-trace-id") == [records[0].trace_id]


@pytest.mark.anyio
async def test_excluded_paths_are_not_recorded_but_get_a_trace_id():
    records: list[Captured] = []
    app = make_app(records)
    async with client_for(app) as c:
        css = await c.get("/static/app.css")
        health = await c.get("/health")
        near_miss = await c.get("/staticky")
    assert CANONICAL.fullmatch(css.headers["x-trace-id"])
    assert CANONICAL.fullmatch(health.headers["x-trace-id"])
    assert [r.path for r in records] == ["/staticky"]
    assert records[0].trace_id == near_miss.headers["x-trace-id"]


@pytest.mark.anyio
async def test_exception_after_response_started_is_recorded_and_reraised():
    records: list[Captured] = []
    app = make_app(records)
    async with client_for(app) as c:
        with pytest.raises(RuntimeError, match="late"):
            await c.get("/late")
    assert len(records) == 1
    (rec,) = records
    assert rec.response_status == 500  # the 200 body was cut short
    assert rec.response_body == b"partial"
    assert rec.exception == "RuntimeError: late"
    assert "in chunks" in rec.stack_trace


@pytest.mark.anyio
async def test_failing_record_and_user_lookup_never_break_the_request():
    calls: list[Captured] = []

    def bad_record(c: Captured) -> None:
        calls.append(c)
        raise RuntimeError("sink down")

    def bad_user(scope):
        raise KeyError("user")

    async def ok(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = RequestLogMiddleware(ok, record=bad_record, user_id_of=bad_user)
    async with client_for(mw) as c:
        r = await c.get("/x")
    assert r.status_code == 204
    assert mw.record_errors == 2
    assert len(calls) == 1 and calls[0].user_id is None


@pytest.mark.anyio
async def test_app_returning_without_response_gets_a_500():
    records: list[Captured] = []

    async def silent(scope, receive, send):
        return None

    async with client_for(RequestLogMiddleware(silent, record=records.append)) as c:
        r = await c.get("/")
    assert r.status_code == 500 and r.headers["x-trace-id"] == records[0].trace_id
    assert [x.response_status for x in records] == [500]


@pytest.mark.anyio
async def test_on_crash_renders_the_hosts_page_and_a_failing_hook_falls_back_to_plain_500():
    records: list[Captured] = []

    async def crashes(scope, receive, send):
        raise ValueError("boom")

    async def page(scope, receive, send):
        body = f"Sorry. Reference: {scope['state']['trace_id']}".encode()
        await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": body})

    async def broken_page(scope, receive, send):
        raise RuntimeError("the error page itself fails")

    async with client_for(RequestLogMiddleware(crashes, record=records.append, on_crash=page)) as c:
        r = await c.get("/")
    assert r.status_code == 500 and r.text == f"Sorry. Reference: {r.headers['x-trace-id']}"
    assert records[0].exception == "ValueError: boom" and records[0].response_body == r.content
    async with client_for(RequestLogMiddleware(crashes, record=records.append, on_crash=broken_page)) as c:
        r = await c.get("/")
    assert (r.status_code, r.text) == (500, "Internal Server Error")
    assert [x.response_status for x in records] == [500, 500]


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/", "/static/app.css"])  # logging off, or a path not logged
async def test_an_unrecorded_crash_still_gets_the_hosts_page_and_goes_to_the_process_log(path, caplog):
    async def crashes(scope, receive, send):
        raise ValueError("boom")

    async def late_crash(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("after the start")

    async def page(scope, receive, send):
        body = f"Sorry. Reference: {scope['state']['trace_id']}".encode()
        await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": body})

    async def broken_page(scope, receive, send):
        raise RuntimeError("the error page itself fails")

    record = None if path == "/" else (lambda captured: None)
    options = dict(record=record, exclude_prefixes=("/static",))
    with caplog.at_level("ERROR", logger="log.asgi"):
        async with client_for(RequestLogMiddleware(crashes, on_crash=page, **options)) as c:
            r = await c.get(path)
    assert r.status_code == 500 and r.text == f"Sorry. Reference: {r.headers['x-trace-id']}"
    (logged,) = caplog.records
    assert r.headers["x-trace-id"] in logged.getMessage() and "ValueError: boom" in logged.exc_text
    async with client_for(RequestLogMiddleware(crashes, on_crash=broken_page, **options)) as c:
        r = await c.get(path)
    assert (r.status_code, r.text) == (500, "Internal Server Error")
    with pytest.raises(ValueError, match="after the start"):  # a started response cannot be replaced
        async with client_for(RequestLogMiddleware(late_crash, on_crash=page, **options)) as c:
            await c.get(path)


@pytest.mark.anyio
async def test_non_http_scopes_pass_through_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope, receive, send))

    records: list[Captured] = []
    mw = RequestLogMiddleware(app, record=records.append)

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        pass

    for kind in ("lifespan", "websocket"):
        scope = {"type": kind, "path": "/ws", "headers": []}
        await mw(scope, receive, send)
        assert seen[-1] == (scope, receive, send)
        assert "state" not in scope
    assert records == []


@pytest.mark.anyio
async def test_existing_state_dict_is_kept():
    state = {"db": "handle"}
    sent = []

    async def app(scope, receive, send):
        assert scope["state"] is state
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    records: list[Captured] = []
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "state": state, "query_string": b""}
    await RequestLogMiddleware(app, record=records.append)(scope, receive, send)
    assert scope["state"] is state and state["db"] == "handle"
    assert state["trace_id"] == records[0].trace_id
    assert records[0].client_ip is None  # no scope["client"]
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}  # body messages untouched


async def call_raw(mw, scope_extra=None, send_error=None):
    """Drive the middleware directly, with a send that can fail like a dropped socket."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if send_error is not None and message["type"] == "http.response.body":
            raise send_error
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    scope.update(scope_extra or {})
    await mw(scope, receive, send)
    return sent


async def streams_two_chunks(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"one", "more_body": True})
    await send({"type": "http.response.body", "body": b"two"})


@pytest.mark.anyio
async def test_send_failing_with_oserror_is_a_disconnect_not_an_error():
    records: list[Captured] = []
    await call_raw(RequestLogMiddleware(streams_two_chunks, record=records.append), send_error=BrokenPipeError())
    assert [(r.response_status, r.exception) for r in records] == [(499, None)]


@pytest.mark.anyio
async def test_cancellation_is_recorded_once_and_propagates():
    records: list[Captured] = []

    async def cancelled(scope, receive, send):
        raise asyncio.CancelledError()

    with pytest.raises(asyncio.CancelledError):
        await call_raw(RequestLogMiddleware(cancelled, record=records.append))
    assert [r.response_status for r in records] == [499]


@pytest.mark.anyio
async def test_size_only_responses_keep_their_size_but_no_bytes():
    from log.core.bodies import summarised_page

    async def page(request: Request) -> Response:
        return HTMLResponse("<p>" + "x" * 5000 + "</p>", status_code=int(request.query_params.get("status", 200)))

    records: list[Captured] = []
    app = make_app(records, [Route("/page", page)], size_only=summarised_page)
    async with client_for(app) as client:
        assert (await client.get("/page")).status_code == 200
        assert (await client.get("/page?status=404")).status_code == 404
        assert (await client.post("/json", json={"a": 1})).status_code == 200
    ok_page, error_page, json_reply = records
    assert (ok_page.response_body, ok_page.response_body_size) == (b"", 5007)  # summarised: size only
    assert error_page.response_body == b"<p>" + b"x" * (CAP - 3) and error_page.response_body_size == 5007
    assert json_reply.response_body.startswith(b'{"got":{"a":1}')  # other bodies are kept
    assert len(json_reply.response_body) == json_reply.response_body_size


def test_client_ip_rules():
    peer = ("10.0.0.2", 1234)
    xff = [("x-forwarded-for", "6.6.6.6, 198.51.100.7")]
    assert client_ip(peer, xff, trusted_proxy=False) == "10.0.0.2"
    assert client_ip(peer, xff, trusted_proxy=True) == "198.51.100.7"
    two = [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "2001:db8::1")]
    assert client_ip(peer, two, trusted_proxy=True) == "2001:db8::1"
    assert client_ip(peer, [("x-forwarded-for", "1.2.3.4, evil\r\n")], trusted_proxy=True) == "10.0.0.2"
    assert client_ip(peer, [], trusted_proxy=True) == "10.0.0.2"
    assert client_ip(None, [], trusted_proxy=False) is None


def test_path_prefixes_are_segment_wise():
    assert "/static" in PathPrefixes(("/static",))
    assert "/static/a/b.css" in PathPrefixes(("/static",))
    assert "/health" in PathPrefixes(("/static", "/health/"))
    assert "/staticky" not in PathPrefixes(("/static",))
    assert "/" not in PathPrefixes(("/static", "/health"))


# --- a real uvicorn server for streaming and disconnects ---------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before deadline")
        time.sleep(0.01)


@pytest.fixture
def live() -> Iterator[tuple[str, list[Captured], threading.Event, threading.Event]]:
    records: list[Captured] = []
    gate = threading.Event()
    hung = threading.Event()

    async def gated(request: Request) -> Response:
        async def chunks():
            yield b"first;"
            # Only continues once the client proved it already received "first;".
            await anyio.to_thread.run_sync(gate.wait, 10)
            yield b"second;"

        return StreamingResponse(chunks(), media_type="text/plain")

    async def hang(request: Request) -> Response:
        async def chunks():
            yield b"started;"
            hung.set()
            await anyio.sleep_forever()
            yield b"never"

        return StreamingResponse(chunks(), media_type="text/plain")

    app = make_app(records, extra=[Route("/gated", gated), Route("/hang", hang)], trusted_proxy=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", ws="none", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{port}", records, gate, hung
    finally:
        gate.set()
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()


def test_streaming_and_disconnect_on_a_real_server(live):
    base, records, gate, hung = live
    with httpx.Client(base_url=base, timeout=10) as c:
        ok = c.post("/echo", content=b"hello", headers={"x-forwarded-for": "6.6.6.6, 192.0.2.44"})
        assert ok.content == b"hello"
        # Streaming: the first chunk reaches the client before the app produces the second.
        with c.stream("GET", "/gated") as r:
            chunks = r.iter_raw()
            assert next(chunks) == b"first;"
            gate.set()
            assert b"".join(chunks) == b"second;"
            gated_trace = r.headers["x-trace-id"]

    # Disconnect mid-response: read the first chunk on a raw socket, then hang up.
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\nX-Trace-ID: 11111111-2222-3333-4444-555555555555\r\n\r\n")
        received = b""
        while b"started;" not in received:
            received += s.recv(4096)
        wait_until(hung.is_set)
    wait_until(lambda: len(records) == 3)

    echo_rec, gated_rec, hang_rec = records
    assert (echo_rec.response_status, echo_rec.request_body, echo_rec.client_ip) == (200, b"hello", "192.0.2.44")
    assert (gated_rec.response_status, gated_rec.response_body, gated_rec.trace_id) == (200, b"first;second;", gated_trace)
    assert gated_rec.response_body_size == len(b"first;second;")
    assert hang_rec.response_status == 499
    assert hang_rec.response_body == b"started;"
    assert hang_rec.trace_id == "11111111-2222-3333-4444-555555555555"
    assert hang_rec.exception is None


def test_text_headers_decodes_raw_asgi_pairs_and_keeps_decoded_ones() -> None:
    raw = [(b"Content-Type", b"text/html; charset=utf-8"), (b"x-v", "é".encode("latin-1"))]
    assert text_headers(raw) == [("content-type", "text/html; charset=utf-8"), ("x-v", "é")]
    decoded = [("content-type", "application/json")]
    assert text_headers(decoded) == decoded
    assert text_headers([]) == []


@pytest.mark.anyio
async def test_logging_off_keeps_the_trace_id_and_header_and_captures_nothing() -> None:
    seen: dict[str, str] = {}

    async def app(scope, receive, send):
        seen["trace_id"] = scope["state"]["trace_id"]
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    mw = RequestLogMiddleware(app, record=None)
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"hello", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/items", "query_string": b"",
             "headers": [(b"x-request-id", b"11111111-2222-3333-4444-555555555555")]}
    await mw(scope, receive, send)
    assert seen["trace_id"] == "11111111-2222-3333-4444-555555555555"
    assert sent[0]["status"] == 201
    assert (b"x-trace-id", b"11111111-2222-3333-4444-555555555555") in sent[0]["headers"]
    assert sent[1]["body"] == b"hello"
