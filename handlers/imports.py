"""Bulk CSV import with live progress, and CSV export of the user's items.

The import runs inside the upload request (Cloud Run gives CPU only during requests) as the
task "Bulk_Import" of that request's trace, with steps Validation → Transform → DB_Commit,
each written as task rows to the log sinks. The progress bar reads the import's run in this
process (handlers/import_runs.py), which the import updates alongside its task rows: it works
whatever LOG_SINKS says, and only the user who started the import can follow it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from handlers._web import current_session, login_redirect, render
from handlers.import_runs import ImportRun
from store.base import AuthError, ItemInput, StoreUnavailable
from store.items_csv import Rejected, count_lines, export_rows, header_cells, iter_import, rejected_csv

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
    percent: int | None  # None: unknown (not started here yet)
    label: str
    done: bool = False
    failed: bool = False
    poll: bool = True  # False: nothing to follow (signed out), so polling is pointless


# Signed out: nothing to follow; the bar stops polling at once.
NO_PROGRESS = Progress(None, "Importing…", poll=False)


def progress_of(step: str | None, status: str, done: int = 0, total: int = 0) -> Progress:
    """The bar's state from the import's current step and its counts (pure)."""
    if step is None:
        return Progress(None, "Starting…")
    low, high = STEP_SPAN.get(step, (0, 100))
    if status == "FAILED":
        return Progress(low, f"{step} failed", done=True, failed=True)
    if status == "SUCCESS":
        return Progress(high, "Done" if step == "DB_Commit" else f"{step} done", done=step == "DB_Commit")
    if status == "IN_PROGRESS":
        fraction = min(1.0, done / max(1, total))
        return Progress(low + round((high - low) * fraction), f"{step}…")
    return Progress(low, f"{step}…")


def _page_context(request: Request, **extra) -> dict:
    return {"import_trace_id": str(uuid.uuid4()), "result": None, "errors": {}, **extra}


async def import_page(request: Request) -> Response:
    if current_session(request) is None:
        return login_redirect(request)
    return render(request, "import.html", _page_context(request))


class Tracked:
    """One step of the import, reported twice: as task rows (the log sinks) and on the run
    (the progress bar)."""

    def __init__(self, step, run: ImportRun) -> None:
        self.step, self.run = step, run

    def progress(self, done: int, total: int) -> None:
        self.step.progress({"done": done, "total": total})
        self.run.progress(done, total)

    @property
    def output(self):
        return self.step.output

    @output.setter
    def output(self, value) -> None:
        self.step.output = value


@asynccontextmanager
async def _step(tracker, run: ImportRun, name: str, input: dict) -> AsyncIterator[Tracked]:
    run.begin(name)
    ok = False
    try:
        async with tracker.step(name, input=input) as step:
            yield Tracked(step, run)
        ok = True
    finally:
        run.end(ok)


async def _validate(step: Tracked, data: bytes) -> tuple[list[ItemInput], list[Rejected]]:
    total = count_lines(data)
    valid: list[ItemInput] = []
    rejected: list[Rejected] = []
    for n, result in enumerate(iter_import(data), 1):
        if isinstance(result, str):
            raise FileRejected(result)
        (valid if isinstance(result, ItemInput) else rejected).append(result)
        if n % CHUNK == 0:
            step.progress(n, total)
            await anyio.sleep(0)  # yields, so progress polls and log flushes get served
    # A last count even for small files (every step's trace shows its counts); the total is
    # exact now, where the line count above was an estimate.
    rows = len(valid) + len(rejected)
    if rows % CHUNK or not rows:
        step.progress(rows, rows)
    step.output = {"valid": len(valid), "rejected": len(rejected)}
    return valid, rejected


async def import_items(request: Request) -> Response:
    session = current_session(request)
    if session is None:
        return login_redirect(request)
    runs = request.state.import_runs
    run = runs.start(request.state.trace_id, session.user.id)
    try:
        return await _import(request, session, run)
    finally:
        if run.finished_at is None:
            runs.finish(run)


async def _import(request: Request, session, run: ImportRun) -> Response:
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
        result = await _run_import(request, session, run, data, filename, strict)
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


async def _run_import(request: Request, session, run: ImportRun, data: bytes, filename: str, strict: bool) -> dict:
    """The Bulk_Import task: Validation → Transform → DB_Commit, each step tracked."""
    state = request.state
    tracker = state.tracing.task(state.trace_id, TASK)
    validation = {"file": filename, "bytes": len(data), "strict": strict}
    async with _step(tracker, run, "Validation", validation) as step:
        valid, rejected = await _validate(step, data)

    refused = strict and bool(rejected)
    async with _step(tracker, run, "Transform", {"rows": len(valid)}) as step:
        rows = [] if refused else valid
        step.progress(len(rows), len(valid))
        step.output = {"rows": len(rows), "strict_refused": refused}
    async with _step(tracker, run, "DB_Commit", {"rows": len(rows)}) as step:
        imported = await state.store.create_items(
            session, rows, progress=lambda done: step.progress(done, len(rows))
        )
        step.output = {"imported": imported}
    state.import_runs.finish(run, rejected_csv(header_cells(data), rejected) if rejected else None)
    return {
        "trace_id": state.trace_id,
        "imported": imported,
        "rejected": rejected[:MAX_REJECTED_SHOWN],
        "rejected_total": len(rejected),
        "strict_refused": refused,
    }


def _trace_id(request: Request) -> str | None:
    try:
        return str(uuid.UUID(request.query_params.get("trace_id", "")))
    except ValueError:
        return None


UNKNOWN = "<p role=\"alert\">Unknown import.</p>"


async def import_progress(request: Request) -> Response:
    trace_id = _trace_id(request)
    if trace_id is None:
        return Response(UNKNOWN, status_code=400, media_type="text/html")
    session = current_session(request)
    if session is None:
        progress = NO_PROGRESS
    else:
        runs = request.state.import_runs
        if runs.owned_by_another(trace_id, session.user.id):
            return Response(UNKNOWN, status_code=404, media_type="text/html")
        run = runs.find(trace_id, session.user.id)
        if run is None and request.query_params.get("seen") == "1":
            # The bar has shown this import's progress before, so the import runs in another
            # worker process: 204 leaves the bar as it is (never back to "Starting…") and
            # polling goes on; the next poll may reach the import's process.
            return Response(status_code=204, headers={"Vary": "HX-Request"})
        # Not (yet) known here: the upload has not reached this process, or it runs in another
        # one. Indeterminate, and keep asking: the upload's response ends the polling.
        progress = progress_of(None, "START") if run is None else progress_of(run.step, run.status, run.done, run.total)
    # 286 tells htmx to stop polling: the import has finished, or there is nothing to follow.
    status = 286 if progress.done or not progress.poll else 200
    return render(
        request, "import.html", {"progress": progress, "import_trace_id": trace_id},
        status=status, block="import_progress", partial=True,
    )


async def rejected_rows(request: Request) -> Response:
    """The rejected rows of the user's own recent import, as a CSV to fix and import again."""
    session = current_session(request)
    if session is None:
        return login_redirect(request)
    trace_id = _trace_id(request)
    run = request.state.import_runs.find(trace_id, session.user.id) if trace_id else None
    if run is None or not run.rejected_csv:
        message = "These rejected rows are no longer available: import the file again to list them."
        context = {"title": "Not found", "message": message, "reference": request.state.trace_id}
        return render(request, "error.html", context, status=404, block="error")
    return Response(
        run.rejected_csv,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="rejected-rows.csv"'},
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
    Route("/items/import/rejected.csv", rejected_rows, methods=["GET"]),
    Route("/items/export.csv", export_items, methods=["GET"]),
]
