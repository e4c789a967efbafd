"""One trace's rows as a waterfall: requests as top bars, task rows paired into spans.

Pure: rows in, a Waterfall out (times in ms from the trace's first moment). A step tracked with
`tracker.step()` writes START, any number of IN_PROGRESS, then SUCCESS or FAILED; here they
become one span from START to its end row, with the IN_PROGRESS rows as ticks on it. A START
with no end row is an open span (still running, or cut off). A row that closes or ticks nothing
(a one-row `record()`, the crash row of an unhandled exception) is a point event.

Task runs: one tracker numbers its rows 1, 2, 3, ... (execution_order), so within one task name a
row whose number does not grow starts a new run (one-row records each start at 1). Each run is
placed under the request whose window (received -> response) holds its first row; runs outside
every window are kept on their own.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from log.core.rows import FAILED, IN_PROGRESS, START, SUCCESS, ApiLog, TaskProgressLog

OPEN = "OPEN"  # the status of a span that has a START and no end row
SPAN, OPEN_SPAN, POINT = "span", "open", "point"
# A request's window is stretched by this much: created_at is kept to the millisecond and the
# duration is rounded, so a step written at the very end can land a millisecond past it.
WINDOW_SLACK_MS = 2
MIN_GAP_MS = 2  # gaps shorter than this (or than GAP_SHARE of their request) are not called out
GAP_SHARE = 0.05


def epoch_ms(created_at: str) -> int | None:
    """created_at text ("YYYY-MM-DD HH:MM:SS.fff", UTC) -> ms since the epoch; None if unreadable."""
    head, dot, fraction = created_at.partition(".") if isinstance(created_at, str) else ("", "", "")
    if dot and fraction.isascii() and fraction.isdigit():
        # A long import writes thousands of rows within a few seconds: parse each second once.
        second = _second_ms(head)
        if second is not None:
            return second + round(int(fraction) * 1000 / 10 ** len(fraction))
    return _parse_ms(created_at)


@functools.lru_cache(maxsize=512)
def _second_ms(text: str) -> int | None:
    return _parse_ms(text)


def _parse_ms(text: str) -> int | None:
    try:
        t = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return round(t.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Tick:
    at: int  # ms from the trace's origin
    row: TaskProgressLog


@dataclass(frozen=True, slots=True)
class Step:
    """A span (START -> end row), an open span (START only) or a point event (one row)."""

    task: str
    name: str
    shape: str  # SPAN | OPEN_SPAN | POINT
    status: str  # SUCCESS | FAILED | OPEN; a point keeps its row's status
    start: int
    end: int | None  # None: open-ended
    first: TaskProgressLog  # the START row, or the point's one row
    last: TaskProgressLog | None = None  # the end row of a closed span
    ticks: tuple[Tick, ...] = ()

    @property
    def duration(self) -> int | None:
        return None if self.end is None or self.shape == POINT else self.end - self.start

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def outcome(self) -> TaskProgressLog:
        """The row that says how the step ended (its error and stack when it failed)."""
        return self.last or self.first


@dataclass(frozen=True, slots=True)
class TaskRun:
    task: str
    steps: tuple[Step, ...]  # in execution order

    @property
    def start(self) -> int:
        return min(s.start for s in self.steps)

    @property
    def end(self) -> int | None:
        """The last known moment of the run; None while one of its steps is open."""
        if any(s.end is None for s in self.steps):
            return None
        return max(s.end for s in self.steps if s.end is not None)

    @property
    def failed(self) -> bool:
        return any(s.failed for s in self.steps)


@dataclass(frozen=True, slots=True)
class Gap:
    start: int
    end: int
    before: str | None  # "Task › Step" that follows the gap; None: the response follows it
    next_step: Step | None = None  # the step that follows it (the page shows the gap just above it)

    @property
    def duration(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class RequestBar:
    row: ApiLog
    start: int
    end: int  # start + duration_ms (start when the duration is unknown)
    runs: tuple[TaskRun, ...] = ()
    gaps: tuple[Gap, ...] = ()
    other_user: bool = False  # signed in as someone else than the trace's first user

    @property
    def gap_before(self) -> dict[int, Gap]:
        """The gap leading to each step that has one, by the id of the step's first row."""
        return {g.next_step.first.id: g for g in self.gaps if g.next_step is not None}

    @property
    def entries(self) -> list[Step | Gap]:
        """Its steps and gaps in time order (a gap before the step it leads to)."""
        items: list[Step | Gap] = [s for run in self.runs for s in run.steps]
        items += self.gaps
        return sorted(items, key=lambda x: (x.start, isinstance(x, Step)))


@dataclass(frozen=True, slots=True)
class Waterfall:
    origin: int  # ms since the epoch of the trace's first moment
    total: int  # length of the axis in ms (at least 1)
    requests: tuple[RequestBar, ...]
    orphan_runs: tuple[TaskRun, ...]  # task runs outside every request's window
    users: tuple[str, ...] = field(default=())  # distinct signed-in users, in order of appearance

    @property
    def mixed_users(self) -> bool:
        return len(self.users) > 1

    @property
    def steps(self) -> list[Step]:
        return [s for r in self.requests for run in r.runs for s in run.steps] + [
            s for run in self.orphan_runs for s in run.steps
        ]


def split_runs(steps: Iterable[TaskProgressLog]) -> list[list[TaskProgressLog]]:
    """Task rows (in time order) -> runs: per task name, a new run when execution_order stops growing."""
    runs: list[list[TaskProgressLog]] = []
    current: dict[str, list[TaskProgressLog]] = {}
    for row in steps:
        run = current.get(row.task_name)
        if run is None or row.execution_order <= run[-1].execution_order:
            run = []
            runs.append(run)
            current[row.task_name] = run
        run.append(row)
    return runs


class _Open:
    __slots__ = ("row", "start", "ticks")

    def __init__(self, row: TaskProgressLog, start: int) -> None:
        self.row, self.start, self.ticks = row, start, []


def pair_run(rows: Sequence[TaskProgressLog], at: dict[int, int]) -> TaskRun:
    """One run's rows -> its steps in execution order. `at` maps row id -> ms from the origin."""
    ordered = sorted(rows, key=lambda r: (r.execution_order, at[r.id], r.id))
    open_by_name: dict[str, list[_Open]] = {}
    done: list[tuple[int, Step]] = []  # (execution_order of the first row, step)
    for row in ordered:
        t = at[row.id]
        stack = open_by_name.setdefault(row.step_name, [])
        if row.status == START:
            stack.append(_Open(row, t))
        elif row.status == IN_PROGRESS and stack:
            stack[-1].ticks.append(Tick(t, row))
        elif row.status in (SUCCESS, FAILED) and stack:
            o = stack.pop()
            done.append((o.row.execution_order, Step(
                task=row.task_name, name=row.step_name, shape=SPAN, status=row.status,
                start=o.start, end=max(t, o.start), first=o.row, last=row, ticks=tuple(o.ticks),
            )))
        else:  # a one-row record, or a tick / end row with nothing open to attach to
            done.append((row.execution_order, Step(
                task=row.task_name, name=row.step_name, shape=POINT, status=row.status,
                start=t, end=t, first=row,
            )))
    for stack in open_by_name.values():
        for o in stack:
            done.append((o.row.execution_order, Step(
                task=o.row.task_name, name=o.row.step_name, shape=OPEN_SPAN, status=OPEN,
                start=o.start, end=None, first=o.row, ticks=tuple(o.ticks),
            )))
    done.sort(key=lambda d: (d[0], d[1].start))
    return TaskRun(task=ordered[0].task_name, steps=tuple(s for _, s in done))


def gaps_of(start: int, end: int, runs: Sequence[TaskRun], total: int) -> list[Gap]:
    """Stretches of a request's window in which no step of its runs was under way."""
    if not runs:
        return []
    threshold = max(MIN_GAP_MS, GAP_SHARE * (end - start))
    steps = sorted((s for run in runs for s in run.steps), key=lambda s: (s.start, s.end is None))
    gaps: list[Gap] = []
    covered_to = start
    for s in steps:
        # a run is placed with a little slack around the window: its gap stops at the response
        if min(s.start, end) - covered_to >= threshold:
            gaps.append(Gap(covered_to, min(s.start, end), f"{s.task} › {s.name}", s))
        covered_to = max(covered_to, s.end if s.end is not None else total)
    if end - covered_to >= threshold:
        gaps.append(Gap(covered_to, end, None))
    return gaps


def build(api: Sequence[ApiLog], steps: Sequence[TaskProgressLog]) -> Waterfall:
    """Every row of one trace -> the waterfall (requests in time order, each with its task runs)."""
    times = {("api", r.id): epoch_ms(r.created_at) for r in api}
    times.update({("step", s.id): epoch_ms(s.created_at) for s in steps})
    known = [t for t in times.values() if t is not None]
    origin = min(known, default=0)
    # A row whose time cannot be read sits at the origin rather than breaking the page.
    rel = {k: (t - origin if t is not None else 0) for k, t in times.items()}

    bars = sorted(
        ((rel["api", r.id], rel["api", r.id] + max(r.duration_ms or 0, 0), r) for r in api),
        key=lambda b: (b[0], b[2].id),
    )
    step_at = {s.id: rel["step", s.id] for s in steps}
    ordered_steps = sorted(steps, key=lambda s: (step_at[s.id], s.execution_order, s.id))
    runs = [pair_run(run, step_at) for run in split_runs(ordered_steps)]

    ends = [end for _, end, _ in bars] + list(step_at.values())
    total = max(max(ends, default=0), 1)

    placed: dict[int, list[TaskRun]] = {}
    orphans: list[TaskRun] = []
    for run in runs:
        home = None
        for i, (start, end, _) in enumerate(bars):  # the latest request whose window holds the run's start
            if start - WINDOW_SLACK_MS <= run.start <= end + WINDOW_SLACK_MS:
                home = i
        if home is None:
            orphans.append(run)
        else:
            placed.setdefault(home, []).append(run)

    users: list[str] = []
    for _, _, r in bars:
        if r.user_id is not None and r.user_id not in users:
            users.append(r.user_id)
    requests = []
    for i, (start, end, row) in enumerate(bars):
        mine = sorted(placed.get(i, []), key=lambda run: (run.start, run.steps[0].first.id))
        requests.append(RequestBar(
            row=row, start=start, end=end, runs=tuple(mine), gaps=tuple(gaps_of(start, end, mine, total)),
            other_user=bool(users) and row.user_id is not None and row.user_id != users[0],
        ))
    orphans.sort(key=lambda run: (run.start, run.steps[0].first.id))
    return Waterfall(origin=origin, total=total, requests=tuple(requests), orphan_runs=tuple(orphans), users=tuple(users))
