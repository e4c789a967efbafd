"""IndexedRouter answers every request exactly as Starlette's Router does, on the app's route
table and on random ones, and finds routes added after it has built its index."""

from __future__ import annotations

import copy
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Host, Match, Mount, Route, Router, WebSocketRoute

from app import create_app
from handlers.routing import (
    IndexedRouter,
    RouteList,
    build_index,
    candidates,
    literal_prefix,
    path_head,
    route_path,
    static_path,
)
from tests.support.app import make_settings

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
SEGMENTS = [
    "items", "12", "0", "abc", "import", "progress", "rejected.csv", "export.csv", "edit", "delete", "logs",
    "traces", "overview", "x", "static", "app.css", "health", "signup", "login", "logout",
    "auth", "confirm", "bench", "ping", "", "-1", "%20",
]  # fmt: skip
HAND_PICKED = [
    "/", "", "/items", "/items/", "/items/12", "/items/abc", "/items/import", "/items/import/",
    "/items/import/progress", "/items/import/rejected.csv", "/items/export.csv", "/items/12/edit", "/items/12/delete",
    "/items/12/edit/", "/static/app.css", "/static/", "/static", "/logs", "/logs/",
    "/logs/traces/x", "/logs/traces/", "/logs/traces/x/", "/logs/overview", "/health",
    "/health/", "/health\n", "/items/12\n", "/nope", "/nope/", "//", "/signup", "/login/",
]  # fmt: skip


class Recorder:
    """An ASGI endpoint that notes which route ran and answers 200."""

    def __init__(self, number: int, calls: list) -> None:
        self.number = number
        self.calls = calls

    async def __call__(self, scope, receive, send) -> None:
        self.calls.append(self.number)
        await PlainTextResponse(str(self.number))(scope, receive, send)


def probes_of(routes: list, calls: list) -> list:
    """Copies of routes whose handler records its number; matching (regex, methods, class) is
    untouched, so a router over the copies picks as it would over the originals."""
    probes = []
    for number, route in enumerate(routes):
        probe = copy.copy(route)
        if isinstance(route, (Route, Mount, Host, WebSocketRoute)):
            probe.app = Recorder(number, calls)
        probes.append(probe)
    return probes


async def dispatch(router: Router, method: str, path: str, root_path: str = "") -> dict:
    """Everything the router decides for one plain-ASGI HTTP request (no Starlette app above it,
    so 404 and 405 come back as responses rather than exceptions)."""
    calls: list = router.calls  # type: ignore[attr-defined]
    calls.clear()
    sent: list = []
    scope = {
        "type": "http", "method": method, "path": root_path + path, "root_path": root_path,
        "query_string": b"", "headers": [], "scheme": "http", "server": ("testserver", 80),
    }  # fmt: skip

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await router(scope, receive, send)
    route = scope.get("route")
    return {
        "sent": sent,
        "ran": list(calls),
        "route": next((i for i, each in enumerate(router.routes) if each is route), None),
        "endpoint": scope.get("endpoint"),
        "path_params": scope.get("path_params"),
        "root_path": scope["root_path"],
        "app_root_path": scope.get("app_root_path"),
        "router_is_self": scope.get("router") is router,
    }


def router_pair(routes: list) -> tuple[Router, IndexedRouter]:
    calls: list = []
    probes = probes_of(routes, calls)
    plain, indexed = Router(probes), IndexedRouter(probes)
    plain.calls = indexed.calls = calls  # type: ignore[attr-defined]
    return plain, indexed


async def assert_same(plain: Router, indexed: IndexedRouter, method: str, path: str, root_path: str = "") -> dict:
    want = await dispatch(plain, method, path, root_path)
    got = await dispatch(indexed, method, path, root_path)
    assert got == want, (method, root_path, path)
    return got


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory) -> list:
    return list(create_app(make_settings(tmp_path_factory.mktemp("routing"))).routes)


# -- the app's route table ---------------------------------------------------------------------

@pytest.mark.anyio
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", HAND_PICKED)
async def test_app_table_hand_picked(app_routes, method, path) -> None:
    plain, indexed = router_pair(app_routes)
    await assert_same(plain, indexed, method, path)


@pytest.mark.anyio
async def test_app_table_answers_are_the_expected_ones(app_routes) -> None:
    """Guards the comparison itself: these outcomes come from Starlette's rules, so a harness
    that compared nothing would fail here."""
    plain, indexed = router_pair(app_routes)
    names = [route.name for route in app_routes]
    got = await assert_same(plain, indexed, "GET", "/items/12")
    assert names[got["route"]] == "show_item" and got["path_params"] == {"item_id": 12}
    got = await assert_same(plain, indexed, "GET", "/items/import")
    assert names[got["route"]] == "import_page" and got["ran"] == [got["route"]]
    got = await assert_same(plain, indexed, "POST", "/items/12")  # wrong method: 405
    assert got["sent"][0]["status"] == 405 and got["ran"] == []
    got = await assert_same(plain, indexed, "GET", "/items/abc")
    assert got["sent"][0]["status"] == 404
    got = await assert_same(plain, indexed, "GET", "/items/")  # slash redirect
    assert got["sent"][0]["status"] == 307
    assert (b"location", b"http://testserver/items") in got["sent"][0]["headers"]
    got = await assert_same(plain, indexed, "GET", "/static/app.css")
    assert names[got["route"]] == "static" and got["root_path"] == "/static"
    got = await assert_same(plain, indexed, "HEAD", "/logs/traces/x")
    assert names[got["route"]] == "show_trace" and got["path_params"] == {"trace_id": "x"}


paths = st.one_of(
    st.sampled_from(HAND_PICKED),
    st.builds(
        lambda parts, tail: "/" + "/".join(parts) + tail,
        st.lists(st.sampled_from(SEGMENTS), max_size=4),
        st.sampled_from(["", "/", "\n"]),
    ),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(lambda text: "/" + text),
)


@pytest.mark.anyio
@settings(max_examples=150, deadline=None)
@given(method=st.sampled_from(METHODS), path=paths, root_path=st.sampled_from(["", "/app"]))
async def test_app_table_any_request(app_routes, method, path, root_path) -> None:
    plain, indexed = router_pair(app_routes)
    await assert_same(plain, indexed, method, path, root_path)


# -- random route tables -----------------------------------------------------------------------

async def endpoint(request: Request) -> JSONResponse:
    return JSONResponse({})


def template(parts: list[str]) -> str:
    # Parameters get their position as name: a path may not repeat a parameter name.
    return "/" + "/".join(part.replace("#", str(i)) for i, part in enumerate(parts))


route_parts = st.lists(
    st.sampled_from(["items", "12", "import", "logs", "x", "", "{p#}", "{p#:int}", "{p#:path}", "x{p#}"]),
    max_size=3,
)


def make_route(kind: str, parts: list[str], methods: list[str]):
    path = template(parts)
    if kind == "route":
        return Route(path, endpoint, methods=methods or None)
    if kind == "mount":
        return Mount(path.replace(":path", ""), routes=[Route("/", endpoint)])
    if kind == "host":
        return Host("example.org", app=Recorder(-1, []))
    return WebSocketRoute(path, endpoint)


tables = st.lists(
    st.builds(
        make_route,
        st.sampled_from(["route", "route", "route", "mount", "host", "websocket"]),
        route_parts,
        st.lists(st.sampled_from(METHODS[:6]), max_size=2),
    ),
    max_size=10,
)


@pytest.mark.anyio
@settings(max_examples=150, deadline=None)
@given(
    routes=tables,
    requests=st.lists(st.tuples(st.sampled_from(METHODS), paths), min_size=1, max_size=6),
)
async def test_random_table_any_request(routes, requests) -> None:
    plain, indexed = router_pair(routes)
    for method, path in requests:
        await assert_same(plain, indexed, method, path)
        assert_candidates_cover_matches(indexed.routes, method, path)


def assert_candidates_cover_matches(routes: list, method: str, path: str) -> None:
    """The index itself, without the fallback to Starlette's loop that would hide a miss:
    every route that matches is a candidate, and candidates keep the table's order."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    found = candidates(build_index(routes), path)
    positions = [next(i for i, each in enumerate(routes) if each is route) for route in found]
    assert positions == sorted(positions)
    matching = [route for route in routes if route.matches(scope)[0] is not Match.NONE]
    assert all(any(route is each for each in found) for route in matching), (path, matching, found)


@pytest.mark.anyio
async def test_a_route_listed_first_wins_over_a_literal_one() -> None:
    routes = [Route("/{name}", endpoint), Route("/health", endpoint), Route("/items/import", endpoint),
              Route("/items/{id}", endpoint, methods=["POST"]), Route("/items/import", endpoint, methods=["PUT"])]  # fmt: skip
    plain, indexed = router_pair(routes)
    assert (await assert_same(plain, indexed, "GET", "/health"))["route"] == 0
    # The parametrised route at 3 matches only partially (405), the literal one at 4 fully.
    assert (await assert_same(plain, indexed, "PUT", "/items/import"))["route"] == 4
    assert (await assert_same(plain, indexed, "GET", "/items/import"))["route"] == 2


# -- routes added later ------------------------------------------------------------------------

MUTATIONS = {
    "append": lambda routes, new: routes.append(new),
    "extend": lambda routes, new: routes.extend([new]),
    "insert": lambda routes, new: routes.insert(0, new),
    "setitem": lambda routes, new: routes.__setitem__(0, new),
    "slice": lambda routes, new: routes.__setitem__(slice(0, 0), [new]),
    "iadd": lambda routes, new: routes.__iadd__([new]),
}


@pytest.mark.anyio
@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
async def test_route_added_after_first_request_is_found(app_routes, mutate) -> None:
    plain, indexed = router_pair(app_routes)
    before = await assert_same(plain, indexed, "GET", "/bench/ping")
    assert before["sent"][0]["status"] == 404
    new = probes_of([Route("/bench/ping", endpoint)], plain.calls)[0]  # type: ignore[attr-defined]
    mutate(plain.routes, new)
    mutate(indexed.routes, new)
    after = await assert_same(plain, indexed, "GET", "/bench/ping")
    assert after["sent"][0]["status"] == 200 and indexed.routes[after["route"]] is new


@pytest.mark.anyio
@pytest.mark.parametrize(
    "mutate",
    [
        lambda routes: routes.pop(),
        lambda routes: routes.remove(routes[-1]),
        lambda routes: routes.__delitem__(-1),
        lambda routes: routes.clear(),
        lambda routes: routes.__imul__(0),
    ],
    ids=["pop", "remove", "delitem", "clear", "imul"],
)
async def test_removed_route_is_no_longer_found(mutate) -> None:
    plain, indexed = router_pair([Route("/health", endpoint)])
    assert (await assert_same(plain, indexed, "GET", "/health"))["sent"][0]["status"] == 200
    mutate(plain.routes)
    mutate(indexed.routes)
    assert (await assert_same(plain, indexed, "GET", "/health"))["sent"][0]["status"] == 404


@pytest.mark.anyio
async def test_reordered_routes_dispatch_in_their_new_order() -> None:
    plain, indexed = router_pair([Route("/health", endpoint), Route("/{name}", endpoint)])
    assert (await assert_same(plain, indexed, "GET", "/health"))["route"] == 0
    for routes in (plain.routes, indexed.routes):
        routes.reverse()
    assert indexed.routes[(await assert_same(plain, indexed, "GET", "/health"))["route"]].path == "/{name}"
    for routes in (plain.routes, indexed.routes):
        routes.sort(key=lambda route: route.path)
    assert indexed.routes[(await assert_same(plain, indexed, "GET", "/health"))["route"]].path == "/health"


def test_assigning_routes_keeps_a_route_list() -> None:
    router = IndexedRouter([Route("/a", endpoint)])
    assert isinstance(router.routes, RouteList)
    router.routes = [Route("/b", endpoint)]
    assert isinstance(router.routes, RouteList)
    assert list(router.routes.route_index().exact) == ["/b"]


# -- the pure parts ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/items/12", "", "/items/12"),
        ("/app/items/12", "/app", "/items/12"),
        ("/app/", "/app", "/"),
        ("/app", "/app", ""),
        ("/apple", "/app", "/apple"),  # not under /app: a prefix only at a "/" boundary
        ("/items", "/app", "/items"),  # not under /app at all
        ("/app/x", "/app/", "/app/x"),
    ],
)
def test_route_path(path, root_path, expected) -> None:
    assert route_path({"type": "http", "path": path, "root_path": root_path}) == expected
    assert route_path({"type": "http", "path": path}) == path  # root_path is optional in ASGI


def test_path_head() -> None:
    assert path_head("/items/12") == "/items/"
    assert path_head("/items/") == "/items/"
    assert path_head("/items") is None
    assert path_head("/") is None
    assert path_head("") is None
    assert path_head("//x") == "//"


def test_literal_prefix_and_static_path() -> None:
    assert literal_prefix(Route("/health", endpoint)) == "/health"
    assert static_path(Route("/health", endpoint)) == "/health"
    assert literal_prefix(Route("/items/{id:int}/edit", endpoint)) == "/items/"
    assert static_path(Route("/items/{id:int}", endpoint)) is None
    assert literal_prefix(Mount("/static", routes=[])) == "/static/"
    assert literal_prefix(Mount("", routes=[])) == "/"
    assert static_path(Mount("/static", routes=[])) is None
    assert literal_prefix(Host("example.org", app=endpoint)) is None
    assert literal_prefix(WebSocketRoute("/ws", endpoint)) is None
    edited = Route("/health", endpoint)
    edited.path = "/other"  # its regex no longer says what its path says
    assert literal_prefix(edited) is None

    class Custom(Route):
        def matches(self, scope):
            return super().matches(scope)

    assert literal_prefix(Custom("/health", endpoint)) is None


def test_candidates() -> None:
    health, item, host, mount = (
        Route("/health", endpoint),
        Route("/items/{id:int}", endpoint),
        Host("example.org", app=endpoint),
        Mount("/static", routes=[]),
    )
    index = build_index([health, item, host, mount])
    assert candidates(index, "/health") == (health, host)
    assert candidates(index, "/items/3") == (item, host)
    assert candidates(index, "/static/app.css") == (host, mount)
    assert candidates(index, "/nope") == (host,)
    assert candidates(index, "/health\n") == (health, item, host, mount)


# -- wired into the app ----------------------------------------------------------------------------

async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@pytest.mark.anyio
async def test_app_uses_indexed_router_end_to_end(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    assert isinstance(app.router, IndexedRouter)
    assert app.url_path_for("show_item", item_id=3) == "/items/3"
    async with app.router.lifespan_context(app) as state:  # the lifespan still runs

        async def with_state(scope, receive, send):
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/bench/ping")).status_code == 404
            moved = await client.get("/health/")
            assert moved.status_code == 307 and moved.headers["location"] == "http://testserver/health"
            assert (await client.get("/logout")).status_code == 405  # POST only
            # What bench/bench_app.py does, here after the app has served requests.
            app.router.routes.append(Route("/bench/ping", ping))
            found = await client.get("/bench/ping")
            assert found.status_code == 200 and found.json() == {"ok": True}
