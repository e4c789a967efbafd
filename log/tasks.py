"""Make a TaskTracker per task run, bound to the app's emitter, id source and redaction.

Handlers get one from `request.state.tasks.tracker(trace_id, task_name)`; the factory itself
is built once in the lifespan, so no handler knows about sinks or ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from log.core.rows import TaskProgressLog
from log.tracker import TaskTracker


class TaskFactory:
    def __init__(
        self,
        *,
        emit: Callable[[TaskProgressLog], None],
        next_id: Callable[[], int],
        redact: Callable[[object], object],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.emit = emit
        self.next_id = next_id
        self.redact = redact
        self.clock = clock

    def tracker(self, trace_id: str, task_name: str) -> TaskTracker:
        return TaskTracker(
            trace_id, task_name, emit=self.emit, next_id=self.next_id, clock=self.clock, redact=self.redact
        )
