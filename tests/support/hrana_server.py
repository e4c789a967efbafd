"""A local Hrana-over-HTTP v2 server (POST /v2/pipeline, GET /v2) backed by sqlite3, for tests.

Written from docs/HTTP_V2_SPEC.md + HRANA_3_SPEC.md and deliberately STRICT, like sqld/Turso:
integers must be decimal strings, batons are single-use, nothing may follow `close`, unknown
request/value/condition types are protocol errors (HTTP 400); SQL failures are in-band errors.
Faults can be injected for the next N pipeline requests; every request is counted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import secrets
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class ProtocolViolation(Exception):
    def __init__(self, message: str, code: str = "PROTOCOL_ERROR") -> None:
        super().__init__(message)
        self.code = code


class Stream:
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
        self.last_used = 0.0

    def close(self) -> None:
        if self.conn.in_transaction:
            self.conn.rollback()  # an abandoned stream must not keep the write lock
        self.conn.close()


class HranaServer:
    """The ASGI app plus its state. `faults` holds what the next pipeline requests will suffer."""

    def __init__(
        self,
        db_path: str,
        *,
        token: str | None = None,
        stream_idle_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db_path = db_path
        self.token = token
        self.stream_idle_s = stream_idle_s
        self.clock = clock
        self.faults: deque[tuple[str, float]] = deque()
        self.requests = 0  # every HTTP request
        self.pipeline_requests = 0
        self._streams: dict[str, Stream] = {}
        self._lock = threading.Lock()  # one writer at a time, like a single sqld primary
        with sqlite3.connect(db_path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        self.app = Starlette(
            routes=[Route("/v2", self.health, methods=["GET"]),
                    Route("/v2/pipeline", self.pipeline, methods=["POST"])]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)

    def inject(self, kind: str, times: int = 1, *, delay: float = 0.0) -> None:
        """kind: "500" | "429" | "503" | "delay" | "drop" | "truncate" | "expired"."""
        self.faults.extend([(kind, delay)] * times)

    # -- endpoints ------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"version": 2})

    async def pipeline(self, request: Request) -> Response:
        self.pipeline_requests += 1
        fault = self.faults.popleft() if self.faults else None
        if fault and fault[0] == "delay":
            await anyio.sleep(fault[1])
        if fault and fault[0] in ("500", "429", "503"):
            return Response(f"<html>injected {fault[0]}</html>", status_code=int(fault[0]),
                            media_type="text/html", headers={"retry-after": "0"})
        if fault and fault[0] == "expired":
            return JSONResponse({"message": "stream expired", "code": "STREAM_EXPIRED"}, 400)
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "Unauthorized: invalid or missing bearer token"}, 401)
        raw = await request.body()
        try:
            doc = json.loads(raw)
            answer = await anyio.to_thread.run_sync(self._run_pipeline, doc)
        except (ValueError, ProtocolViolation) as exc:
            code = getattr(exc, "code", "PROTOCOL_ERROR")
            return JSONResponse({"message": str(exc), "code": code}, 400)
        body = json.dumps(answer).encode()
        if fault and fault[0] == "truncate":  # the work was done, but the answer is cut short
            return Response(body[: len(body) // 2], media_type="application/json")
        if fault and fault[0] == "drop":  # work done, connection dies mid-response
            return DroppedResponse(body)
        return Response(body, media_type="application/json")

    # -- stream handling ------------------------------------------------------------------

    def _run_pipeline(self, doc: Any) -> dict[str, Any]:
        if not isinstance(doc, dict) or not isinstance(doc.get("requests"), list):
            raise ProtocolViolation("body must be {baton, requests: [...]}")
        baton = doc.get("baton")
        with self._lock:
            self._expire_idle()
            if baton is None:
                stream = Stream(self.db_path)
            elif not isinstance(baton, str):
                raise ProtocolViolation("baton must be a string or null")
            elif baton not in self._streams:
                raise ProtocolViolation("unknown, reused or expired baton", "STREAM_EXPIRED")
            else:
                stream = self._streams.pop(baton)  # single use: the next one is freshly minted
            results, closed = [], False
            try:
                for req in doc["requests"]:
                    if closed:
                        raise ProtocolViolation("request after close on the same stream")
                    if not isinstance(req, dict):
                        raise ProtocolViolation("request must be an object")
                    if req.get("type") == "close":
                        closed = True
                        results.append({"type": "ok", "response": {"type": "close"}})
                    else:
                        results.append(self._request(stream.conn, req))
            except ProtocolViolation:
                stream.close()  # spec: after an HTTP error the stream is no longer valid
                raise
            if closed:
                stream.close()
                return {"baton": None, "base_url": None, "results": results}
            new_baton = secrets.token_urlsafe(16)
            stream.last_used = self.clock()
            self._streams[new_baton] = stream
            return {"baton": new_baton, "base_url": None, "results": results}

    def _expire_idle(self) -> None:
        deadline = self.clock() - self.stream_idle_s
        for baton in [b for b, s in self._streams.items() if s.last_used < deadline]:
            self._streams.pop(baton).close()

    def close(self) -> None:
        with self._lock:
            for stream in self._streams.values():
                stream.close()
            self._streams.clear()

    def _request(self, conn: sqlite3.Connection, req: dict[str, Any]) -> dict[str, Any]:
        kind = req.get("type")
        if kind == "execute":
            sql, params, want_rows = _parse_stmt(req.get("stmt"))
            try:
                result = _execute(conn, sql, params, want_rows)
            except StatementFailed as exc:
                return {"type": "error", "error": exc.error}
            return {"type": "ok", "response": {"type": "execute", "result": result}}
        if kind == "batch":
            steps = (req.get("batch") or {}).get("steps")
            if not isinstance(steps, list):
                raise ProtocolViolation("batch.steps must be an array")
            parsed = [(s.get("condition"), _parse_stmt(s.get("stmt"))) for s in steps]
            results: list[Any] = []
            errors: list[Any] = []
            for cond, (sql, params, want_rows) in parsed:
                if cond is not None and not _eval_cond(cond, results, errors, conn):
                    results.append(None)
                    errors.append(None)
                    continue
                try:
                    results.append(_execute(conn, sql, params, want_rows))
                    errors.append(None)
                except StatementFailed as exc:
                    results.append(None)
                    errors.append(exc.error)
            return {"type": "ok", "response": {"type": "batch",
                                               "result": {"step_results": results, "step_errors": errors}}}
        raise ProtocolViolation(f"unsupported request type {kind!r}")


class DroppedResponse(Response):
    """Sends headers and part of the body, then fails: the server closes the connection."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(self.body)).encode())]})
        await send({"type": "http.response.body", "body": self.body[:10], "more_body": True})
        raise ConnectionAbortedError("injected drop")


class StatementFailed(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.error = {"message": message, "code": code}


def _parse_stmt(s: Any) -> tuple[str, Any, bool]:
    if not isinstance(s, dict) or not isinstance(s.get("sql"), str):
        raise ProtocolViolation("stmt.sql must be a string (sql_id is not supported here)")
    args = [_parse_value(v) for v in s.get("args") or []]
    named = s.get("named_args") or []
    want_rows = s.get("want_rows", True)
    if not isinstance(want_rows, bool):
        raise ProtocolViolation("want_rows must be a boolean")
    if named and args:
        return s["sql"], StatementFailed("mixing args and named_args is not supported", "ARGS_INVALID"), want_rows
    if named:
        params = {}
        for arg in named:
            name = arg.get("name") if isinstance(arg, dict) else None
            if not isinstance(name, str):
                raise ProtocolViolation("named_args[].name must be a string")
            params[name.lstrip(":@$")] = _parse_value(arg.get("value"))
        return s["sql"], params, want_rows
    return s["sql"], args, want_rows


def _parse_value(v: Any) -> Any:
    kind = v.get("type") if isinstance(v, dict) else None
    if kind == "null":
        return None
    if kind == "integer":
        raw = v.get("value")
        if not isinstance(raw, str):  # the spec: a decimal string, never a JSON number
            raise ProtocolViolation(f"integer value must be a string, got {raw!r}")
        try:
            return int(raw)
        except ValueError:
            raise ProtocolViolation(f"invalid integer {raw!r}") from None
    if kind == "float" and isinstance(v.get("value"), int | float) and not isinstance(v["value"], bool):
        return float(v["value"])
    if kind == "text" and isinstance(v.get("value"), str):
        return v["value"]
    if kind == "blob" and isinstance(v.get("base64"), str):
        raw = v["base64"]
        try:
            return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        except binascii.Error:
            raise ProtocolViolation("invalid base64 blob") from None
    raise ProtocolViolation(f"invalid value {v!r}")


def _value(x: Any) -> dict[str, Any]:
    if x is None:
        return {"type": "null"}
    if isinstance(x, int):
        return {"type": "integer", "value": str(x)}
    if isinstance(x, float):
        return {"type": "float", "value": x}
    if isinstance(x, bytes):
        return {"type": "blob", "base64": base64.b64encode(x).decode().rstrip("=")}  # unpadded
    return {"type": "text", "value": x}


def _execute(conn: sqlite3.Connection, sql: str, params: Any, want_rows: bool) -> dict[str, Any]:
    if isinstance(params, StatementFailed):
        raise params
    try:
        cur = conn.execute(sql, params)
        rows = cur.fetchall()
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorname", None) or "SQLITE_ERROR"
        raise StatementFailed(f"SQLite error: {exc}", code) from None
    cols = [{"name": d[0], "decltype": None} for d in cur.description or []]
    return {
        "cols": cols,
        "rows": [[_value(x) for x in row] for row in rows] if want_rows else [],
        "affected_row_count": max(cur.rowcount, 0),
        "last_insert_rowid": str(cur.lastrowid) if cur.lastrowid is not None else None,
    }


def _eval_cond(c: Any, results: list[Any], errors: list[Any], conn: sqlite3.Connection) -> bool:
    kind = c.get("type") if isinstance(c, dict) else None
    if kind in ("ok", "error"):
        step = c.get("step")
        if not isinstance(step, int) or not 0 <= step < len(results):
            raise ProtocolViolation(f"condition refers to step {step!r} not yet executed")
        return (results[step] if kind == "ok" else errors[step]) is not None
    if kind == "not":
        return not _eval_cond(c.get("cond"), results, errors, conn)
    if kind in ("and", "or") and isinstance(c.get("conds"), list):
        values = [_eval_cond(x, results, errors, conn) for x in c["conds"]]
        return all(values) if kind == "and" else any(values)
    if kind == "is_autocommit":
        return not conn.in_transaction
    raise ProtocolViolation(f"invalid batch condition {c!r}")


# -- running it -----------------------------------------------------------------------------


class Running:
    def __init__(self, server: HranaServer, url: str) -> None:
        self.server = server
        self.url = url


@contextlib.contextmanager
def running(server: HranaServer, port: int = 0) -> Iterator[Running]:
    """Serve on 127.0.0.1 (a free port unless given) in a thread; ready when GET /v2 answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(server, log_config=None, log_level="critical", http="h11",
                            lifespan="off", timeout_graceful_shutdown=1)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_ready(url, thread)
        yield Running(server, url)
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()
        server.close()


def _wait_ready(url: str, thread: threading.Thread, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("hrana test server thread died")
        try:
            if httpx.get(f"{url}/v2", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.01)  # polling interval while waiting for a condition, not a fixed wait
    raise RuntimeError(f"hrana test server at {url} did not become ready")
