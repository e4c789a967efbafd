"""A Starlette Router that tries only the routes that can match a request's path.

Starlette's Router.app calls `route.matches(scope)` on every route in order until one matches
fully: a regex match and a path computation per route, ~0.5 µs each, so a request for the
25th route pays for 24 misses. IndexedRouter gives the same answer from a few candidates:

- A plain Route with a literal path ("/health") matches exactly that path, so these routes are
  found in a dict keyed by path.
- Any other Route or Mount built by Starlette matches only paths that start with the literal
  text before its first parameter ("/items/" for "/items/{item_id:int}", "/static/" for
  Mount("/static")); these are grouped by the path's first segment ("/items/").
- Every other route (Host, WebSocketRoute, custom classes, a Route whose regex was replaced)
  stays a candidate for every path.

Candidates keep their original order and go through Starlette's own loop (first full match
wins, else the first partial one, e.g. a 405), so results are Starlette's. When nothing
matches, Starlette's Router.app runs unchanged (slash redirect, 404); lifespan and websocket
scopes go to it directly.

The index is built on first use and dropped whenever the route list changes, so routes appended
later (`app.router.routes.append(...)`) are found.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from starlette.routing import PARAM_REGEX, BaseRoute, Match, Mount, Route, Router, compile_path
from starlette.types import Receive, Scope, Send


def route_path(scope: Scope) -> str:
    """The path the app's routes match: scope["path"] less the app's mount point.

    ASGI's `path` includes `root_path` (the path the app is mounted at); the part after it is
    what routes see. A path that does not continue root_path at a "/" boundary is not under
    it and is matched whole, as Starlette's Router does.
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


def path_head(path: str) -> str | None:
    """The path up to and including its second "/" ("/items/12" -> "/items/"), else None."""
    end = path.find("/", 1)
    return path[: end + 1] if end != -1 else None


def literal_prefix(route: BaseRoute) -> str | None:
    """The text every path this route matches (over HTTP) starts with, or None if unknown.

    Known only for Route and Mount whose matches() is Starlette's and whose regex is still the
    one Starlette compiles from their path: then a path can match only if that regex does, and
    the regex starts with the escaped literal text before the first parameter.
    """
    kind = type(route).matches
    path = getattr(route, "path", None)
    if not isinstance(path, str) or kind not in (Route.matches, Mount.matches):
        return None
    # Mount.__init__ compiles this from its (slash-stripped) path.
    source = path if kind is Route.matches else path + "/{path:path}"
    try:
        expected = compile_path(source)[0]
    except (AssertionError, ValueError):  # a path edited after the route was built
        return None
    if getattr(route, "path_regex", None) != expected:  # Pattern equality: same source and flags
        return None
    first_param = PARAM_REGEX.search(source)
    return source if first_param is None else source[: first_param.start()]


def static_path(route: BaseRoute) -> str | None:
    """The one path a parameterless Route matches, or None for any other route."""
    prefix = literal_prefix(route)
    if prefix is None or type(route).matches is not Route.matches or getattr(route, "param_convertors", True):
        return None
    return prefix


class RouteIndex(NamedTuple):
    everything: tuple[BaseRoute, ...]
    exact: dict[str, tuple[BaseRoute, ...]]  # literal path -> candidates
    by_head: dict[str, tuple[BaseRoute, ...]]  # path_head -> candidates for other paths
    anywhere: tuple[BaseRoute, ...]  # candidates for paths without a known head


def build_index(routes: Sequence[BaseRoute]) -> RouteIndex:
    prefixes = [literal_prefix(route) for route in routes]
    statics: dict[str, list[int]] = {}
    heads: dict[str, list[int]] = {}
    anywhere: list[int] = []
    for i, route in enumerate(routes):
        path = static_path(route)
        head = None if prefixes[i] is None else path_head(prefixes[i])
        if path is not None:
            statics.setdefault(path, []).append(i)
        elif head is not None:
            heads.setdefault(head, []).append(i)
        else:
            anywhere.append(i)

    def in_order(indices: Iterable[int]) -> tuple[BaseRoute, ...]:
        return tuple(routes[i] for i in sorted(indices))

    def may_match(i: int, path: str) -> bool:
        # A route with a known prefix matches over HTTP only if its regex does (see literal_prefix).
        return prefixes[i] is None or routes[i].path_regex.match(path) is not None  # type: ignore[attr-defined]

    exact = {}
    for path, indices in statics.items():
        head = path_head(path)
        others = (heads.get(head, []) if head is not None else []) + anywhere
        exact[path] = in_order(indices + [i for i in others if may_match(i, path)])
    by_head = {head: in_order(indices + anywhere) for head, indices in heads.items()}
    return RouteIndex(tuple(routes), exact, by_head, in_order(anywhere))


def candidates(index: RouteIndex, path: str) -> tuple[BaseRoute, ...]:
    """The routes that can match path (a route path), in their original order."""
    if path.endswith("\n"):
        # Starlette's regexes end in "$", which also matches before a final newline, so
        # "/health\n" matches "/health": not worth indexing, try everything.
        return index.everything
    found = index.exact.get(path)
    if found is not None:
        return found
    head = path_head(path)
    return index.anywhere if head is None else index.by_head.get(head, index.anywhere)


class RouteList(list):  # type: ignore[type-arg]
    """A list of routes that caches its RouteIndex and drops it on every change."""

    _index: RouteIndex | None = None

    def route_index(self) -> RouteIndex:
        if self._index is None:
            self._index = build_index(self)
        return self._index


def _dropping_index(name: str) -> Any:
    method = getattr(list, name)

    def mutate(self: RouteList, *args: Any, **kwargs: Any) -> Any:
        self._index = None
        return method(self, *args, **kwargs)

    mutate.__name__ = name
    return mutate


# Every method by which a list changes in place.
for _name in (
    "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse",
    "__setitem__", "__delitem__", "__iadd__", "__imul__",
):  # fmt: skip
    setattr(RouteList, _name, _dropping_index(_name))
del _name


class IndexedRouter(Router):
    # Router.__init__ and users assign `router.routes = [...]`: keep it a RouteList.
    @property  # type: ignore[override]
    def routes(self) -> RouteList:
        return self._routes

    @routes.setter
    def routes(self, routes: Iterable[BaseRoute]) -> None:
        self._routes = RouteList(routes)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return

        if "router" not in scope:
            scope["router"] = self

        # Starlette's loop (Router.app), over the candidates only.
        routes = self._routes  # not the property: this runs on every request
        partial = None
        for route in candidates(routes._index or routes.route_index(), route_path(scope)):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            elif match is Match.PARTIAL and partial is None:
                partial = route
                partial_scope = child_scope

        if partial is not None:
            scope["route"] = partial
            scope.update(partial_scope)
            await partial.handle(scope, receive, send)
            return

        # No route matches: Starlette's own code redirects a path that matches with or
        # without its trailing slash, else answers 404.
        await super().app(scope, receive, send)
