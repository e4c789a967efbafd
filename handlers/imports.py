"""Bulk CSV import with live progress, and CSV export of the user's items.

The import runs inside the upload request (Cloud Run gives CPU only during requests) as the
task "Bulk_Import" of that request's trace, with steps Validation → Transform → DB_Commit.
Progress is read back from those task rows in the log database, so a poll that lands on
another instance still sees it.
"""

from __future__ import annotations

import logging
import uuid

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from handlers._web import current_session, login_redirect, render
from store.base import AuthError, ItemInput, StoreUnavailable
from store.items_csv import Rejected, count_lines, export_rows, iter_import

TASK = "Bulk_Import"
CHUNK = 5000
# Share of the bar each step fills: validation is the slow part of an import.
STEP_SPAN = {"Validation": (0, 50), "Transform": (50, 60), "DB_Commit": (60, 100)}
MAX_REJECTED_SHOWN = 200
# Failures the app already turns into their own pages (503, 403, back to login).
APP_HANDLED = (StoreUnavailable, PermissionError, AuthError)

logger = logging.getLogger("handlers.imports")


class FileRejected(Exception):
    """The whole file is unusable (empty, no header, too many rows): Validation fails with it."""


class Progress(msgspec.Struct, frozen=True):
    percent: int | None  # None: unknown (logging off or nothing recorded yet)
    label: str
    done: bool = False
    failed: bool = False
    poll: bool = True  # False: no task rows will ever show up here, so polling is pointless


# Logging off (or no log DB to read): the bar stays indeterminate until the upload's response
# replaces it, and it stops polling at once instead of asking every 300 ms for nothing.
NO_PROGRESS = Progress(None, "Importing…", poll=False)


def progress_from_row(row: dict | None) -> Progress:
    """The bar's state from the newest task row of the import (pure)."""
    if row is None:
        return Progress(None, "Starting…")
    step, status = row["step_name"], row["status"]
    low, high = STEP_SPAN.get(step, (0, 100))
    if status == "FAILED":
        return Progress(low, f"{step} failed", done=True, failed=True)
    if status == "SUCCESS":
        return Progress(high, "Done" if step == "DB_Commit" else f"{step} done", done=step == "DB_Commit")
    if status == "IN_PROGRESS":
        try:
            data = msgspec.json.decode(row["output_data"] or "{}")
            fraction = min(1.0, data["done"] / max(1, data["total"]))
        except (msgspec.DecodeError, KeyError, TypeError):
            fraction = 0.0
        return Progress(low + round((high - low) * fraction), f"{step}…")
    return Progress(low, f"{step}…")


def _page_context(request: Request, **extra) -> dict:
    return {"import_trace_id": str(uuid.uuid4()), "result": None, "errors": {}, **extra}


async def import_page(request: Request) -> Response:
    if current_session(request) is None:
        return login_redirect(request)
    return render(request, "import.html", _page_context(request))


async def _validate(step, data: bytes, throttle: float) -> tuple[list[ItemInput], list[Rejected]]:
    total = count_lines(data)
    valid: list[ItemInput] = []
    rejected: list[Rejected] = []
    for n, result in enumerate(iter_import(data), 1):
        if isinstance(result, str):
            raise FileRejected(result)
        (valid if isinstance(result, ItemInput) else rejected).append(result)
        if n % CHUNK == 0:
            step.progress({"done": n, "total": total})
            await anyio.sleep(throttle)  # also yields, so polls and log flushes get served
    # A last count even for small files (every step's trace shows its counts); the total is
    # exact now, where the line count above was an estimate.
    rows = len(valid) + len(rejected)
    if rows % CHUNK or not rows:
        step.progress({"done": rows, "total": rows})
    step.output = {"valid": len(valid), "rejected": len(rejected)}
    return valid, rejected


async def import_items(request: Request) -> Response:
    session = current_session(request)
    if session is None:
        return login_redirect(request)
    form = await request.form(max_files=1, max_fields=5)
    try:
        upload, strict = form.get("file"), form.get("strict") == "on"
        data = await upload.read() if upload is not None and not isinstance(upload, str) else b""
        filename = getattr(upload, "filename", "") or ""
    finally:
        await form.close()
    if not data:
        context = _page_context(request, errors={"file": "Choose a CSV file to import."})
        return render(request, "import.html", context, status=422, block="import_panel")

    try:
        result = await _run_import(request, session, data, filename, strict)
    except FileRejected as err:
        context = _page_context(request, errors={"file": str(err)})
        return render(request, "import.html", context, status=422, block="import_panel")
    except APP_HANDLED:
        raise
    except Exception:
        # The task rows already hold the failing step with its traceback; the user gets a
        # plain message with the reference to find them, never the traceback itself.
        trace_id = request.state.trace_id
        logger.exception("import failed (trace %s)", trace_id)
        context = {"message": "The import failed and no items were saved.", "reference": trace_id}
        return render(request, "error.html", context, status=500, block="error")
    imported = result["imported"]
    toast = f"Imported {imported:,} item{'s' * (imported != 1)}."
    return render(request, "import.html", _page_context(request, result=result), block="import_panel", toast=toast)


async def _run_import(request: Request, session, data: bytes, filename: str, strict: bool) -> dict:
    """The Bulk_Import task: Validation → Transform → DB_Commit, each step tracked."""
    state = request.state
    throttle = state.settings.import_throttle_ms / 1000
    tracker = state.tracing.task(state.trace_id, TASK)
    async with tracker.step("Validation", input={"file": filename, "bytes": len(data), "strict": strict}) as step:
        valid, rejected = await _validate(step, data, throttle)

    refused = strict and bool(rejected)
    async with tracker.step("Transform", input={"rows": len(valid)}) as step:
        rows = [] if refused else valid
        step.progress({"done": len(rows), "total": len(valid)})
        step.output = {"rows": len(rows), "strict_refused": refused}
    async with tracker.step("DB_Commit", input={"rows": len(rows)}) as step:
        imported = await state.store.create_items(
            session, rows, progress=lambda done: step.progress({"done": done, "total": len(rows)})
        )
        step.output = {"imported": imported}
    return {
        "imported": imported,
        "rejected": rejected[:MAX_REJECTED_SHOWN],
        "rejected_total": len(rejected),
        "strict_refused": refused,
    }


async def import_progress(request: Request) -> Response:
    trace_id = request.query_params.get("trace_id", "")
    try:
        trace_id = str(uuid.UUID(trace_id))
    except ValueError:
        return Response("<p role=\"alert\">Unknown import.</p>", status_code=400, media_type="text/html")
    reader = request.state.tracing.reader
    # Task rows reach the log database only through its sink; with logging off (or CSV only)
    # there is nothing to ask.
    if current_session(request) is None or not reader.written:
        progress = NO_PROGRESS
    else:
        try:
            row = await reader.last_step(trace_id, TASK)
        except Exception as exc:
            # The bar is a nicety polled every 300 ms: an unreachable log database must not
            # turn it into a stream of 500s. The bar goes indeterminate and keeps asking.
            logger.warning("import progress unavailable: %s", exc)
            row = None
        progress = progress_from_row(row)
    # 286 tells htmx to stop polling: the import has finished, or there is nothing to follow.
    status = 286 if progress.done or not progress.poll else 200
    return render(
        request, "import.html", {"progress": progress, "import_trace_id": trace_id},
        status=status, block="import_progress", partial=True,
    )


async def export_items(request: Request) -> Response:
    session = current_session(request)
    if session is None:
        return login_redirect(request)
    store = request.state.store

    async def lines():
        page = 1
        while True:
            batch = await store.list_items(session, "", page, 1000)
            for chunk in export_rows(batch.items, header=page == 1):
                yield chunk.encode()
            if page >= batch.pages:
                return
            page += 1

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="items.csv"'},
    )


routes = [
    Route("/items/import", import_page, methods=["GET"]),
    Route("/items/import", import_items, methods=["POST"]),
    Route("/items/import/progress", import_progress, methods=["GET"]),
    Route("/items/export.csv", export_items, methods=["GET"]),
]
