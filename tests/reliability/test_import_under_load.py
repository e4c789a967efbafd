"""A real uvicorn server answering list, create and search requests while a large CSV import
runs: no request gets a 500 (the import must not hold SQLite's write lock while the event loop
writes, nor while it waits for the event loop), and every row, imported or created, is stored."""

from __future__ import annotations

import collections
import csv
import io
from pathlib import Path

import anyio
import pytest

from tests.support.reliability import mixed_request, scaled, signed_in, start_app

pytestmark = [pytest.mark.reliability, pytest.mark.anyio]

ROWS = int(scaled(20_000, minimum=20_000))
WORKERS = 4


def import_file(n: int) -> bytes:
    buffer = io.StringIO()
    buffer.write("name,description,quantity\r\n")
    csv.writer(buffer, lineterminator="\r\n").writerows((f"bulk {i}", "imported", str(i % 50)) for i in range(n))
    return buffer.getvalue().encode()


async def test_requests_during_a_large_import_get_no_500(tmp_path: Path) -> None:
    app = start_app(tmp_path / "data", {"LOG_SINKS": "csv", "LOG_DIR": str(tmp_path / "logs")})
    statuses: collections.Counter = collections.Counter()
    answered = anyio.Event()
    try:
        async with signed_in(app.url, "bulk@example.com") as client:

            async def load(worker: int) -> None:
                # Closed loop until the import is answered; the first 500 ends it (the test fails).
                i = worker
                while not answered.is_set() and not any(k[1] >= 500 for k in statuses):
                    kind, call = mixed_request(client, i)
                    statuses[(kind, (await call()).status_code)] += 1
                    i += WORKERS

            data = import_file(ROWS)
            async with anyio.create_task_group() as tg:
                for worker in range(WORKERS):
                    tg.start_soon(load, worker)
                response = await client.post(
                    "/items/import", files={"file": ("bulk.csv", data, "text/csv")}, headers=client.htmx(), timeout=120
                )
                answered.set()
            output = app.output()
            assert [k for k in statuses if k[1] >= 500] == [], (statuses, output[-3000:])
            assert response.status_code == 200, response.text[:500]
            assert f"Imported {ROWS:,} items" in response.text
            created = statuses[("create", 200)]
            assert created > 0, statuses  # the load did write while the import ran
            export = await client.get("/items/export.csv")
    finally:
        app.stop()
    names = collections.Counter(row["name"].split(" ")[0] for row in csv.DictReader(io.StringIO(export.text)))
    assert names == {"bulk": ROWS, "load": created}, names
