"""The capture layer's write-ahead hook (log/asgi.py `ahead`): it runs before the final response
message reaches the server, with the exchange as it will be recorded; record() then gets the
same Captured (its ids kept), or, when the outcome changed after the answer, a new Captured with
the same ids that the hook sees too (the record's last entry of an id wins)."""

from __future__ import annotations

import itertools

import pytest
from starlette.background import BackgroundTask
from starlette.responses import PlainTextResponse

from log.asgi import RequestLogMiddleware
from log.core.captured import Captured

pytestmark = pytest.mark.anyio


def scope() -> dict:
    return {"type": "http", "method": "GET", "path": "/x", "query_string": b"", "headers": [(b"host", b"t")],
            "client": ("127.0.0.1", 1), "root_path": ""}


async def receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.ids = itertools.count(100)

    def ahead(self, captured: Captured) -> None:
        if not captured.row_id:
            captured.row_id = next(self.ids)
        if captured.exception is not None and not captured.crash_id:
            captured.crash_id = next(self.ids)
        self.events.append(("ahead", captured))

    def record(self, captured: Captured) -> None:
        self.events.append(("record", captured))


async def test_the_hook_runs_before_the_last_message_reaches_the_server_and_record_gets_the_same_ids() -> None:
    log, sent = Log(), []

    async def send(message: dict) -> None:
        sent.append(message["type"])
        if message["type"] == "http.response.body":
            # The server gets the last byte only once the record holds the exchange.
            assert [kind for kind, _ in log.events] == ["ahead"]
            assert log.events[0][1].response_status == 200  # type: ignore[union-attr]

    app = RequestLogMiddleware(PlainTextResponse("hi"), record=log.record, ahead=log.ahead)
    await app(scope(), receive, send)
    assert sent == ["http.response.start", "http.response.body"]
    (_, early), (_, recorded) = log.events
    assert recorded is early and recorded.row_id == 100 and recorded.response_body == b"hi"


async def test_an_outcome_that_changes_after_the_answer_is_recorded_again_with_the_same_id() -> None:
    log = Log()

    def fails() -> None:
        raise RuntimeError("background task failed")

    async def send(message: dict) -> None:
        pass

    app = RequestLogMiddleware(
        PlainTextResponse("hi", background=BackgroundTask(fails)), record=log.record, ahead=log.ahead
    )
    with pytest.raises(RuntimeError):
        await app(scope(), receive, send)
    kinds = [kind for kind, _ in log.events]
    assert kinds == ["ahead", "ahead", "record"]
    first, second, recorded = (c for _, c in log.events)
    assert recorded is second and second.row_id == first.row_id == 100
    assert first.exception is None and second.exception == "RuntimeError: background task failed"
    assert second.crash_id == 101 and second.response_status == 200


async def test_a_client_gone_during_the_last_send_is_recorded_as_499_with_the_same_id() -> None:
    log = Log()

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body":
            raise OSError("connection reset")

    app = RequestLogMiddleware(PlainTextResponse("hi"), record=log.record, ahead=log.ahead)
    await app(scope(), receive, send)
    statuses = [(kind, c.row_id, c.response_status) for kind, c in log.events]  # type: ignore[union-attr]
    assert statuses == [("ahead", 100, 200), ("ahead", 100, 499), ("record", 100, 499)]


async def test_a_crash_page_carries_the_error_in_the_record_written_before_it_is_sent() -> None:
    log = Log()

    async def crashing(scope, receive, send) -> None:
        raise ValueError("boom")

    async def send(message: dict) -> None:
        pass

    app = RequestLogMiddleware(crashing, record=log.record, ahead=log.ahead)
    await app(scope(), receive, send)
    (_, early), (kind, recorded) = log.events
    assert kind == "record" and recorded is early
    assert (early.response_status, early.exception, early.crash_id) == (500, "ValueError: boom", 101)
