"""The log database shell: one interface (LogDatabase), two backends.

HttpLogDatabase speaks Hrana over HTTP (/v2/pipeline) to Turso/sqld: health checks and reads through
an httpx.AsyncClient owned by the app's lifespan, write batches (the steady stream of log rows)
through a synchronous httpx.Client of its own in a worker thread, with the batch's encoding and
the answer's parsing. FileLogDatabase does the same with stdlib sqlite3 in a worker thread,
so the embedded default (`file:DATA_DIR/logs.db`) needs no server. Encodings live in log/db/hrana.py.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
import httpx
import msgspec

from log.db import hrana
from log.db.errors import EncodeError, HttpStatusError, LogDatabaseError, StatementError, TransportError
from log.db.hrana import StmtOutcome
from log.core.rows import TABLES, columns

logger = logging.getLogger("log.turso")

Statement = tuple[str, Sequence[Any]]  # (sql with ? placeholders, positional args)
S = TypeVar("S", bound=msgspec.Struct)
T = TypeVar("T")


class LogDatabase(Protocol):
    async def health(self) -> None: ...

    async def transaction(self, statements: Sequence[Statement]) -> list[StmtOutcome]:
        """Run all statements in one transaction: all applied, or none and LogDatabaseError raised."""

    async def select(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    async def fetch_rows(self, row_type: type[S], where_sql: str, args: Sequence[Any] = ()) -> list[S]: ...

    async def aclose(self) -> None:
        """Release what this object owns (never the app's httpx client)."""


async def fetch_rows(db: LogDatabase, row_type: type[S], where_sql: str, args: Sequence[Any] = ()) -> list[S]:
    """Typed read of a log table: `where_sql` is a fixed fragment with ? placeholders, never data."""
    table = next(name for name, t in TABLES.items() if t is row_type)
    cols = columns(row_type)  # type: ignore[arg-type]
    rows = await db.select(f"SELECT {','.join(cols)} FROM {table} WHERE {where_sql}", args)
    return [msgspec.convert(r, row_type) for r in rows]


def http_base_url(url: str) -> str:
    """libsql://host -> https://host; http(s):// kept as given (no trailing slash)."""
    if url.startswith("libsql://"):
        url = "https://" + url[len("libsql://") :]
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"unsupported log database URL scheme: {url.split(':', 1)[0]!r}")
    return url.rstrip("/")


class RetryPolicy(msgspec.Struct, frozen=True):
    attempts: int = 4  # total tries, first included
    base_delay: float = 0.25
    max_delay: float = 5.0


def backoff_delay(policy: RetryPolicy, attempt: int, rand: float, retry_after: float | None = None) -> float:
    """Full-jitter exponential backoff; a server's Retry-After wins when it is given (capped)."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), policy.max_delay)
    return rand * min(policy.max_delay, policy.base_delay * 2**attempt)


DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=15.0, write=15.0, pool=5.0)


class _TypedReads:
    async def fetch_rows(self, row_type: type[S], where_sql: str, args: Sequence[Any] = ()) -> list[S]:
        return await fetch_rows(self, row_type, where_sql, args)  # type: ignore[arg-type]


class HttpLogDatabase(_TypedReads):
    in_process = False  # every argument is a Hrana value in a JSON request

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        token: str | None = None,
        *,
        retry: RetryPolicy = RetryPolicy(),
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = http_base_url(url)
        self._client = client
        self._headers = {"content-type": "application/json"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._retry, self._timeout, self._sleep, self._rand = retry, timeout, sleep, rand
        # Write batches: one synchronous POST in a worker thread costs less CPU than an async one
        # through httpx/httpcore/anyio (0.6-0.75 vs 0.75-1.9 ms a request measured here; 8.8 ->
        # 6.6 us a row of a 500-row batch: BENCHMARKS.md). httpx's defaults, as the app's client.
        self._sync: httpx.Client | None = None
        self._sync_close: weakref.finalize | None = None  # closes it with this object, if aclose() never ran
        self._sync_lock = threading.Lock()

    def __repr__(self) -> str:  # the token must never show up in logs or tracebacks
        token = "***" if "authorization" in self._headers else None
        return f"HttpLogDatabase(url={self.base_url!r}, token={token!r})"

    async def health(self) -> None:
        async def once() -> None:
            try:
                resp = await self._client.get(f"{self.base_url}/v2", timeout=self._timeout)
            except httpx.HTTPError as exc:
                raise TransportError(f"{type(exc).__name__}: {exc}") from None
            if resp.status_code >= 300:
                raise hrana.error_from_http(resp.status_code, resp.content)

        await self._with_retry(once)

    async def transaction(self, statements: Sequence[Statement]) -> list[StmtOutcome]:
        """Encode, POST and read the answer in a worker thread: the event loop only waits (a
        full batch is a large JSON text to escape). Encoded once per batch, not once per retry.
        A cancelled caller (shutdown's deadline) does not wait for the thread: the POST may still
        land, and a retried batch is then counted as already present (ids are idempotent)."""
        encoded: list[bytes] = []

        def send() -> list[StmtOutcome]:
            if not encoded:
                batch = hrana.transaction_batch([hrana.stmt(sql, args) for sql, args in statements])
                encoded.append(hrana.pipeline_body([batch]))
            results = self._post_sync(encoded[0], 1)
            return hrana.transaction_outcomes(hrana.response_of(results[0], "batch"), len(statements))

        async def once() -> list[StmtOutcome]:
            return await anyio.to_thread.run_sync(send, abandon_on_cancel=True)

        return await self._with_retry(once)

    async def select(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        request = hrana.execute_request(hrana.stmt(sql, args))

        async def once() -> list[dict[str, Any]]:
            results = await self._pipeline([request])
            return hrana.stmt_outcome(hrana.response_of(results[0], "execute")["result"]).rows

        return await self._with_retry(once)

    async def aclose(self) -> None:
        """Close the write batches' client (the async one belongs to the app's lifespan)."""
        with self._sync_lock:
            close, self._sync, self._sync_close = self._sync_close, None, None
        if close is not None:
            close()

    async def _pipeline(self, requests: list[dict[str, Any]]) -> list[Any]:
        """One fresh stream per call (baton null, `close` last): no baton is ever reused, so an
        expired or lost stream can only cost one retry. A returned base_url would only apply to
        further requests on this stream, and there are none."""
        return await self._post(hrana.pipeline_body(requests), len(requests))

    async def _post(self, body: bytes, n_requests: int) -> list[Any]:
        try:
            resp = await self._client.post(
                f"{self.base_url}/v2/pipeline", content=body, headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:  # connect/read errors, timeouts, dropped connections
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return self._results(resp, n_requests)

    def _post_sync(self, body: bytes, n_requests: int) -> list[Any]:
        """_post from a worker thread, through this object's synchronous client."""
        with self._sync_lock:
            if self._sync is None:
                self._sync = httpx.Client()
                self._sync_close = weakref.finalize(self, self._sync.close)
            client = self._sync
        try:
            resp = client.post(f"{self.base_url}/v2/pipeline", content=body, headers=self._headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        except RuntimeError as exc:  # closed by aclose() while an abandoned POST was still due
            raise TransportError(f"log database client closed: {exc}") from None
        return self._results(resp, n_requests)

    @staticmethod
    def _results(resp: httpx.Response, n_requests: int) -> list[Any]:
        if resp.status_code >= 300:
            raise hrana.error_from_http(resp.status_code, resp.content, resp.headers.get("retry-after"))
        results, _base_url = hrana.parse_pipeline(resp.content)
        if len(results) != n_requests + 1:
            raise TransportError("pipeline response has the wrong number of results")
        return results

    async def _with_retry(self, once: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await once()
            except LogDatabaseError as exc:
                attempt += 1
                if not exc.retryable or attempt >= self._retry.attempts:
                    raise
                delay = backoff_delay(self._retry, attempt - 1, self._rand(), exc.retry_after)
                logger.info("log database: %s; retry %d in %.2fs", exc.message, attempt, delay)
                await self._sleep(delay)


class FileLogDatabase(_TypedReads):
    """The same interface on a local SQLite file; one connection, calls serialised by a lock,
    run in a worker thread so the event loop never waits on disk."""

    # Statements run in this process: arguments are bound by sqlite3's C code, so writers bind
    # values one by one rather than packing them into JSON (log/sinks/turso_sink.py).
    in_process = True

    def __init__(self, path: str, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FileLogDatabase(path={self.path!r})"

    async def health(self) -> None:
        await self.select("SELECT 1")

    async def transaction(self, statements: Sequence[Statement]) -> list[StmtOutcome]:
        return await anyio.to_thread.run_sync(self._transaction, statements)

    async def select(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await anyio.to_thread.run_sync(self._select, sql, args)

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect_file(self.path, busy_timeout_s=self._busy_timeout_s)
        return self._conn

    def _transaction(self, statements: Sequence[Statement]) -> list[StmtOutcome]:
        with self._lock, _statement_errors():
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = [_run(conn, sql, args) for sql, args in statements]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return outcomes

    def _select(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        with self._lock, _statement_errors():
            return _run(self._connection(), sql, args).rows


def connect_file(path: str, *, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to the log database file, in WAL mode (readers never block the writer).

    Switching a new file to WAL needs it to itself, and when two processes try at once (worker
    processes starting together, WEB_CONCURRENCY) SQLite answers "database is locked" at once
    instead of calling the busy handler: try again for up to busy_timeout_s. A file already in
    WAL mode (it stays so) does not need that lock."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # DATA_DIR may be fresh
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (5, 6) or time.monotonic() > deadline:  # BUSY, LOCKED
                conn.close()
                raise
            time.sleep(0.01)
    # WAL's usual setting: a commit is not fsync'ed (checkpoints are). A crashed process loses
    # nothing; an OS crash or power cut may take the last commits, which the CSV files and the
    # write-ahead record hold (docs/tracing.md, "The log database").
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _run(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> StmtOutcome:
    cur = conn.execute(sql, tuple(args))
    names = [d[0] for d in cur.description or []]
    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return StmtOutcome(rows, max(cur.rowcount, 0))


class _statement_errors:
    """sqlite3 errors -> the same typed errors the HTTP backend raises."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, sqlite3.Error):
            code = getattr(exc, "sqlite_errorname", None) or "SQLITE_ERROR"
            raise StatementError(f"SQLite error: {exc}", code=code) from None
        if isinstance(exc, OverflowError):  # an int outside SQLite's 64 bits, as HTTP would refuse
            raise EncodeError(f"cannot bind value: {exc}") from None
        return False


def open_log_database(url: str, token: str | None, client: httpx.AsyncClient) -> LogDatabase:
    """`file:PATH` -> FileLogDatabase; libsql://, https://, http:// -> HttpLogDatabase."""
    if url.startswith("file://"):
        return FileLogDatabase(url[len("file://") :])
    if url.startswith("file:"):
        return FileLogDatabase(url[len("file:") :])
    return HttpLogDatabase(client, url, token)


__all__ = [
    "FileLogDatabase",
    "LogDatabaseError",
    "HttpLogDatabase",
    "HttpStatusError",
    "LogDatabase",
    "RetryPolicy",
    "Statement",
    "fetch_rows",
    "http_base_url",
    "open_log_database",
]
