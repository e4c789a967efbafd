"""Explicit step tracking for multi-step work: one TaskTracker per task run.

    tracker = tracing.task(trace_id, "Bulk_Import")
    async with tracker.step("Validation", input={"rows": 10}) as step:
        step.progress({"checked": 5})
        step.output = {"valid": 10}

writes START, IN_PROGRESS, SUCCESS rows (or FAILED with the error and traceback, and the
exception propagates). `execution_order` counts every row of the run (of this tracker),
1, 2, 3, ... so rows sort into the order they happened even when created_at ties. A plain
`with` works the same for synchronous code.

Work that is one event, not a span, is one row:

    tracing.task(trace_id, "Item_Update").record("DB_Commit", "SUCCESS", input=..., output=...)

Logging must never break the task: emit() and redact() failures are counted in
`emit_errors` / `redact_errors`, and JSON encoding falls back to str() for unknown types.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from log.core.build import task_row
from log.core.rows import FAILED, IN_PROGRESS, START, SUCCESS, TASK_STATUSES, TaskProgressLog


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _identity(value: object) -> object:
    return value


class TaskTracker:
    def __init__(
        self,
        trace_id: str,
        task_name: str,
        *,
        emit: Callable[[TaskProgressLog], None],
        next_id: Callable[[], int],
        clock: Callable[[], float] = time.time,
        redact: Callable[[object], object] = _identity,
    ) -> None:
        self.trace_id = trace_id
        self.task_name = task_name
        self._emit = emit
        self._next_id = next_id
        self._clock = clock
        self._redact = redact
        self._order = 0
        self.emit_errors = 0
        self.redact_errors = 0

    def step(self, name: str, input: object = None) -> Step:
        """A context manager (async or sync) that logs one step of this task run."""
        return Step(self, name, input)

    def record(
        self,
        step: str,
        status: str,
        *,
        input: object = None,
        output: object = None,
        error: BaseException | str | None = None,
    ) -> None:
        """One row for a step that is a single event: no START, just its outcome.

        `error` is an exception (its text and traceback are kept) or a message. An unknown
        `status` is the caller's bug and raises ValueError; anything else is never raised.
        """
        if status not in TASK_STATUSES:
            raise ValueError(f"status must be one of {sorted(TASK_STATUSES)}, got {status!r}")
        if isinstance(error, BaseException):
            message: str | None = error_text(error)
            stack: str | None = "".join(traceback.format_exception(error))
        else:
            message, stack = error, None
        self._write(step, status, input=input, output=output, error_message=message, stack_trace=stack)

    def _redact_failed(self) -> None:
        self.redact_errors += 1

    def _write(self, step: str, status: str, **fields: Any) -> None:
        self._order += 1
        row = task_row(
            row_id=self._next_id(),
            trace_id=self.trace_id,
            task_name=self.task_name,
            step_name=step,
            status=status,
            at=self._clock(),
            redact=self._redact,
            input_data=fields.get("input"),
            output_data=fields.get("output"),
            error_message=fields.get("error_message"),
            stack_trace=fields.get("stack_trace"),
            execution_order=self._order,
            on_redact_error=self._redact_failed,
        )
        try:
            self._emit(row)
        except Exception:
            self.emit_errors += 1


class Step:
    """One step in flight. Set `output` before the block ends; call `progress()` any time."""

    def __init__(self, tracker: TaskTracker, name: str, input: object) -> None:
        self._tracker = tracker
        self.name = name
        self.input = input
        self.output: object = None

    def progress(self, data: object) -> None:
        """An IN_PROGRESS row carrying `data` as its output_data."""
        self._tracker._write(self.name, IN_PROGRESS, output=data)

    def __enter__(self) -> Step:
        self._tracker._write(self.name, START, input=self.input)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None:
            self._tracker._write(self.name, SUCCESS, output=self.output)
        else:
            self._tracker._write(
                self.name,
                FAILED,
                output=self.output,
                error_message=error_text(exc),
                stack_trace="".join(traceback.format_exception(exc)),
            )
        return False  # never swallow: the caller's exception propagates unchanged

    async def __aenter__(self) -> Step:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self.__exit__(exc_type, exc, tb)
