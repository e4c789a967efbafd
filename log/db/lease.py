"""Lease a Snowflake worker id (0..1023) from the log database, so replicas never share one.

acquire_worker_id takes the lowest id that is free or whose lease expired, in one statement
inside one transaction (atomic on both backends); the app renews it from a background task
(keep_renewed) and releases it on shutdown. A crashed replica's id comes back after `ttl`.

Job leases (`log_job_leases`) are the same idea for periodic work that one instance at a time
should do, at most once per interval across all of them: the retention prune (log/tools/prune.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec

from log.db.errors import LogDatabaseError
from log.db.database import LogDatabase

logger = logging.getLogger("log.worker_lease")

MAX_WORKER_ID = 1023

LEASE_DDL = (
    "CREATE TABLE IF NOT EXISTS log_worker_leases ("
    "worker_id INTEGER PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL)"
)

# The candidate is computed and claimed in ONE statement: the DO UPDATE only fires on a lease
# that is (still) expired, so two replicas can never both claim the same id.
# The `WHERE n IS NOT NULL` also disambiguates INSERT ... SELECT ... ON CONFLICT for SQLite's
# parser, and stops a NULL id from becoming an auto-assigned rowid when all ids are taken.
ACQUIRE_SQL = f"""
INSERT INTO log_worker_leases (worker_id, holder, expires_at)
SELECT n, ?1, ?2 FROM (
  WITH RECURSIVE ids(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM ids WHERE n < {MAX_WORKER_ID})
  SELECT MIN(n) AS n FROM ids WHERE NOT EXISTS (
    SELECT 1 FROM log_worker_leases l WHERE l.worker_id = ids.n AND l.expires_at >= ?3)
) WHERE n IS NOT NULL
ON CONFLICT(worker_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
  WHERE log_worker_leases.expires_at < ?3
RETURNING worker_id
"""


class WorkerLease(msgspec.Struct, frozen=True):
    worker_id: int
    holder: str  # unique per process start, e.g. f"{hostname}:{pid}:{uuid4()}"
    expires_at: float  # wall-clock seconds (time.time())


class LeaseError(Exception):
    pass


async def acquire_worker_id(db: LogDatabase, holder: str, *, now: float, ttl: float) -> WorkerLease:
    """Raises LeaseError when all 1024 ids are held, LogDatabaseError when the database is unreachable."""
    expires = now + ttl
    _, claimed = await db.transaction([(LEASE_DDL, ()), (ACQUIRE_SQL, (holder, expires, now))])
    if not claimed.rows:
        raise LeaseError(f"all {MAX_WORKER_ID + 1} worker ids are leased")
    return WorkerLease(int(claimed.rows[0]["worker_id"]), holder, expires)


async def renew_worker_id(db: LogDatabase, lease: WorkerLease, *, now: float, ttl: float) -> WorkerLease | None:
    """Extend the lease; None if it was lost (expired and taken by someone else)."""
    expires = now + ttl
    (updated,) = await db.transaction(
        [("UPDATE log_worker_leases SET expires_at = ? WHERE worker_id = ? AND holder = ?",
          (expires, lease.worker_id, lease.holder))]
    )
    return msgspec.structs.replace(lease, expires_at=expires) if updated.affected_row_count == 1 else None


async def release_worker_id(db: LogDatabase, lease: WorkerLease) -> None:
    await db.transaction(
        [("DELETE FROM log_worker_leases WHERE worker_id = ? AND holder = ?", (lease.worker_id, lease.holder))]
    )


async def keep_renewed(
    db: LogDatabase,
    lease: WorkerLease,
    *,
    ttl: float,
    interval: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    on_lost: Callable[[WorkerLease], None],
) -> None:
    """Background task body: renew every `interval` (choose ttl >= 3 * interval, so a couple of
    failed renewals are survivable). Calls on_lost and returns if the lease is gone."""
    while True:
        await sleep(interval)
        try:
            renewed = await renew_worker_id(db, lease, now=clock(), ttl=ttl)
        except LogDatabaseError as exc:
            logger.warning("worker id %d: renewal failed (%s); still valid until %.0f",
                           lease.worker_id, exc.message, lease.expires_at)
            continue
        if renewed is None:
            logger.error("worker id %d: lease lost to another holder", lease.worker_id)
            on_lost(lease)
            return
        lease = renewed


# -- job leases: one instance at a time runs a periodic job (the retention prune) ---------------

JOB_DDL = (
    "CREATE TABLE IF NOT EXISTS log_job_leases ("
    "job TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL, last_run_at REAL NOT NULL)"
)

# Claimed in ONE statement, like a worker id: the DO UPDATE fires only when the lease expired AND
# the last run started long enough ago, so two instances can never both start the job, and the
# job starts at most once per `every` seconds whichever instance runs it.
JOB_ACQUIRE_SQL = """
INSERT INTO log_job_leases (job, holder, expires_at, last_run_at) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT(job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
  last_run_at = excluded.last_run_at
  WHERE log_job_leases.expires_at < ?4 AND log_job_leases.last_run_at <= ?5
RETURNING job
"""


class JobLease(msgspec.Struct, frozen=True):
    job: str
    holder: str
    expires_at: float


async def acquire_job_lease(
    db: LogDatabase, job: str, holder: str, *, now: float, ttl: float, every: float
) -> JobLease | None:
    """The lease, or None while another holder has it or the job last started under `every`
    seconds ago. Raises LogDatabaseError when the database is unreachable."""
    _, claimed = await db.transaction(
        [(JOB_DDL, ()), (JOB_ACQUIRE_SQL, (job, holder, now + ttl, now, now - every))]
    )
    return JobLease(job, holder, now + ttl) if claimed.rows else None


def job_renewal(lease: JobLease, *, now: float, ttl: float) -> tuple[str, tuple[object, ...]]:
    """A statement that extends the lease, to run inside the job's own transactions: it changes
    one row while the lease is held, none once it was lost."""
    return (
        "UPDATE log_job_leases SET expires_at = ? WHERE job = ? AND holder = ?",
        (now + ttl, lease.job, lease.holder),
    )


async def job_holder(db: LogDatabase, job: str, *, now: float) -> tuple[str, float] | None:
    """(holder, expires_at) of a live lease on `job`, or None."""
    rows = await db.select(
        "SELECT holder, expires_at FROM log_job_leases WHERE job = ? AND expires_at >= ?", (job, now)
    )
    return (str(rows[0]["holder"]), float(rows[0]["expires_at"])) if rows else None


async def release_job_lease(db: LogDatabase, lease: JobLease) -> None:
    """Let the lease go (the job's last start time stays, so `every` still holds)."""
    await db.transaction(
        [("UPDATE log_job_leases SET expires_at = 0 WHERE job = ? AND holder = ?", (lease.job, lease.holder))]
    )


async def worker_leases(db: LogDatabase) -> dict[int, tuple[str, float]]:
    """{worker id: (holder, expires_at)} of every worker-id lease on record."""
    _, listed = await db.transaction(
        [(LEASE_DDL, ()), ("SELECT worker_id, holder, expires_at FROM log_worker_leases", ())]
    )
    return {int(r["worker_id"]): (str(r["holder"]), float(r["expires_at"])) for r in listed.rows}


async def live_leases(db: LogDatabase, *, now: float) -> set[tuple[int, str]]:
    """(worker id, holder) of every worker-id lease that has not expired (a read only: the
    table exists once this process holds a lease)."""
    rows = await db.select("SELECT worker_id, holder FROM log_worker_leases WHERE expires_at >= ?", (now,))
    return {(int(r["worker_id"]), str(r["holder"])) for r in rows}
