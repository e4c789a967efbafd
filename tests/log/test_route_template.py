"""The capture layer records the matched route's template, read from the scope after the app ran."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Host, Mount, Route, Router

from log.asgi import RequestLogMiddleware, route_template
from log.core.captured import Captured
from log.core.rows import UNMATCHED

pytestmark = pytest.mark.anyio


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def missing(request: Request) -> Response:
    return PlainTextResponse("no such item", status_code=404)


async def files(scope, receive, send) -> None:  # a mounted ASGI app with no router of its own
    await PlainTextResponse("file")(scope, receive, send)


class Refuse:
    """A middleware that answers some requests itself, before any router runs."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].endswith("/refused"):
            await PlainTextResponse("no", status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def make_app(records: list[Captured]) -> Starlette:
    return Starlette(
        routes=[
            Route("/items/{item_id:int}", ok, methods=["GET"]),
            Route("/items/{item_id:int}/gone", missing),
            Mount("/api", routes=[Route("/things/{name}", ok), Mount("/v2", routes=[Route("/x/{n:int}", ok)])]),
            Mount("/files", app=files),
            Host("admin.example.com", app=Router([Route("/panel", ok)])),
        ],
        middleware=[Middleware(RequestLogMiddleware, record=records.append), Middleware(Refuse)],
    )


async def routes_of(app: Starlette, records: list[Captured], requests: list[tuple[str, str]], **transport) -> list:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app, **transport), base_url="http://testserver", follow_redirects=False
    ) as client:
        for method, url in requests:
            await client.request(method, url)
    return [(c.method, c.path, c.response_status, c.route) for c in records]


async def test_templates_mounts_unmatched_and_requests_no_router_saw() -> None:
    records: list[Captured] = []
    got = await routes_of(make_app(records), records, [
        ("GET", "/items/1"), ("GET", "/items/2"), ("POST", "/items/3"), ("GET", "/items/4/gone"),
        ("GET", "/api/things/lamp"), ("GET", "/api/v2/x/7"), ("GET", "/files/a/b.txt"),
        ("GET", "/no/such/page"), ("GET", "/items/x"), ("GET", "/items/1/refused"),
    ])
    assert got == [
        ("GET", "/items/1", 200, "/items/{item_id:int}"),
        ("GET", "/items/2", 200, "/items/{item_id:int}"),
        ("POST", "/items/3", 405, "/items/{item_id:int}"),  # a partial match is still that route
        ("GET", "/items/4/gone", 404, "/items/{item_id:int}/gone"),  # the handler's own 404
        ("GET", "/api/things/lamp", 200, "/api/things/{name}"),
        ("GET", "/api/v2/x/7", 200, "/api/v2/x/{n:int}"),
        ("GET", "/files/a/b.txt", 200, "/files/{path:path}"),
        ("GET", "/no/such/page", 404, UNMATCHED),
        ("GET", "/items/x", 404, UNMATCHED),  # the int convertor does not match: no route
        ("GET", "/items/1/refused", 403, None),  # answered before the router ran
    ]


async def test_a_root_path_is_not_part_of_the_template() -> None:
    records: list[Captured] = []
    got = await routes_of(make_app(records), records, [("GET", "/prefix/items/5"), ("GET", "/prefix/api/things/a")],
                          root_path="/prefix")
    assert [(path, route) for _, path, _, route in got] == [
        ("/prefix/items/5", "/items/{item_id:int}"),
        ("/prefix/api/things/a", "/api/things/{name}"),
    ]


async def test_host_routes_give_the_inner_route_and_a_bare_app_gives_none() -> None:
    records: list[Captured] = []
    app = make_app(records)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://admin.example.com") as client:
        await client.get("/panel")
    assert records[-1].route == "/panel"

    bare: list[Captured] = []
    plain = RequestLogMiddleware(PlainTextResponse("hi"), record=bare.append)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(plain), base_url="http://testserver") as client:
        await client.get("/anything/at/all")
    assert bare[0].route is None  # no router: nothing known, the explorer keys it by path


def test_route_template_reads_a_route_without_a_path_as_unknown() -> None:
    class Odd:
        path = None

    assert route_template({"router": object(), "route": Odd()}) is None
    assert route_template({"router": object()}) == UNMATCHED
    assert route_template({}) is None
