"""Worker id leases on both backends: distinct under concurrency, expired ones reused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from log.db.hrana import TransportError
from log.db.database import FileLogDatabase, HttpLogDatabase, LogDatabase
from log.db.lease import (
    LeaseError,
    WorkerLease,
    acquire_worker_id,
    keep_renewed,
    release_worker_id,
    renew_worker_id,
)
from tests.support.hrana_server import HranaServer, Running, running



@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    with running(HranaServer(str(tmp_path / "remote.db"))) as r:
        yield r


@pytest.fixture(params=["http", "file"])
async def make_db(request: pytest.FixtureRequest, server: Running, tmp_path: Path, anyio_backend: str) -> AsyncIterator:
    """A factory: each call is a separate 'replica' with its own connection to the same database."""
    opened: list[FileLogDatabase] = []
    async with httpx.AsyncClient() as client:
        def make() -> LogDatabase:
            if request.param == "http":
                return HttpLogDatabase(client, server.url)
            db = FileLogDatabase(str(tmp_path / "logs.db"))
            opened.append(db)
            return db

        yield make
    for db in opened:
        db.close()


@pytest.mark.anyio
async def test_twenty_concurrent_leases_get_distinct_ids(make_db) -> None:
    leases: list[WorkerLease] = []

    async def take(i: int) -> None:
        leases.append(await acquire_worker_id(make_db(), f"replica-{i}", now=1000.0, ttl=30))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(take, i)
    assert sorted(lease.worker_id for lease in leases) == list(range(20))


@pytest.mark.anyio
async def test_expired_lease_is_reused_and_the_old_holder_loses_it(make_db) -> None:
    db = make_db()
    old = await acquire_worker_id(db, "old", now=1000.0, ttl=10)
    live = await acquire_worker_id(db, "live", now=1000.0, ttl=100)
    assert (old.worker_id, live.worker_id) == (0, 1)
    new = await acquire_worker_id(db, "new", now=1011.0, ttl=10)
    assert new.worker_id == 0  # expired, so the lowest id is free again; 1 is still held
    assert await renew_worker_id(db, old, now=1012.0, ttl=10) is None
    renewed = await renew_worker_id(db, new, now=1012.0, ttl=10)
    assert renewed is not None and renewed.expires_at == 1022.0


@pytest.mark.anyio
async def test_release_frees_the_id(make_db) -> None:
    db = make_db()
    lease = await acquire_worker_id(db, "a", now=0.0, ttl=60)
    await release_worker_id(db, lease)
    assert (await acquire_worker_id(db, "b", now=1.0, ttl=60)).worker_id == lease.worker_id


@pytest.mark.anyio
async def test_all_ids_taken(make_db) -> None:
    db = make_db()
    values = ",".join(f"({i}, 'x', 1e12)" for i in range(1024))
    await db.transaction([("CREATE TABLE IF NOT EXISTS log_worker_leases (worker_id INTEGER PRIMARY KEY, "
                           "holder TEXT NOT NULL, expires_at REAL NOT NULL)", ()),
                          (f"INSERT INTO log_worker_leases VALUES {values}", ())])
    with pytest.raises(LeaseError):
        await acquire_worker_id(db, "late", now=0.0, ttl=60)
    assert (await db.select("SELECT count(*) AS n FROM log_worker_leases"))[0]["n"] == 1024


@pytest.mark.anyio
async def test_keep_renewed_stops_when_the_lease_is_lost(make_db) -> None:
    db = make_db()
    lease = await acquire_worker_id(db, "me", now=0.0, ttl=30)
    clock = iter([10.0, 20.0, 100.0])  # third renewal comes after expiry and takeover
    lost: list[WorkerLease] = []

    async def steal_after_second(_: float) -> None:  # stands in for the interval sleep
        if len(calls) == 2:
            await acquire_worker_id(db, "thief", now=60.0, ttl=30)
        calls.append(1)

    calls: list[int] = []
    await keep_renewed(db, lease, ttl=30, interval=10, clock=lambda: next(clock),
                       sleep=steal_after_second, on_lost=lost.append)
    assert [x.worker_id for x in lost] == [lease.worker_id]
    assert (await db.select("SELECT holder FROM log_worker_leases"))[0]["holder"] == "thief"


class FlakyDb:
    """A LogDatabase that fails its next `failures` transactions, then delegates."""

    def __init__(self, db: LogDatabase, failures: int) -> None:
        self.db, self.failures = db, failures

    async def transaction(self, statements):  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            raise TransportError("connection refused")
        return await self.db.transaction(statements)


@pytest.mark.anyio
async def test_keep_renewed_survives_a_failed_renewal(make_db) -> None:
    db = make_db()
    lease = await acquire_worker_id(db, "me", now=0.0, ttl=30)
    flaky = FlakyDb(db, failures=1)
    rounds: list[int] = []

    async def sleep(_: float) -> None:
        if len(rounds) == 3:  # after one failed and two good renewals, someone takes over
            await db.transaction([("UPDATE log_worker_leases SET holder = 'other'", ())])
        rounds.append(1)

    lost: list[WorkerLease] = []
    await keep_renewed(flaky, lease, ttl=30, interval=10, clock=lambda: 10.0 * len(rounds),  # type: ignore[arg-type]
                       sleep=sleep, on_lost=lost.append)
    assert len(rounds) == 4 and len(lost) == 1
    assert (await db.select("SELECT expires_at FROM log_worker_leases"))[0]["expires_at"] == 60.0
