"""Capture every HTTP exchange as one `Captured` and hand it to a `record` callback.

Pure ASGI (no BaseHTTPMiddleware), so streaming responses keep streaming and the request body
is only read when the app reads it: receive/send are wrapped, every message is passed on as is
(only `http.response.start` gets an added `x-trace-id` header) and the first `body_cap` bytes
of each body are kept on the way through (of a response body only its size when `size_only`
says so: summarised pages). Headers are handed on raw (ASGI byte pairs): the
row builder decodes them a batch at a time, off the request's own path.

With `record=None` (logging off) only the trace id is kept: request.state.trace_id and the
`x-trace-id` response header, with no capture work; an app that raises before starting its
response still gets the `on_crash` page, and the error goes to the process log (there is no
row to hold it). Otherwise exactly one `record()` call per http request, whatever happens:
- normal response: its status;
- client gone (http.disconnect seen before the response completed, or send raised OSError /
  ClientDisconnect): 499, nothing re-raised (there is nobody to answer);
- app raised before starting the response: the host's `on_crash` ASGI app answers (its own
  error page; request.state.trace_id is set), or a plain 500 when there is none or it fails;
  recorded as 500 with the exception text and traceback; not re-raised, so the server does
  not log it a second time;
- app raised after starting the response: recorded (500 if the body was cut short, else the
  sent status) with the exception, then re-raised so the server closes the connection.

The route template is read from the scope once the app has returned (`route_template`): Starlette's
router (and FastAPI's, and the app's own IndexedRouter) put the matched route in `scope["route"]`
of the very scope dict passed down, updating it in place, so the capture layer sees it.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from log.core.bodies import summarised_page
from log.core.captured import Captured
from log.core.headers import content_type_of, text_headers
from log.core.random_ids import new_trace_id
from log.core.rows import UNMATCHED
from log.core.trace import trace_id_from_headers

if TYPE_CHECKING:
    from log.tracing import Tracing

logger = logging.getLogger("log.asgi")

TRACE_HEADER = b"x-trace-id"
_RAW_TRACE_NAMES = frozenset({b"x-trace-id", b"x-request-id", b"traceparent", b"x-cloud-trace-context"})
_DISCONNECTS = (OSError, ClientDisconnect)
_500_BODY = b"Internal Server Error"


def _no_user(scope: Scope) -> str | None:
    return None


class PathPrefixes:
    """Segment-wise path prefixes: "/static" covers "/static" and "/static/x", not "/staticky".

    `path in prefixes` is tested on every request, so the prefixes are normalised once.
    """

    __slots__ = ("stems",)

    def __init__(self, prefixes: Sequence[str]) -> None:
        self.stems = tuple(p.rstrip("/") for p in prefixes)

    def __contains__(self, path: str) -> bool:
        # Most paths start with none of the stems: one C call says so; the segment check only on a hit.
        if not path.startswith(self.stems):
            return False
        return any(path.startswith(s) and (len(path) == len(s) or path[len(s)] == "/") for s in self.stems)


def client_ip(
    scope_client: Sequence[Any] | None, headers: Sequence[tuple[str, str]], trusted_proxy: bool
) -> str | None:
    """The caller's IP address.

    Behind a trusted front end (Cloud Run / Google front end) the client IP is the entry the
    front end APPENDED to X-Forwarded-For, i.e. the right-most one; everything to its left came
    from the client and can be forged, so it is never used. When several X-Forwarded-For
    headers arrive they are one list in order. A right-most entry that is not an IP address
    (misconfiguration) falls back to the socket peer rather than logging junk.
    """
    peer = str(scope_client[0]) if scope_client else None
    if not trusted_proxy:
        return peer
    entries = [e.strip() for k, v in headers if k == "x-forwarded-for" for e in v.split(",")]
    entries = [e for e in entries if e]
    if not entries:
        return peer
    try:
        return str(ipaddress.ip_address(entries[-1]))
    except ValueError:
        return peer


def route_template(scope: Scope, root_path: str = "") -> str | None:
    """The template of the route that handled the request, read after the app ran.

    "/items/{item_id:int}" for a Route; inside a Mount the mount's matched prefix comes first
    ("/api" + "/items/{id}"); a Mount that handled the request itself (static files) gives
    "<prefix>/{path:path}". UNMATCHED when a router ran and matched nothing (404, slash
    redirect); None when no router ran (a middleware answered first, or a bare ASGI app).
    `root_path` is the scope's root_path when the request came in: what mounts added to it
    since is their matched prefix.
    """
    route = scope.get("route")
    if route is None:
        return UNMATCHED if "router" in scope else None
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None  # a Host, or a route class without a path template
    inner: str = scope.get("root_path", "")
    prefix = inner[len(root_path) :] if inner != root_path and inner.startswith(root_path) else ""
    if isinstance(route, Mount):
        return (prefix or path) + "/{path:path}"
    return prefix + path


class _Exchange:
    """Mutable state of one request while it is in flight.

    Bodies: the first `cap` bytes and the total size. A body that arrives in one chunk (most
    do) is kept by reference, not copied; only multi-chunk bodies get a buffer.
    """

    __slots__ = ("scope", "raw_headers", "trace_id", "received_at", "t0", "root_path",
                 "cap", "response_cap", "request_body", "request_size", "response_body", "response_size", "status",
                 "raw_response_headers", "started", "complete", "disconnected", "expect_trailers",
                 "completed_at", "error", "ahead")

    def __init__(
        self, scope: Scope, raw_headers: Sequence[tuple[bytes, bytes]], trace_id: str, received_at: float,
        t0: float, cap: int,
    ) -> None:
        self.scope, self.raw_headers, self.trace_id = scope, raw_headers, trace_id
        self.received_at, self.t0 = received_at, t0
        self.root_path: str = scope.get("root_path", "")  # before mounts add to it (see route_template)
        self.cap = cap
        self.response_cap = cap  # 0 once the response turns out to be a body only measured
        self.request_body: bytes | bytearray = b""
        self.request_size = 0
        self.response_body: bytes | bytearray = b""
        self.response_size = 0
        self.status: int | None = None
        self.raw_response_headers: Sequence[tuple[bytes, bytes]] = ()
        self.started = False
        self.complete = False
        self.disconnected = False
        self.expect_trailers = False
        self.completed_at: float | None = None
        self.error: BaseException | None = None  # the app's, known before a crash page is sent
        self.ahead: Captured | None = None  # what the write-ahead record holds (see `ahead`)


def _kept(kept: bytes | bytearray, chunk: bytes, cap: int) -> bytes | bytearray:
    """`kept` plus as much of `chunk` as fits under `cap` bytes."""
    room = cap - len(kept)
    if room <= 0 or not chunk:
        return kept
    if not kept:
        return chunk[:room] if len(chunk) > room else chunk  # by reference when it all fits
    if not isinstance(kept, bytearray):
        kept = bytearray(kept)
    kept += chunk[:room]
    return kept


def _with_trace_header(headers: Sequence[tuple[bytes, bytes]], value: bytes) -> list[tuple[bytes, bytes]]:
    # Exactly one x-trace-id: an app's own is replaced (rare, hence the cheap check first).
    for name, _ in headers:
        if name.lower() == TRACE_HEADER:
            return [(k, v) for k, v in headers if k.lower() != TRACE_HEADER] + [(TRACE_HEADER, value)]
    return [*headers, (TRACE_HEADER, value)]


async def _plain_500(send: Send) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": _500_BODY, "more_body": False})


def _trace_header_sender(send: Send, trace_value: bytes) -> Send:
    async def send_with_trace(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": _with_trace_header(message.get("headers", ()), trace_value)}
        await send(message)

    return send_with_trace


class RequestLogMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        record: Callable[[Captured], None] | None,
        body_cap: int = 16384,
        exclude_prefixes: tuple[str, ...] = ("/static", "/health"),
        trusted_proxy: bool = False,
        user_id_of: Callable[[Scope], str | None] = _no_user,
        size_only: Callable[[int, str | None], bool] | None = None,
        on_crash: ASGIApp | None = None,
        ahead: Callable[[Captured], None] | None = None,
        clock: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
        new_uuid: Callable[[], str] = new_trace_id,
    ) -> None:
        self.app = app
        self.record = record
        self.body_cap = body_cap
        self.exclude_prefixes = exclude_prefixes
        self._excluded = PathPrefixes(exclude_prefixes)
        self.trusted_proxy = trusted_proxy
        self.user_id_of = user_id_of
        # (status, Content-Type) -> True when the row will only use the response body's size
        # (summarised pages): its bytes are then not kept, neither copied nor held until the
        # batch is built.
        self.size_only = size_only
        self.on_crash = on_crash
        # The write-ahead hook: called with the exchange's Captured just before the final
        # response message is passed on (so the row is on disk before the client has its
        # answer); it may give the Captured its row ids. record() then gets the same object,
        # or, when the outcome changed after that (client gone, an error in a background
        # task), a new one carrying the same ids, handed to ahead() again first.
        self.ahead = ahead
        self.clock = clock
        self.perf = perf
        self.new_uuid = new_uuid
        self.record_errors = 0  # record() / user_id_of() failures, swallowed so requests never fail

    def _trace_id(self, raw: Sequence[tuple[bytes, bytes]]) -> str:
        # Every request: one pass over the raw names, decoding only when a trace header is there.
        for name, _ in raw:
            if name.lower() in _RAW_TRACE_NAMES:
                return trace_id_from_headers(text_headers(raw), self.new_uuid)
        return self.new_uuid()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received_at, t0 = self.clock(), self.perf()
        raw_headers = scope.get("headers", ())
        trace_id = self._trace_id(raw_headers)
        # The host reads it from request.state; keep an existing state dict (the server puts
        # lifespan state there).
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["trace_id"] = trace_id
        trace_value = trace_id.encode("ascii")
        if self.record is None or scope.get("path", "") in self._excluded:
            # Not recorded (logging off, or an excluded path): the trace id and its header only.
            if self.on_crash is None:
                await self.app(scope, receive, _trace_header_sender(send, trace_value))
                return
            started = False

            async def tracking_send(message: Message) -> None:  # _trace_header_sender, noting the start
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                    message = {**message, "headers": _with_trace_header(message.get("headers", ()), trace_value)}
                await send(message)

            try:
                await self.app(scope, receive, tracking_send)
            except Exception:
                if started:
                    raise
                await self._unrecorded_crash(scope, receive, tracking_send, lambda: started)
            return
        ex = _Exchange(scope, raw_headers, trace_id, received_at, t0, self.body_cap)

        async def receive_wrapper() -> Message:
            message = await receive()
            kind = message["type"]
            if kind == "http.request":
                chunk = message.get("body", b"")
                ex.request_size += len(chunk)
                ex.request_body = _kept(ex.request_body, chunk, ex.cap)
            elif kind == "http.disconnect" and not ex.complete:
                ex.disconnected = True
            return message

        async def send_wrapper(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.body":
                chunk = message.get("body", b"")
                ex.response_size += len(chunk)
                ex.response_body = _kept(ex.response_body, chunk, ex.response_cap)
                if not message.get("more_body", False) and not ex.expect_trailers:
                    self._complete(ex)
                    if self.ahead is not None:
                        self._write_ahead(ex)
            elif kind == "http.response.start":
                headers = _with_trace_header(message.get("headers", ()), trace_value)
                message = {**message, "headers": headers}
                ex.started, ex.status = True, message["status"]
                ex.raw_response_headers = headers
                if self.size_only is not None and self.size_only(ex.status, content_type_of(headers)):
                    ex.response_cap = 0
                ex.expect_trailers = bool(message.get("trailers", False))
            elif (kind == "http.response.trailers" and not message.get("more_trailers", False)) or (
                kind == "http.response.pathsend"
            ):
                self._complete(ex)
                if self.ahead is not None:
                    self._write_ahead(ex)
            try:
                await send(message)
            except _DISCONNECTS:
                ex.disconnected = True
                raise

        error: BaseException | None = None
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
            if not ex.started and not ex.disconnected:
                await self._send_500(scope, receive, send_wrapper, ex)
        except Exception as exc:
            # OSError only means "client gone" when it came out of send (the wrapper noted
            # that); a handler's own FileNotFoundError is an application error.
            gone = ex.disconnected or isinstance(exc, ClientDisconnect)
            ex.disconnected = gone
            if not (gone and isinstance(exc, _DISCONNECTS)):
                error = exc  # an app error, even if the client has also left meanwhile
            if gone:
                pass  # nobody to answer and nothing for the server to log
            elif ex.started:
                raise
            else:
                ex.error = error  # the crash page's write-ahead record carries it
                await self._send_500(scope, receive, send_wrapper, ex)
        except BaseException as exc:  # cancelled by the server: still one record, then propagate
            error = exc
            ex.disconnected = ex.disconnected or not ex.complete
            raise
        finally:
            self._record(ex, error)

    async def _unrecorded_crash(
        self, scope: Scope, receive: Receive, send: Send, started: Callable[[], bool]
    ) -> None:
        """A crash not recorded (logging off, excluded path) before the response started: the
        host's error page all the same; the error goes to the process log, once, with its trace id."""
        logger.exception("unhandled error in %s %s (trace %s)", scope.get("method", ""),
                         scope.get("path", ""), scope["state"]["trace_id"])
        assert self.on_crash is not None
        with contextlib.suppress(Exception):  # the host's page failing: the plain 500 below
            await self.on_crash(scope, receive, send)
        if not started():
            with contextlib.suppress(*_DISCONNECTS):
                await _plain_500(send)

    async def _send_500(self, scope: Scope, receive: Receive, send: Send, ex: _Exchange) -> None:
        if self.on_crash is not None:
            try:
                await self.on_crash(scope, receive, send)
            except Exception:
                pass  # the host's error page failed too: the plain 500 below, if nothing started
            if ex.started or ex.disconnected:
                return
        try:
            await _plain_500(send)
        except _DISCONNECTS:
            ex.disconnected = True

    def _complete(self, ex: _Exchange) -> None:
        # Marked before the final send is awaited, so a disconnect that the server reports
        # once the response is out is not mistaken for the client leaving early.
        ex.complete = True
        ex.completed_at = self.perf()

    def _status(self, ex: _Exchange, error: BaseException | None) -> int:
        if ex.disconnected:
            return 499
        if error is not None and not ex.complete:
            return 500  # includes responses that started but were cut short by the error
        return ex.status if ex.status is not None else 500

    def _write_ahead(self, ex: _Exchange) -> None:
        assert self.ahead is not None
        try:
            ex.ahead = self._captured(ex, ex.error)
            self.ahead(ex.ahead)
        except Exception:  # the response goes out anyway; the row still comes at the end
            self.record_errors += 1
            ex.ahead = None

    def _record(self, ex: _Exchange, error: BaseException | None) -> None:
        early = ex.ahead
        if early is not None and error is ex.error and not ex.disconnected:
            captured = early  # nothing changed since the write-ahead record
        else:
            try:
                captured = self._captured(ex, error)
                if early is not None and self.ahead is not None:
                    captured.row_id, captured.crash_id = early.row_id, early.crash_id
                    self.ahead(captured)  # the record follows the outcome: the last one of an id wins
            except Exception:
                self.record_errors += 1
                if early is None:
                    return
                captured = early
        try:
            self.record(captured)
        except Exception:
            self.record_errors += 1

    def _captured(self, ex: _Exchange, error: BaseException | None) -> Captured:
        # Duration is what the client waited for: until the last byte was handed to the server
        # (background tasks that run after that are not counted).
        scope, raw_headers = ex.scope, ex.raw_headers
        end = ex.completed_at if ex.completed_at is not None and not ex.disconnected else self.perf()
        try:
            user_id = self.user_id_of(scope)  # after the app ran, so its auth has set it
        except Exception:
            self.record_errors += 1
            user_id = None
        exception = stack = None
        if error is not None:
            exception = f"{type(error).__name__}: {error}"
            stack = "".join(traceback.format_exception(error))
        return Captured(  # positionally, in the field order of log/core/captured.py
            ex.received_at,
            max(0, round((end - ex.t0) * 1000)),  # duration_ms
            scope.get("method", ""),
            scope.get("path", ""),
            scope.get("query_string", b"").decode("latin-1"),
            raw_headers,  # request_headers: decoded later, in the batched row build
            bytes(ex.request_body),
            ex.request_size,
            self._status(ex, error),
            ex.raw_response_headers,
            bytes(ex.response_body),
            ex.response_size,
            # client_ip: X-Forwarded-For is only read (and so decoded here) behind a trusted proxy.
            client_ip(
                scope.get("client"), text_headers(raw_headers) if self.trusted_proxy else (), self.trusted_proxy
            ),
            user_id,
            ex.trace_id,
            exception,
            stack,
            route_template(scope, ex.root_path),
        )


class TracingMiddleware(RequestLogMiddleware):
    """The tracing layer for any ASGI app, configured by its `Tracing`:

        app = TracingMiddleware(app, tracing=tracing)                # any ASGI app
        Middleware(TracingMiddleware, tracing=tracing)               # Starlette
        app.add_middleware(TracingMiddleware, tracing=tracing)       # FastAPI

    `user_id_of(scope)` names the signed-in user (run after the app, so auth has set it);
    `on_crash` is an ASGI app that renders the host's own error page for an unhandled error.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracing: Tracing,
        user_id_of: Callable[[Scope], str | None] = _no_user,
        on_crash: ASGIApp | None = None,
    ) -> None:
        config = tracing.config
        super().__init__(
            app,
            record=tracing.record if tracing.enabled else None,
            body_cap=config.body_max_bytes,
            exclude_prefixes=config.exclude_prefixes,
            trusted_proxy=config.trusted_proxy,
            user_id_of=user_id_of,
            size_only=functools.partial(summarised_page, html_mode=config.html_bodies),
            on_crash=on_crash,
            ahead=tracing.ahead if tracing.writes_ahead else None,
        )
        # LOG_FLUSH=request: where the CPU is throttled between requests (Cloud Run's
        # request-based billing) a background writer stalls, so due batches are written at
        # the end of each request while the CPU is still ours.
        self._flush = tracing.flush_due if tracing.enabled and config.flush == "request" else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._flush is None:
            await super().__call__(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            if scope["type"] == "http":
                await self._flush()
