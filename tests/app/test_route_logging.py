"""The real app's api_logs rows carry the template of the route that matched (the app's own
IndexedRouter sets scope["route"] as Starlette's Router does), "(unmatched)" for 404s no route
matched, and nothing for requests a middleware answered before routing."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from app import create_app
from handlers.routing import IndexedRouter
from log.core.rows import UNMATCHED
from log.sinks.csv_sink import read_rows
from tests.support.app import AppClient, make_settings

pytestmark = pytest.mark.anyio


async def test_rows_carry_route_templates(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_sinks=("csv",))
    app = create_app(settings)
    assert isinstance(app.router, IndexedRouter)
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope, receive, send):
            scope["state"] = dict(state)
            await app(scope, receive, send)

        async with AppClient(transport=httpx.ASGITransport(with_state), base_url="http://testserver") as client:
            assert (await client.signup("routes@example.com")).status_code == 303
            for name in ("lamp", "desk", "chair"):
                r = await client.post("/items", headers=client.htmx(), data={"name": name, "quantity": "1", "description": ""})
                assert r.status_code == 200
            ids = sorted({int(i) for i in re.findall(r'href="/items/(\d+)"', (await client.get("/items")).text)})
            assert len(ids) == 3
            made = [("GET", f"/items/{i}", 200) for i in ids] + [
                ("GET", f"/items/{ids[0]}/edit", 200),
                ("GET", "/items/999999", 404),  # the route matched; no such item
                ("GET", "/no/such/page", 404),
                ("DELETE", "/items", 405),  # the path's route, with another method
            ]
            for method, url, status in made:
                assert (await client.request(method, url, headers=client.htmx())).status_code == status
            # Refused by the CSRF middleware before any router ran.
            assert (await client.post("/items", data={"name": "x"})).status_code == 403
    # The lifespan has ended: every row is in the CSV file.
    rows = {(r.method, r.endpoint.split("?")[0], r.response_status): r.route for r in read_rows(settings.logs_path, "api_logs")}
    for i in ids:
        assert rows[("GET", f"/items/{i}", 200)] == "/items/{item_id:int}"
    assert rows[("GET", f"/items/{ids[0]}/edit", 200)] == "/items/{item_id:int}/edit"
    assert rows[("GET", "/items/999999", 404)] == "/items/{item_id:int}"
    assert rows[("GET", "/no/such/page", 404)] == UNMATCHED
    assert rows[("DELETE", "/items", 405)] == "/items"
    assert rows[("POST", "/items", 200)] == "/items"
    assert rows[("POST", "/items", 403)] is None
    assert rows[("POST", "/signup", 303)] == "/signup"
