"""CSRF protection for every unsafe method.

The token (from the signed session cookie, see middleware/session.py) must come back either
in the `X-CSRF-Token` header (htmx sends it via `hx-headers` on <body>) or, for plain HTML
forms that work without JavaScript, as the `csrf_token` form field. Reading the form here means
buffering the body; the size-limit middleware outside has already bounded it, and the buffered
messages are replayed to the app unchanged.

A refusal is a 403 made by `page(status, message)` when given (the host's error page, as an
ASGI app), else a bare alert paragraph.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")
REFUSED = "This form has expired or did not come from this site. Reload the page and try again."


class CsrfMiddleware:
    def __init__(self, app: ASGIApp, *, page: Callable[[int, str], ASGIApp] | None = None) -> None:
        self.app = app
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        expected = scope.get("state", {}).get("csrf_token", "")
        headers = dict(scope["headers"])
        supplied = headers.get(b"x-csrf-token", b"").decode("latin-1")
        if not supplied and headers.get(b"content-type", b"").startswith(FORM_TYPES):
            messages = await _read_all(receive)
            supplied = await _form_token(scope, messages)
            receive = _replay(messages, receive)
        if not expected or not hmac.compare_digest(supplied.encode(), expected.encode()):
            if self.page is not None:
                await self.page(403, REFUSED)(scope, receive, send)
            else:
                await _send_403(send)
            return
        await self.app(scope, receive, send)


async def _read_all(receive: Receive) -> list[Message]:
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


async def _form_token(scope: Scope, messages: list[Message]) -> str:
    request = Request(scope, _replay(messages, None))
    try:
        form = await request.form()
    except Exception:  # a malformed body is simply "no token"; the app never sees it
        return ""
    try:
        value = form.get("csrf_token")
        return value if isinstance(value, str) else ""
    finally:
        await form.close()


def _replay(messages: list[Message], then: Receive | None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


async def _send_403(send: Send) -> None:
    body = f"<p role=\"alert\">{REFUSED}</p>".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"text/html; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})
