"""The trace page's rows as HTML: the waterfall's items and the table's rows, pure functions.

Built in Python, one join per page, as charts.py does: as Jinja macros (one call per step, gap
and table row) the page rendered about three times the markup of the event cards it replaced
and cost 2-3 x the old page's time. Every text from a row is escaped with markupsafe.escape
(numbers - ids, statuses, durations - are formatted here); the rest is fixed markup. Classes used here are listed in views/logs_trace.html so
the Tailwind build (which scans views/ only) keeps them; a test checks the built CSS has them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
from markupsafe import Markup, escape

from log.explorer.spans import OPEN_SPAN, POINT, Gap, RequestBar, Step, TaskRun, Waterfall
from log.explorer.waterfall import gap_track, ms, request_track, run_track, step_track

MAX_TICKS_LISTED = 100  # progress rows listed under a step (all of them are counted)
STEP_INDENT = "pl-4 md:pl-6"
NESTED_INDENT = "pl-8 md:pl-10"
ROW_GRID = "grid grid-cols-1 md:grid-cols-[18rem_minmax(0,1fr)] gap-x-3 gap-y-1 items-center py-1 min-w-0"
SUMMARY = "block list-none cursor-pointer rounded hover:bg-base-200 focus-visible:outline-2"
CARET = ('<span class="inline-block w-3 shrink-0 opacity-70 transition-transform group-open:rotate-90"'
         ' aria-hidden="true">▸</span>')
PRE = '<pre class="text-xs whitespace-pre-wrap break-all bg-base-200 rounded p-2 max-h-64 overflow-auto" tabindex="0">'
NUM_TD = '<td class="text-right tabular-nums whitespace-nowrap">'
STEP_BADGE = {"FAILED": "badge-error", "SUCCESS": "badge-success", "START": "badge-ghost", "IN_PROGRESS": "badge-info"}
TABLE_KIND = {"span": "step", "open": "step (open)", "point": "event"}


def pretty(text: str | None) -> str | None:
    """JSON text -> indented JSON; anything else as it is.

    Reformatted, not re-encoded: numbers, string escapes and repeated keys stay as they were
    logged (a body with a key twice shows both). msgspec's formatter is ~15 x faster than
    json.loads + json.dumps(indent=2), which took most of a trace page's time."""
    if text is None:
        return None
    try:
        return msgspec.json.format(text, indent=2)
    except ValueError:  # not JSON (msgspec.DecodeError), or a lone surrogate (UnicodeEncodeError)
        return text


def status_badge(status: int | None) -> str:
    """The HTTP status as a badge (the same markup as the status_badge macro of _logs_status.html)."""
    if status is None:
        return '<span class="badge badge-ghost badge-sm">none</span>'
    color = "badge-error" if status >= 500 else "badge-warning" if status >= 400 else "badge-info" if status >= 300 else "badge-success"
    return f'<span class="badge {color} badge-sm" data-status="{status:d}">{status:d}</span>'


def step_badge(status: str) -> str:
    """A task row's status as a badge (the same markup as the step_badge macro)."""
    return f'<span class="badge badge-sm {STEP_BADGE.get(status, "badge-ghost")}">{escape(status)}</span>'


def _grid(indent: str, label: str, track: str) -> str:
    return (f'<span class="{ROW_GRID}"><span class="{f"block min-w-0 {indent}".rstrip()}">{label}</span>'
            f'<span class="block min-w-0 overflow-hidden">{track}</span></span>')


def _pres(pairs: Sequence[tuple[str, str | None]]) -> str:
    return "".join(f' <p class="text-xs font-semibold">{label}</p> {PRE}{escape(pretty(text))}</pre>'
                   for label, text in pairs if text is not None)


# A space stands wherever the markup breaks a line between two elements (as the template did):
# it keeps words apart in the text (a row's accessible name, "PUT /items/1"), and a browser
# collapses any run of it.


def step_item(s: Step, total: int, indent: str = STEP_INDENT, nested: bool = False) -> str:
    """One step: its row (badge, name, track) with its details (error, stack, ticks, data) folded under it."""
    out = s.outcome
    badge = '<span class="badge badge-sm badge-warning">open</span>' if s.shape == OPEN_SPAN else step_badge(s.status)
    if s.shape == POINT:
        said = f", one row at +{ms(s.start)}"
    elif s.shape == OPEN_SPAN:
        said = f", started at +{ms(s.start)}, no end row"
    else:
        said = f", {ms(s.duration)} from +{ms(s.start)}"
    label = (
        f' <span class="flex items-center gap-2 min-w-0"> {CARET} {badge}'
        f' <span class="truncate"><span class="{"sr-only" if nested else "opacity-80 text-sm"}">{escape(s.task)} ›</span>'
        f' <span class="font-semibold">{escape(s.name)}</span></span>'
        f' <span class="sr-only">{said}</span> </span> '
    )
    parts = [
        f' <li class="{"bg-error/10 rounded-box" if s.failed else ""}" data-kind="step" data-shape="{s.shape}"'
        f' data-status="{escape(s.status)}"> <details class="group"{" open" if s.failed else ""}>'
        f' <summary class="{SUMMARY}"> {_grid(indent, label, step_track(s, total))} </summary>'
        f' <div class="{indent} pr-1 pb-2 flex flex-col gap-1">'
    ]
    if s.shape == OPEN_SPAN:
        parts.append(' <p class="text-xs">No end row: still running, or cut off (a process that ended is closed as'
                     ' “interrupted” at its next start).</p>')
    if s.failed:
        parts.append(
            ' <div class="flex flex-col gap-1" data-testid="failed-step">'
            f' <p class="alert alert-error font-semibold break-words" role="alert">{escape(s.task)} › {escape(s.name)}:'
            f' {escape(out.error_message or "Failed (no message)")}</p>'
        )
        if out.stack_trace:
            parts.append(
                ' <p class="text-xs font-semibold">Stack trace</p> <pre class="text-xs whitespace-pre-wrap break-words'
                f' bg-base-100 border border-error rounded p-2" data-testid="stack-trace">{escape(out.stack_trace)}</pre>'
            )
        parts.append(" </div>")
    last = f" → {escape(s.last.created_at)} · row {s.last.id}" if s.last else ""
    parts.append(f' <p class="text-xs font-mono break-all">{escape(s.first.created_at)} · row {s.first.id}{last}</p>')
    if s.ticks:
        n = len(s.ticks)
        listed = "".join(
            f'<li data-kind="tick"><span class="tabular-nums">+{ms(t.at)}</span>'
            f' <span class="break-all">{escape(t.row.output_data or "–")}</span></li>'
            for t in s.ticks[:MAX_TICKS_LISTED]
        )
        more = f' <p class="text-xs mt-1">The first {MAX_TICKS_LISTED} of {n}.</p>' if n > MAX_TICKS_LISTED else ""
        parts.append(
            f' <div data-testid="ticks"> <p class="text-xs font-semibold">{n} progress update{"s" if n != 1 else ""}</p>'
            f' <ol class="text-xs font-mono flex flex-col"> {listed} </ol>{more} </div>'
        )
    parts.append(_pres((("Input", s.first.input_data), ("Output", out.output_data))))
    parts.append(" </div> </details> </li>")
    return "".join(parts)


def gap_row(gap: Gap, total: int, indent: str = STEP_INDENT) -> str:
    label = (f'<span class="text-xs italic">no step running<span class="sr-only"> for {ms(gap.duration)},'
             f' before {escape(gap.before or "the response")}</span></span>')
    return f'<li data-kind="gap">{_grid(indent, label, gap_track(gap, total))}</li>'


def runs_list(runs: Sequence[TaskRun], total: int, gaps: Mapping[int, Gap]) -> str:
    """A request's task runs: a run of several steps as a task row with its steps nested under it."""
    parts = ['<ol class="flex flex-col">']
    for run in runs:
        first = run.steps[0]
        if first.first.id in gaps:
            parts.append(" " + gap_row(gaps[first.first.id], total))
        if len(run.steps) > 1:
            took = f", {ms(run.end - run.start)}" if run.end is not None else ""
            label = (f'<span class="text-sm"><span class="font-semibold">{escape(run.task)}</span>'
                     f' · {len(run.steps)} steps{took}</span>')
            parts.append(f' <li data-kind="task" data-task="{escape(run.task)}"> <div>'
                         f' {_grid(STEP_INDENT, label, run_track(run, total))} </div> <ol class="flex flex-col">')
            for i, s in enumerate(run.steps):
                if i and s.first.id in gaps:
                    parts.append(gap_row(gaps[s.first.id], total, NESTED_INDENT))
                parts.append(step_item(s, total, NESTED_INDENT, nested=True))
            parts.append("</ol> </li>")
        else:
            parts.append(" " + step_item(first, total))
    parts.append(" </ol>")
    return "".join(parts)


def _user(emails: Mapping[str, str], user_id: str) -> str:
    return escape(emails.get(user_id, user_id))


def request_item(bar: RequestBar, total: int, emails: Mapping[str, str]) -> str:
    """One request of the trace: its bar and details, then its task runs and the gap before its response."""
    r = bar.row
    if r.user_id:
        mono = "" if emails.get(r.user_id) else "font-mono"
        who = f'user <span class="{mono} break-all" data-testid="request-user">{_user(emails, r.user_id)}</span>'
    else:
        who = "signed out"
    other = ' <span class="badge badge-warning badge-sm" data-testid="other-user">different user</span>' if bar.other_user else ""
    label = (
        f' <span class="flex items-center gap-2 min-w-0"> {CARET} {status_badge(r.response_status)}'
        f' <span class="font-semibold">{escape(r.method)}</span>'
        f' <span class="font-mono text-sm truncate" title="{escape(r.endpoint)}">{escape(r.endpoint)}</span>'
        f' <span class="sr-only">, {ms(r.duration_ms)} from +{ms(bar.start)}</span> </span>'
        f' <span class="text-xs flex flex-wrap items-center gap-x-2 pl-5"> <span>+{ms(bar.start)}</span>'
        f" <span>{who}</span>{other} </span> "
    )
    parts = [
        f'<li data-kind="request" data-id="{r.id}" data-user="{escape(r.user_id or "")}"> <details class="group">'
        f' <summary class="{SUMMARY}"> {_grid("", label, request_track(bar, total))} </summary>'
        ' <div class="pl-5 pr-1 pb-2 flex flex-col gap-1">'
        f' <p class="text-xs font-mono break-all">{escape(r.created_at)} · row {r.id} · route {escape(r.route or "–")}'
        f' · ip {escape(r.ip_address or "–")}</p>',
        _pres((("Request headers", r.request_header), ("Request body", r.request_body), ("Response body", r.response_body))),
        " </div> </details> ",
    ]
    if bar.runs:
        parts.append(runs_list(bar.runs, total, bar.gap_before))
    if bar.gaps and bar.gaps[-1].next_step is None:
        parts.append(f" <ol>{gap_row(bar.gaps[-1], total)}</ol>")
    parts.append(" </li>")
    return "".join(parts)


def waterfall_items(wf: Waterfall, emails: Mapping[str, str]) -> Markup:
    """The waterfall list's items: each request with its runs, then task rows outside every request."""
    parts = [request_item(bar, wf.total, emails) for bar in wf.requests]
    if wf.orphan_runs:
        parts.append(
            '<li data-kind="orphans"> <p class="text-sm py-1"><span class="font-semibold">Task rows outside every logged'
            " request</span> (a request still running has no row yet: it is written with its response)</p>"
            f" {runs_list(wf.orphan_runs, wf.total, {})} </li>"
        )
    return Markup(" ".join(parts))


def step_tr(s: Step) -> str:
    took = ms(s.duration) if s.shape == "span" else ("no end row" if s.shape == OPEN_SPAN else "–")
    return (f'<tr data-row="step"><td>{TABLE_KIND[s.shape]}</td><td>{escape(s.task)} › {escape(s.name)}</td>'
            f"<td>{escape(s.status)}</td> {NUM_TD}+{ms(s.start)}</td>{NUM_TD}{took}</td><td></td></tr>")


def table_rows(wf: Waterfall, emails: Mapping[str, str]) -> Markup:
    """The waterfall as table rows (its text alternative): requests, each followed by its steps and gaps."""
    parts = []
    for bar in wf.requests:
        r = bar.row
        who = _user(emails, r.user_id) if r.user_id else "signed out"
        parts.append(
            f'<tr data-row="request"><td>request</td><td class="font-mono break-all">{escape(r.method)} {escape(r.endpoint)}</td>'
            f"<td>{r.response_status or '–'}</td> {NUM_TD}+{ms(bar.start)}</td>{NUM_TD}{ms(r.duration_ms)}</td>"
            f' <td class="break-all">{who}{" (different user)" if bar.other_user else ""}</td></tr>'
        )
        for e in bar.entries:
            if isinstance(e, Step):
                parts.append(step_tr(e))
            else:
                parts.append(
                    f'<tr data-row="gap"><td>gap</td><td>no step running, before {escape(e.before or "the response")}</td>'
                    f"<td>–</td>{NUM_TD}+{ms(e.start)}</td>{NUM_TD}{ms(e.duration)}</td><td></td></tr>"
                )
    parts.append("".join(step_tr(s) for run in wf.orphan_runs for s in run.steps))
    return Markup(" ".join(parts))
