"""Request and task tracing for any ASGI app (Starlette, FastAPI, ...).

Every HTTP request becomes one `api_logs` row and every step of multi-step work
`task_progress_logs` rows, linked by `trace_id`, written to CSV, stdout (Cloud Logging) and a
log database (Turso over HTTP, or a `file:` SQLite database) without slowing requests down.

    from log import Tracing, TracingConfig, TracingMiddleware

    tracing = Tracing(TracingConfig.from_env(os.environ))
    app = Starlette(routes=..., middleware=[Middleware(TracingMiddleware, tracing=tracing)],
                    lifespan=tracing.lifespan)

    async def handler(request):
        task = tracing.task(request.state.trace_id, "Bulk_Import")
        async with task.step("Validation", input={...}) as step:
            step.output = {...}

The names below are the package's public surface; its subpackages are its inside.
"""

from log import explorer
from log.asgi import PathPrefixes, TracingMiddleware, client_ip
from log.config import ConfigError, TracingConfig, parse_bool
from log.core.rows import ApiLog, TaskProgressLog
from log.db.errors import LogDatabaseError
from log.diagnostics import CloudJsonFormatter, configure_process_logging
from log.tasks import Step, TaskTracker
from log.tools import export_logs, prune_logs, sync_logs
from log.tracing import Tracing

__all__ = [
    "ApiLog",
    "CloudJsonFormatter",
    "ConfigError",
    "LogDatabaseError",
    "PathPrefixes",
    "Step",
    "TaskProgressLog",
    "TaskTracker",
    "Tracing",
    "TracingConfig",
    "TracingMiddleware",
    "client_ip",
    "configure_process_logging",
    "explorer",
    "parse_bool",
    "export_logs",
    "prune_logs",
    "sync_logs",
]
