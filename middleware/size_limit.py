"""Refuse requests over a size limit, before the app reads them: headers with 431, bodies with 413.

Headers: uvicorn (httptools, the parser it picks when installed) accepts a header block of any
size, 16 MB of headers included; only its h11 parser stops at 16 KiB, with a bare 400. So the
app refuses a request whose header names and values add up to more than `max_header_bytes`
(64 KiB: browsers and proxies send a few KiB; 431 Request Header Fields Too Large) without
calling the app. This middleware sits inside the tracing layer, so the refusal has its log row.

Bodies: refused with 413, while streaming.

A declared Content-Length over the limit is refused without calling the app; a body that
grows past the limit while being read (chunked uploads, lying clients) stops the app's read
and gets the same 413 as long as no response has started.

`page(status, message)`, when given, makes the 413 response (the host's error page, as an ASGI
app); without it the answer is a bare alert paragraph. Either way the connection is closed:
the rest of the body is never read.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ErrorPage = Callable[[int, str], ASGIApp]
MAX_HEADER_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    pass


def human_size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n} bytes"


class SizeLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        overrides: dict[str, int] | None = None,
        page: ErrorPage | None = None,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_header_bytes = max_header_bytes
        self.overrides = overrides or {}
        self.page = page

    def limit_for(self, path: str) -> int:
        return self.overrides.get(path, self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = sum(len(name) + len(value) for name, value in scope["headers"])
        if header_bytes > self.max_header_bytes:
            await self._refuse(scope, receive, send, 431, headers_too_large(header_bytes, self.max_header_bytes))
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, 413, too_large(limit))
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send, 413, too_large(limit))

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        if self.page is None:
            await _send_refusal(send, status, message)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.page(status, message)(scope, receive, closing)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def too_large(limit: int) -> str:
    return f"Request too large: the limit for this page is {human_size(limit)}."


def headers_too_large(size: int, limit: int) -> str:
    return (
        f"Request headers too large: {size} bytes, the limit is {limit // 1024} KiB. "
        "Clearing this site's cookies usually fixes it."
    )


async def _send_refusal(send: Send, status: int, message: str) -> None:
    body = f"<p role=\"alert\">{message}</p>".encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
