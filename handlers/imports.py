"""Bulk CSV import with live progress, and CSV export of the user's items.

The import runs inside the upload request (Cloud Run gives CPU only during requests) as the
task "Bulk_Import" of that request's trace, with steps Validation → Transform → DB_Commit.
Progress is read back from those task rows in the log database, so a poll that lands on
another instance still sees it.
"""

from __future__ import annotations

import uuid

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from handlers._web import current_session, login_redirect, render
from store.base import ItemInput
from store.items_csv import Rejected, count_lines, export_rows, iter_import

TASK = "Bulk_Import"
CHUNK = 5000
# Share of the bar each step fills: validation is the slow part of an import.
STEP_SPAN = {"Validation": (0, 50), "Transform": (50, 60), "DB_Commit": (60, 100)}
MAX_REJECTED_SHOWN = 200


class Progress(msgspec.Struct, frozen=True):
    percent: int | None  # None: unknown (logging off or nothing recorded yet)
    label: str
    done: bool = False
    failed: bool = False


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


async def _validate(step, data: bytes, throttle: float) -> tuple[list[ItemInput], list[Rejected], str | None]:
    total = count_lines(data)
    valid: list[ItemInput] = []
    rejected: list[Rejected] = []
    for n, result in enumerate(iter_import(data), 1):
        if isinstance(result, str):
            return [], [], result
        (valid if isinstance(result, ItemInput) else rejected).append(result)
        if n % CHUNK == 0:
            step.progress({"done": n, "total": total})
            await anyio.sleep(throttle)  # also yields, so polls and log flushes get served
    step.output = {"valid": len(valid), "rejected": len(rejected)}
    return valid, rejected, None


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

    state = request.state
    throttle = state.settings.import_throttle_ms / 1000
    tracker = state.tasks.tracker(state.trace_id, TASK)
    async with tracker.step("Validation", input={"file": filename, "bytes": len(data), "strict": strict}) as step:
        valid, rejected, error = await _validate(step, data, throttle)
    if error:
        context = _page_context(request, errors={"file": error})
        return render(request, "import.html", context, status=422, block="import_panel")

    refused = strict and bool(rejected)
    async with tracker.step("Transform", input={"rows": len(valid)}) as step:
        rows = [] if refused else valid
        step.output = {"rows": len(rows), "strict_refused": refused}
    async with tracker.step("DB_Commit", input={"rows": len(rows)}) as step:
        imported = await state.store.create_items(
            session, rows, progress=lambda done: step.progress({"done": done, "total": len(rows)})
        )
        step.output = {"imported": imported}
    result = {
        "imported": imported,
        "rejected": rejected[:MAX_REJECTED_SHOWN],
        "rejected_total": len(rejected),
        "strict_refused": refused,
    }
    toast = f"Imported {imported:,} item{'s' * (imported != 1)}."
    return render(request, "import.html", _page_context(request, result=result), block="import_panel", toast=toast)


async def import_progress(request: Request) -> Response:
    trace_id = request.query_params.get("trace_id", "")
    try:
        trace_id = str(uuid.UUID(trace_id))
    except ValueError:
        return Response("<p role=\"alert\">Unknown import.</p>", status_code=400, media_type="text/html")
    log_db = getattr(request.state, "log_db", None)
    row = None
    if log_db is not None and current_session(request) is not None:
        rows = await log_db.select(
            "SELECT step_name, status, output_data FROM task_progress_logs"
            " WHERE trace_id = ? AND task_name = ? ORDER BY execution_order DESC LIMIT 1",
            [trace_id, TASK],
        )
        row = rows[0] if rows else None
    progress = progress_from_row(row)
    # 286 tells htmx to stop polling: the import has finished.
    status = 286 if progress.done else 200
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
