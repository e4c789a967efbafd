"""Sustained TursoSink throughput against the local Hrana server (and the file backend).

    .venv/bin/python -m bench.turso_bench [--rows 50000] [--batch 500]

Prints rows/s and HTTP requests per 10 000 rows (target: <= 20, i.e. one request per batch).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from log.core.rows import ApiLog
from log.db.database import FileLogDatabase, HttpLogDatabase, LogDatabase
from log.sinks.turso_sink import TursoSink
from tests.support.hrana_server import HranaServer, running


def make_rows(n: int) -> list[ApiLog]:
    return [
        ApiLog(id=7_000_000_000 + i, trace_id=f"{i:032x}", method="POST", endpoint="/api/items",
               request_header='{"content-type":"application/json","user-agent":"bench"}',
               request_body='{"name":"widget","qty":3}', response_status=201,
               response_body='{"id":123,"name":"widget"}', duration_ms=12, ip_address="10.0.0.1",
               user_id="5f0c2a4e-0000-4000-8000-000000000000", created_at="2026-11-27 10:00:00.000")
        for i in range(n)
    ]


async def opened(db: LogDatabase) -> TursoSink:
    sink = TursoSink(db)
    await sink.open()
    return sink


async def run(sink: TursoSink, rows: list[ApiLog], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        result = await sink.write("api_logs", rows[i : i + batch])
        assert result.inserted == len(rows[i : i + batch]), result
    return time.perf_counter() - start


async def main(nrows: int, batch: int) -> None:
    rows = make_rows(nrows)
    with tempfile.TemporaryDirectory() as tmp:
        server = HranaServer(str(Path(tmp) / "remote.db"), token="bench")
        with running(server) as r:
            async with httpx.AsyncClient() as client:
                sink = await opened(HttpLogDatabase(client, r.url, "bench"))
                before = server.pipeline_requests
                elapsed = await run(sink, rows, batch)
                requests = server.pipeline_requests - before
        print(f"http: {nrows} rows in batches of {batch}: {elapsed:.2f}s, {nrows / elapsed:,.0f} rows/s, "
              f"{requests} pipeline requests ({requests * 10_000 / nrows:.1f} per 10 000 rows)")
        file_db = FileLogDatabase(str(Path(tmp) / "logs.db"))
        elapsed = await run(await opened(file_db), rows, batch)
        file_db.close()
        print(f"file: {nrows} rows in batches of {batch}: {elapsed:.2f}s, {nrows / elapsed:,.0f} rows/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    anyio.run(main, args.rows, args.batch)
