"""The log database's errors: the one exception type its callers catch, and its kinds.

Both backends raise these (Hrana over HTTP, and `file:` SQLite mapping its own errors), so
code above the database boundary never sees a transport's own exception types.
"""

from __future__ import annotations


class LogDatabaseError(Exception):
    """Anything that stopped the log database from giving a usable answer."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retry_after = retry_after  # seconds, from a 429/503 Retry-After header


class TransportError(LogDatabaseError):
    """Network failure, timeout, or a body we could not parse: the request may or may not have run."""

    retryable = True


class HttpStatusError(LogDatabaseError):
    """The server answered with a 4xx/5xx: the stream is gone (spec: 'Errors', Hrana over HTTP)."""

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        if retryable_code(self.code):
            return True
        return self.status == 429 or (self.status or 0) >= 500


class StatementError(LogDatabaseError):
    """An in-band error: results[i].type == "error" or a batch step error (bad SQL, constraint...)."""

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return retryable_code(self.code)


class EncodeError(LogDatabaseError, ValueError):
    """A value with no Hrana encoding (NaN, inf, out-of-range int, unknown type): the batch can
    never be sent as is, so retrying it is pointless."""


# Codes worth a fresh attempt: the stream expired, or the database was momentarily locked
# (servers may send extended codes such as SQLITE_BUSY_SNAPSHOT, hence the prefixes).
RETRYABLE_CODE_PREFIXES = ("STREAM_EXPIRED", "SQLITE_BUSY", "SQLITE_LOCKED")


def retryable_code(code: str | None) -> bool:
    return code is not None and code.startswith(RETRYABLE_CODE_PREFIXES)
