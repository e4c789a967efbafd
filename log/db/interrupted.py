"""Close the task runs a dead process left open, so none looks like it is running forever.

A step whose last row is START or IN_PROGRESS, written by a worker id no live process holds
(log/db/lease.py), was cut off when its process ended: a starting process gives it a FAILED
row "interrupted (process ended)". The worker id is in every row id's bits (log/core/ids.py).
Runs of a live instance sharing the log database are never touched; runs under this process's
own worker id are closed only when they are older than its lease (a previous holder's).

Each closing row is inserted only if nothing was written to that step after the open row, in
one transaction: two instances starting together close a run once. Only steps of the last
LOOKBACK_HOURS are looked at (an id range of the primary key): the start-up read is the task rows
of that window, not the table (a remote log database bills rows read). A process that ended is
found by the next start, which on Cloud Run comes within moments, or, where that start came while
the ended one's lease still ran (a worker process replaced at once), by a running process once
the lease has expired (Tracing reads the leases every minute); a step begun longer ago than the
window is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from log.core.build import task_row
from log.core.ids import EPOCH_MS, MAX_WORKER, SEQUENCE_BITS, WORKER_BITS
from log.core.rows import FAILED, TaskProgressLog, columns
from log.db.database import LogDatabase

INTERRUPTED = "interrupted (process ended)"
LOOKBACK_HOURS = 24
MAX_CLOSED = 1000  # per start; the next start closes the rest
_TIME_SHIFT = WORKER_BITS + SEQUENCE_BITS
_WORKER = f"((t.id >> {SEQUENCE_BITS}) & {MAX_WORKER})"

# ?1 lowest id looked at, ?2 this process's worker id, ?3 its first id (lease time),
# ?4 now (lease expiry clock), ?5 limit.
OPEN_STEPS_SQL = f"""
SELECT t.id, t.trace_id, t.task_name, t.step_name,
  (SELECT MAX(r.execution_order) FROM task_progress_logs r
    WHERE r.trace_id = t.trace_id AND r.task_name = t.task_name) AS last_order
FROM task_progress_logs t
WHERE t.id >= ?1 AND t.status IN ('START', 'IN_PROGRESS')
  AND NOT EXISTS (SELECT 1 FROM task_progress_logs later
    WHERE later.trace_id = t.trace_id AND later.task_name = t.task_name
      AND later.step_name = t.step_name AND later.id > t.id)
  AND CASE WHEN {_WORKER} = ?2 THEN t.id < ?3
      ELSE NOT EXISTS (SELECT 1 FROM log_worker_leases l
        WHERE l.worker_id = {_WORKER} AND l.expires_at >= ?4) END
ORDER BY t.id
LIMIT ?5
"""

_COLUMNS = columns(TaskProgressLog)
_N = len(_COLUMNS)
# The row's values are ?1..?N; ?N+1 is the open row's id.
CLOSE_SQL = (
    f"INSERT INTO task_progress_logs ({', '.join(_COLUMNS)}) "
    f"SELECT {', '.join(f'?{i}' for i in range(1, _N + 1))} "
    f"WHERE NOT EXISTS (SELECT 1 FROM task_progress_logs WHERE trace_id = ?2 AND task_name = ?3 "
    f"AND step_name = ?4 AND id > ?{_N + 1}) "
    "RETURNING id"
)


class OpenStep(msgspec.Struct, frozen=True):
    id: int  # the step's last row (START or IN_PROGRESS)
    trace_id: str
    task_name: str
    step_name: str
    last_order: int | None  # the run's highest execution_order


def first_id_at(epoch_seconds: float) -> int:
    """The lowest Snowflake id any worker can issue at or after this time."""
    return max(0, int(epoch_seconds * 1000) - EPOCH_MS) << _TIME_SHIFT


def closing_row(step: OpenStep, *, row_id: int, at: float) -> TaskProgressLog:
    """The FAILED row that ends an interrupted step, next in its run's execution_order."""
    return task_row(
        row_id=row_id,
        trace_id=step.trace_id,
        task_name=step.task_name,
        step_name=step.step_name,
        status=FAILED,
        at=at,
        redact=lambda value: value,
        error_message=INTERRUPTED,
        execution_order=(step.last_order or 0) + 1,
    )


async def open_steps(
    db: LogDatabase, *, worker_id: int, leased_at: float, now: float, limit: int = MAX_CLOSED
) -> list[OpenStep]:
    """Open steps of dead processes (see the module docstring), oldest first."""
    since = first_id_at(now - LOOKBACK_HOURS * 3600)
    found = await db.select(OPEN_STEPS_SQL, (since, worker_id, first_id_at(leased_at), now, limit))
    return [msgspec.convert(r, OpenStep) for r in found]


async def close_steps(
    db: LogDatabase, steps: Sequence[OpenStep], *, now: float, next_id: Callable[[], int]
) -> list[TaskProgressLog]:
    """Write the closing rows, each only if its step is still open; -> the rows inserted."""
    if not steps:
        return []
    rows = [closing_row(step, row_id=next_id(), at=now) for step in steps]
    statements = [(CLOSE_SQL, (*msgspec.structs.astuple(row), step.id)) for row, step in zip(rows, steps)]
    outcomes = await db.transaction(statements)
    return [row for row, outcome in zip(rows, outcomes) if outcome.rows]


async def close_interrupted(
    db: LogDatabase, *, worker_id: int, leased_at: float, now: float, next_id: Callable[[], int]
) -> list[TaskProgressLog]:
    """Find the open steps of ended processes and close them; -> the rows this call inserted."""
    steps = await open_steps(db, worker_id=worker_id, leased_at=leased_at, now=now)
    return await close_steps(db, steps, now=now, next_id=next_id)
