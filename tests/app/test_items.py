"""Item handlers in-process: pages vs htmx fragments, create/edit/delete, ownership, no-JS forms."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape
from starlette.routing import Match, Route

from app import create_app
from handlers.items import PER_PAGE
from log.sinks.csv_sink import read_rows
from store.base import StoreUnavailable
from store.validate import validate_item
from tests.support.app import AppClient, make_settings

pytestmark = pytest.mark.anyio



@pytest.fixture
async def alice(make_client) -> AppClient:
    client = await make_client()
    response = await client.signup("alice@example.com")
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
async def bob(make_client, alice) -> AppClient:
    client = await make_client()
    response = await client.signup("bob@example.com")
    assert response.status_code == 303, response.text
    return client


async def create(client: AppClient, name: str = "Lamp", **fields: str) -> int:
    data = {"name": name, "description": "", "quantity": "1", **fields}
    response = await client.post("/items", data=data, headers=client.htmx())
    assert response.status_code == 200, response.text
    ids = re.findall(r'id="item-(\d+)"', response.text)
    return max(int(i) for i in ids)


def is_full_page(html: str) -> bool:
    return html.lstrip().lower().startswith("<!doctype html>")


def toast(response) -> str:
    return json.loads(response.headers["hx-trigger"])["toast"]


# landing / list ----------------------------------------------------------------------------


async def test_root_is_landing_page_when_signed_out(make_client):
    client = await make_client()
    response = await client.get("/")
    assert response.status_code == 200
    assert is_full_page(response.text)
    assert 'href="/signup"' in response.text and 'id="items-panel"' not in response.text


async def test_root_lists_items_when_signed_in(alice: AppClient):
    await create(alice, "Teapot")
    response = await alice.get("/")
    assert response.status_code == 200 and is_full_page(response.text)
    assert 'id="items-panel"' in response.text and "Teapot" in response.text
    assert 'data-testid="current-user">alice@example.com' in response.text


async def test_empty_state(alice: AppClient):
    response = await alice.get("/items")
    assert 'data-testid="empty-state"' in response.text and "0 items" in response.text


async def test_list_htmx_returns_only_the_list(alice: AppClient):
    await create(alice, "Teapot")
    response = await alice.get("/items", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="item-list"')
    assert not is_full_page(response.text) and "Teapot" in response.text
    assert response.headers["vary"] == "HX-Request"
    full = await alice.get("/items")
    assert full.headers["vary"] == "HX-Request" and is_full_page(full.text)


async def test_boosted_request_gets_the_full_page(alice: AppClient):
    response = await alice.get("/items", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert is_full_page(response.text)


# create -----------------------------------------------------------------------------------


async def test_create_via_htmx_returns_panel_and_toast(alice: AppClient):
    response = await alice.post(
        "/items",
        data={"name": "Café ☕", "description": "hot", "quantity": "3"},
        headers=alice.htmx(),
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="items-panel"')
    assert "Café ☕" in response.text and "×&nbsp;3" in response.text
    assert "ring-primary" in response.text  # the new item is highlighted
    assert toast(response) == "Created “Café ☕”."
    assert response.headers["vary"] == "HX-Request"
    # the create form is blank again
    assert 'name="name" type="text" value=""' in response.text


async def test_create_with_errors_is_422_with_message_next_to_field(alice: AppClient):
    response = await alice.post(
        "/items",
        data={"name": "", "description": "keep me", "quantity": "7"},
        headers=alice.htmx(),
    )
    assert response.status_code == 422
    assert 'data-error-for="name">Name is required.' in response.text
    assert 'data-error-for="quantity"' not in response.text
    assert ">keep me</textarea>" in response.text
    assert 'name="quantity" type="text" value="7"' in response.text and 'inputmode="numeric"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert "hx-trigger" not in response.headers
    assert not re.search(r'id="item-\d+"', (await alice.get("/items")).text)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"quantity": "abc"}, "quantity"),
        ({"quantity": "-1"}, "quantity"),
        ({"quantity": "1.5"}, "quantity"),
        ({"name": "n" * 10_000}, "name"),
        ({"description": "d" * 2001}, "description"),
        ({"name": "\x00"}, "name"),
    ],
)
async def test_create_rejections_name_the_field(alice: AppClient, fields: dict, field: str):
    data = {"name": "ok", "description": "", "quantity": "1", **fields}
    response = await alice.post("/items", data=data, headers=alice.htmx())
    assert response.status_code == 422
    assert re.findall(r'data-error-for="(\w+)"', response.text) == [field]


async def test_names_are_html_escaped(alice: AppClient):
    await create(alice, "<script>alert(1)</script>", description='"><img src=x onerror=alert(1)>')
    page = (await alice.get("/items")).text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page


async def test_create_without_js_redirects_303(alice: AppClient):
    response = await alice.post(
        "/items", data={"name": "Plain form", "quantity": "2", "csrf_token": alice.csrf}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/items"
    assert "Plain form" in (await alice.get("/items")).text


async def test_create_errors_without_js_render_the_full_page(alice: AppClient):
    response = await alice.post("/items", data={"name": "", "csrf_token": alice.csrf})
    assert response.status_code == 422 and is_full_page(response.text)
    assert 'data-error-for="name"' in response.text


async def test_create_with_multipart_form(alice: AppClient):
    response = await alice.post(
        "/items",
        data={"name": "Multipart", "quantity": "4", "csrf_token": alice.csrf},
        files={"ignored": ("a.txt", b"file body")},
    )
    assert response.status_code == 303
    assert "Multipart" in (await alice.get("/items")).text


# view / edit / update / delete -----------------------------------------------------------------


async def test_show_item_full_page_vs_fragment(alice: AppClient):
    item_id = await create(alice, "Lamp", description="desk")
    full = await alice.get(f"/items/{item_id}")
    frag = await alice.get(f"/items/{item_id}", headers={"HX-Request": "true"})
    assert full.status_code == frag.status_code == 200
    assert is_full_page(full.text) and "← All items" in full.text
    assert frag.text.lstrip().startswith(f'<article id="item-{item_id}"')
    assert not is_full_page(frag.text) and "All items" not in frag.text
    assert full.headers["vary"] == frag.headers["vary"] == "HX-Request"


async def test_edit_form(alice: AppClient):
    item_id = await create(alice, "Lamp")
    frag = await alice.get(f"/items/{item_id}/edit", headers={"HX-Request": "true"})
    assert frag.status_code == 200
    assert frag.text.lstrip().startswith(f'<form id="item-{item_id}"')
    assert f'hx-put="/items/{item_id}"' in frag.text and 'value="Lamp"' in frag.text
    full = await alice.get(f"/items/{item_id}/edit")
    assert is_full_page(full.text) and f'action="/items/{item_id}/edit"' in full.text


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_update_via_htmx(alice: AppClient, method: str):
    item_id = await create(alice, "Lamp")
    response = await alice.request(
        method,
        f"/items/{item_id}",
        data={"name": "Lamp v2", "description": "new", "quantity": "9"},
        headers=alice.htmx(),
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith(f'<article id="item-{item_id}"')
    assert "Lamp v2" in response.text and "×&nbsp;9" in response.text
    assert toast(response) == "Saved “Lamp v2”."
    page = (await alice.get(f"/items/{item_id}")).text
    assert "Lamp v2" in page and "new" in page


async def test_update_with_errors_keeps_input(alice: AppClient):
    item_id = await create(alice, "Lamp")
    response = await alice.put(
        f"/items/{item_id}",
        data={"name": "Renamed", "description": "kept", "quantity": "-3"},
        headers=alice.htmx(),
    )
    assert response.status_code == 422
    assert 'data-error-for="quantity">Quantity cannot be negative.' in response.text
    assert 'value="Renamed"' in response.text and ">kept</textarea>" in response.text
    assert "Renamed" not in (await alice.get(f"/items/{item_id}")).text


async def test_update_without_js(alice: AppClient):
    item_id = await create(alice, "Lamp")
    response = await alice.post(
        f"/items/{item_id}/edit",
        data={"name": "Edited plainly", "quantity": "1", "csrf_token": alice.csrf},
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/items/{item_id}"
    assert "Edited plainly" in (await alice.get(f"/items/{item_id}")).text


async def test_delete_via_htmx(alice: AppClient):
    item_id = await create(alice, "Lamp")
    response = await alice.delete(f"/items/{item_id}", headers=alice.htmx())
    assert response.status_code == 200 and response.content == b""
    assert toast(response) == "Item deleted."
    assert (await alice.get(f"/items/{item_id}")).status_code == 404
    assert response.headers["hx-trigger-after-settle"] == "items-changed"  # the list re-reads itself
    again = await alice.delete(f"/items/{item_id}", headers=alice.htmx())
    assert again.status_code == 404


async def test_an_item_deleted_elsewhere_says_so_and_the_list_catches_up(alice: AppClient):
    item_id = await create(alice, "Lamp")
    await alice.delete(f"/items/{item_id}", headers=alice.htmx())  # "another tab"
    for method, path in [("PUT", f"/items/{item_id}"), ("GET", f"/items/{item_id}/edit"),
                         ("GET", f"/items/{item_id}"), ("DELETE", f"/items/{item_id}")]:
        data = {"name": "x", "quantity": "1"} if method == "PUT" else None
        response = await alice.request(method, path, data=data, headers=alice.htmx())
        assert response.status_code == 404, (method, path)
        assert "deleted" in json.loads(response.headers["hx-trigger"])["toast-error"]
        assert response.headers["hx-trigger-after-settle"] == "items-changed"
    full = await alice.get(f"/items/{item_id}")  # a page load: the 404 page, no htmx events
    assert full.status_code == 404 and "hx-trigger" not in full.headers


async def test_delete_without_js(alice: AppClient):
    item_id = await create(alice, "Lamp")
    response = await alice.post(f"/items/{item_id}/delete", data={"csrf_token": alice.csrf})
    assert response.status_code == 303 and response.headers["location"] == "/items"
    assert (await alice.get(f"/items/{item_id}")).status_code == 404


# one task row per write ----------------------------------------------------------------------


class UnreachableOnWrite:
    """The app's store, except that creating an item fails as an unreachable service would."""

    def __init__(self, store) -> None:
        self.store = store

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    async def create_item(self, session, data):
        raise StoreUnavailable("connection refused")


@contextlib.asynccontextmanager
async def logged_app(tmp_path: Path, wrap_store=None) -> AsyncIterator[AppClient]:
    """The app writing its log to CSV; leaving the block closes its lifespan (rows flushed)."""
    app = create_app(make_settings(tmp_path, log_sinks=("csv",)))
    async with app.router.lifespan_context(app) as state:
        if wrap_store is not None:
            state["store"] = wrap_store(state["store"])

        async def with_state(scope, receive, send):
            scope["state"] = dict(state)
            await app(scope, receive, send)

        async with AppClient(transport=httpx.ASGITransport(with_state), base_url="http://testserver") as client:
            assert (await client.signup("alice@example.com")).status_code == 303
            yield client


def task_rows(tmp_path: Path) -> list:
    return list(read_rows(tmp_path / "logs", "task_progress_logs"))


async def test_create_update_delete_each_write_one_task_row(tmp_path: Path):
    async with logged_app(tmp_path) as client:
        created = await client.post("/items", data={"name": " Lamp ", "quantity": "2"}, headers=client.htmx())
        item_id = max(int(i) for i in re.findall(r'id="item-(\d+)"', created.text))
        updated = await client.patch(f"/items/{item_id}", data={"name": "Lamp v2", "description": "d", "quantity": "3"},
                                     headers=client.htmx())
        refused = await client.put(f"/items/{item_id}", data={"name": "", "quantity": "1"}, headers=client.htmx())
        deleted = await client.delete(f"/items/{item_id}", headers=client.htmx())
        gone = await client.delete(f"/items/{item_id}", headers=client.htmx())
    assert [r.status_code for r in (created, updated, refused, deleted, gone)] == [200, 200, 422, 200, 404]
    rows = task_rows(tmp_path)
    assert [(r.task_name, r.step_name, r.status, r.execution_order) for r in rows] == [
        ("Item_Create", "DB_Commit", "SUCCESS", 1),
        ("Item_Update", "DB_Commit", "SUCCESS", 1),  # the 422 never reached the store: no row
        ("Item_Delete", "DB_Commit", "SUCCESS", 1),
        ("Item_Delete", "DB_Commit", "FAILED", 1),
    ]
    assert [r.trace_id for r in rows] == [x.headers["x-trace-id"] for x in (created, updated, deleted, gone)]
    assert json.loads(rows[0].input_data) == {"name": "Lamp", "description": "", "quantity": 2}  # validated
    assert json.loads(rows[1].input_data) == {"name": "Lamp v2", "description": "d", "quantity": 3}
    assert [json.loads(r.output_data) for r in rows] == [{"id": item_id}] * 4
    assert rows[3].error_message == "not found: nothing changed"
    assert all(r.error_message is None for r in rows[:3])


async def test_a_write_the_store_refuses_is_a_failed_row_with_the_error(tmp_path: Path):
    async with logged_app(tmp_path, wrap_store=UnreachableOnWrite) as client:
        response = await client.post("/items", data={"name": "Lamp", "quantity": "1"}, headers=client.htmx())
    assert response.status_code == 503
    (row,) = task_rows(tmp_path)
    assert (row.task_name, row.status, row.trace_id) == ("Item_Create", "FAILED", response.headers["x-trace-id"])
    assert row.error_message == "StoreUnavailable: connection refused"
    assert "in create_item" in row.stack_trace
    assert json.loads(row.input_data) == {"name": "Lamp", "description": "", "quantity": 1}


# ownership and odd ids -----------------------------------------------------------------------


async def test_another_users_item_is_404_and_unchanged(alice: AppClient, bob: AppClient):
    item_id = await create(alice, "Alice's lamp", description="mine", quantity="5")
    before = (await alice.get(f"/items/{item_id}", headers={"HX-Request": "true"})).text
    form = {"name": "pwned", "description": "", "quantity": "0"}

    attempts = [
        await bob.get(f"/items/{item_id}"),
        await bob.get(f"/items/{item_id}/edit"),
        await bob.put(f"/items/{item_id}", data=form, headers=bob.htmx()),
        await bob.patch(f"/items/{item_id}", data=form, headers=bob.htmx()),
        await bob.delete(f"/items/{item_id}", headers=bob.htmx()),
        await bob.post(f"/items/{item_id}/edit", data={**form, "csrf_token": bob.csrf}),
        await bob.post(f"/items/{item_id}/delete", data={"csrf_token": bob.csrf}),
    ]
    assert [r.status_code for r in attempts] == [404] * len(attempts)
    assert all("Alice" not in r.text for r in attempts)
    assert 'id="not-found"' in attempts[0].text
    after = (await alice.get(f"/items/{item_id}", headers={"HX-Request": "true"})).text
    assert after == before
    assert "Alice" not in (await bob.get("/items")).text


@pytest.mark.parametrize("item_id", [0, 999_999, 2**63 - 1, 2**63, 2**70, 10**40])
async def test_missing_or_huge_ids_are_404_not_500(alice: AppClient, item_id: int):
    form = {"name": "x", "quantity": "1"}
    responses = [
        await alice.get(f"/items/{item_id}"),
        await alice.get(f"/items/{item_id}/edit"),
        await alice.put(f"/items/{item_id}", data=form, headers=alice.htmx()),
        await alice.delete(f"/items/{item_id}", headers=alice.htmx()),
        await alice.post(f"/items/{item_id}/edit", data={**form, "csrf_token": alice.csrf}),
        await alice.post(f"/items/{item_id}/delete", data={"csrf_token": alice.csrf}),
    ]
    assert [r.status_code for r in responses] == [404] * len(responses)


async def test_not_found_htmx_fragment_and_full_page(alice: AppClient):
    frag = await alice.get("/items/12345", headers={"HX-Request": "true"})
    assert frag.status_code == 404 and frag.text.lstrip().startswith('<div class="alert')
    full = await alice.get("/items/12345")
    assert full.status_code == 404 and is_full_page(full.text)
    assert frag.headers["vary"] == full.headers["vary"] == "HX-Request"
    unknown = await alice.get("/no/such/page")
    assert unknown.status_code == 404 and 'id="not-found"' in unknown.text


@pytest.mark.parametrize("path", ["/items/new", "/items/import", "/items/export.csv", "/items/-1", "/items/1.5"])
def test_named_paths_never_match_the_int_route(tmp_path: Path, path: str):
    app = create_app(make_settings(tmp_path))
    for route in app.routes:
        if isinstance(route, Route) and "{item_id:int}" in route.path:
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"]:
                scope = {"type": "http", "path": path, "method": method}
                assert route.matches(scope)[0] is Match.NONE, (route.path, method)


@pytest.mark.parametrize("path", ["/items/new", "/items/import", "/items/export.csv"])
async def test_named_paths_are_not_server_errors(alice: AppClient, path: str):
    response = await alice.get(path)
    assert response.status_code < 500
    post = await alice.post(path, data={"csrf_token": alice.csrf})
    assert post.status_code < 500


# signed-out access -----------------------------------------------------------------------------


async def test_signed_out_item_pages_redirect_to_login(make_client, alice: AppClient):
    item_id = await create(alice, "Lamp")
    stranger = await make_client()
    await stranger.refresh_csrf()
    for response in [
        await stranger.get(f"/items/{item_id}"),
        await stranger.get(f"/items/{item_id}/edit"),
        await stranger.post("/items", data={"name": "x", "csrf_token": stranger.csrf}),
        await stranger.post(f"/items/{item_id}/delete", data={"csrf_token": stranger.csrf}),
    ]:
        assert response.status_code == 303 and response.headers["location"] == "/login"
    htmx = await stranger.delete(f"/items/{item_id}", headers=stranger.htmx())
    assert htmx.status_code == 204 and htmx.headers["hx-redirect"] == "/login"
    assert (await alice.get(f"/items/{item_id}")).status_code == 200


# search and pages -----------------------------------------------------------------------------


async def test_search(alice: AppClient):
    for name in ["100% cotton", "100 percent", "a_b", "axb", "Blue mug"]:
        await create(alice, name)

    async def found(q: str) -> list[str]:
        r = await alice.get("/items", params={"q": q}, headers={"HX-Request": "true"})
        assert r.status_code == 200
        return sorted(re.findall(r'data-item-name="([^"]*)"', r.text))

    assert await found("%") == ["100% cotton"]
    assert await found("_") == ["a_b"]
    assert await found("BLUE") == ["Blue mug"]
    assert await found("  mug  ") == ["Blue mug"]
    assert len(await found("")) == 5
    none = await alice.get("/items", params={"q": "zzz"})
    assert "No items match “zzz”" in none.text
    assert 'value="zzz"' in none.text  # the search box keeps the query


async def test_pages(alice: AppClient):
    total = PER_PAGE + 5
    for n in range(total):
        await create(alice, f"item {n:02}")

    async def names(page: str) -> list[str]:
        r = await alice.get("/items", params={"page": page}, headers={"HX-Request": "true"})
        assert r.status_code == 200
        assert f"{total} items" in r.text
        return re.findall(r'data-item-name="([^"]*)"', r.text)

    first = await names("1")
    assert len(first) == PER_PAGE and first[0] == f"item {total - 1:02}"
    second = await names("2")
    assert second == [f"item {n:02}" for n in range(4, -1, -1)]
    assert set(first).isdisjoint(second)
    for bad in ["0", "-1", "abc", "", "1e3", "99999999", "²", "①", "١"]:
        assert await names(bad) == first
    # Past the end (say the last item of page 3 was deleted and the list re-reads that URL): the
    # last page, not an empty list that would claim there are no items.
    assert await names("3") == second
    nav = (await alice.get("/items", params={"q": "item"})).text
    assert 'href="/items?q=item&page=2"' in nav


# health -----------------------------------------------------------------------------------


async def test_health_json(make_client):
    client = await make_client()
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok" and body["backend"] == "sqlite"
    assert "logs" in body


@pytest.mark.parametrize(
    "query",
    ["q=%00", "q=%ff%fe", "q=" + "%25" * 500, "q=%5C", "page=%00", "page=%ff", "q=a&q=b&page=2&page=x", "q=%E2%80%AE"],
)
async def test_odd_query_strings_are_not_server_errors(alice: AppClient, query: str):
    await create(alice, "Lamp")
    for headers in ({}, {"HX-Request": "true"}):
        response = await alice.get(f"/items?{query}", headers=headers)
        assert response.status_code == 200, query


# arbitrary form input over HTTP --------------------------------------------------------------


@pytest.fixture(scope="module")
def portal_client(tmp_path_factory):
    """One signed-in client on one app for every hypothesis example (a blocking portal runs
    the event loop in a thread, so the sync @given test can drive the async client)."""
    with start_blocking_portal(backend="asyncio") as portal:
        app = create_app(make_settings(tmp_path_factory.mktemp("fuzz")))
        with portal.wrap_async_context_manager(app.router.lifespan_context(app)) as state:

            async def asgi(scope, receive, send):
                scope["state"] = dict(state)
                await app(scope, receive, send)

            client = AppClient(transport=httpx.ASGITransport(asgi), base_url="http://testserver")
            assert portal.call(client.signup, "fuzz@example.com").status_code == 303
            yield portal, client
            portal.call(client.aclose)


form_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=260)


@settings(max_examples=60, deadline=None)
@given(name=form_text, description=st.one_of(form_text, st.just("d" * 2001)), quantity=st.one_of(form_text, st.integers().map(str)))
def test_arbitrary_item_forms_are_200_or_422(portal_client, name: str, description: str, quantity: str):
    portal, client = portal_client
    form = {"name": name, "description": description, "quantity": quantity}
    expected, errors = validate_item(form)
    response = portal.call(lambda: client.post("/items", data=form, headers=client.htmx()))
    if expected is None:
        assert response.status_code == 422
        assert set(re.findall(r'data-error-for="(\w+)"', response.text)) == set(errors)
    else:
        assert response.status_code == 200
        assert str(escape(expected.name)) in response.text
