"""SVG tracks of the trace waterfall: one small SVG per row, pure functions, data in, markup out.

Each row of the waterfall (a request, a task run, a step, a gap) gets a track as wide as its
container; positions are percentages of the trace's axis, so the track stretches to any width
without distorting text or circles, and the page never needs a horizontal scrollbar. The
duration is written beside its bar (to the right, or to the left when the bar ends near the
edge, or inside a bar that fills the track). Colours are DaisyUI text classes on currentColor,
as in charts.py; no inline style (the CSP forbids it). The tracks are aria-hidden: the row's
own text and the table under the waterfall carry the same facts.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from log.core.rows import FAILED, SUCCESS
from log.explorer.spans import OPEN_SPAN, POINT, Gap, RequestBar, Step, Tick, TaskRun

HEIGHT = 20
MAX_TICKS = 200  # ticks drawn per span (a long import may have thousands of progress rows)
MIN_WIDTH_PCT = 0.3  # a zero-length bar stays visible
GRID = (25, 50, 75)

STATUS_COLOR = {SUCCESS: "text-success", FAILED: "text-error"}
OPEN_COLOR = "text-warning"


def ms(value: int | None) -> str:
    return "–" if value is None else f"{value:,} ms"


def _pct(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") + "%"


def pct(at: int, total: int) -> float:
    return min(max(100 * at / max(total, 1), 0.0), 100.0)


def request_color(status: int | None) -> str:
    if status is None:
        return "text-neutral"
    if status >= 500:
        return "text-error"
    if status >= 400:
        return "text-warning"
    return "text-primary"


def step_color(step: Step) -> str:
    if step.shape == OPEN_SPAN:
        return OPEN_COLOR
    return STATUS_COLOR.get(step.status, "text-info")


_GRID_LINES = "".join(
    f'<line x1="{g}%" x2="{g}%" y1="0" y2="{HEIGHT}" stroke="currentColor" stroke-width="1"/>' for g in GRID
)


def _track(kind: str, body: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="block w-full h-5 text-base-content overflow-visible"'
        f' height="{HEIGHT}" aria-hidden="true" focusable="false" data-track="{kind}">'
        f'<g class="opacity-10">{_GRID_LINES}</g>{body}</svg>'
    )


def label_side(x0: float, x1: float) -> str:
    """Where the text of a bar from x0% to x1% goes: right of it, else left of it, else inside."""
    if x1 <= 72:
        return "right"
    if x0 >= 28:
        return "left"
    return "inside"


def _label(x0: float, x1: float, text: str, inside_class: str, y: int = 14) -> str:
    t = escape(text)
    side = label_side(x0, x1)
    if side == "right":
        return f'<text x="{_pct(x1)}" dx="5" y="{y}" font-size="11" fill="currentColor">{t}</text>'
    if side == "left":
        return f'<text x="{_pct(x0)}" dx="-5" y="{y}" font-size="11" fill="currentColor" text-anchor="end">{t}</text>'
    return f'<text x="{_pct(x0)}" dx="5" y="{y}" font-size="11" fill="currentColor" class="{inside_class}">{t}</text>'


def _bar(x0: float, x1: float, color: str, y: int, h: int, extra: str = "") -> str:
    w = max(x1 - x0, MIN_WIDTH_PCT)
    x0 = min(x0, 100 - w)
    return (f'<rect class="{color}" fill="currentColor" x="{_pct(x0)}" y="{y}" width="{_pct(w)}"'
            f' height="{h}" rx="2"{extra}/>')


def request_track(bar: RequestBar, total: int) -> Markup:
    x0, x1 = pct(bar.start, total), pct(bar.end, total)
    color = request_color(bar.row.response_status)
    text = ms(bar.row.duration_ms) if bar.row.duration_ms is not None else "no duration"
    return _track("request", _bar(x0, x1, color, 3, 14) + _label(x0, max(x1, x0 + MIN_WIDTH_PCT), text, f"{color}-content"))


def run_track(run: TaskRun, total: int) -> Markup:
    """A task run's extent, thin, from its first row to its last (to the axis end while a step is open)."""
    x0 = pct(run.start, total)
    x1 = pct(run.end if run.end is not None else total, total)
    text = ms(run.end - run.start) if run.end is not None else "open"
    # a thin bracket low in the track, so a label placed over it stays readable
    return _track("run", _bar(x0, x1, "text-base-content opacity-40", 15, 3) + _label(x0, x1, text, "text-base-content", y=12))


def _ticks(ticks: Sequence[Tick], total: int) -> str:
    seen: set[str] = set()
    out = []
    for tick in ticks:
        x = _pct(round(pct(tick.at, total), 1))
        if x in seen:  # one mark per 0.1 % of the axis is all a screen can show
            continue
        seen.add(x)
        out.append(f'<line x1="{x}" x2="{x}" y1="2" y2="18" stroke="currentColor" stroke-width="1.5"/>')
        if len(out) >= MAX_TICKS:
            break
    return f'<g class="text-base-content opacity-70" data-ticks="{len(ticks)}">{"".join(out)}</g>' if out else ""


def step_track(step: Step, total: int) -> Markup:
    color = step_color(step)
    x0 = pct(step.start, total)
    if step.shape == POINT:
        text = f"at +{ms(step.start)}"
        body = (f'<circle class="{color}" fill="currentColor" cx="{_pct(x0)}" cy="10" r="5"/>'
                + _label(x0, x0 + 1, text, "text-base-content"))
        return _track("point", body)
    if step.shape == OPEN_SPAN:
        x1 = 100.0
        body = (_bar(x0, x1, color, 4, 12, ' fill-opacity="0.35" stroke="currentColor" stroke-dasharray="4 3"')
                + _ticks(step.ticks, total)
                + _label(x0, x1, f"open, ≥ {ms(total - step.start)}", "text-base-content"))
        return _track("open", body)
    x1 = pct(step.end if step.end is not None else step.start, total)
    body = _bar(x0, x1, color, 4, 12) + _ticks(step.ticks, total) + _label(x0, x1, ms(step.duration), f"{color}-content")
    return _track("span", body)


def gap_track(gap: Gap, total: int) -> Markup:
    x0, x1 = pct(gap.start, total), pct(gap.end, total)
    body = (f'<line class="text-base-content opacity-60" x1="{_pct(x0)}" x2="{_pct(x1)}" y1="10" y2="10"'
            f' stroke="currentColor" stroke-width="2" stroke-dasharray="3 3"/>'
            + _label(x0, x1, f"gap {ms(gap.duration)}", "text-base-content"))
    return _track("gap", body)


def axis_labels(total: int) -> list[str]:
    """The axis's labels at 0, 25, 50, 75 and 100 %."""
    return [ms(round(total * g / 100)) for g in (0, *GRID, 100)]


def axis_track(total: int) -> Markup:
    """The time axis: labels at 0, 25, 50, 75 and 100 % of the trace (the middle ones from md up)."""
    anchors = ("start", "middle", "middle", "middle", "end")
    parts = []
    for g, text, anchor in zip((0, *GRID, 100), axis_labels(total), anchors, strict=True):
        hide = ' class="hidden sm:inline"' if g in (25, 75) else ""
        parts.append(f'<text x="{g}%" y="14" font-size="11" fill="currentColor" text-anchor="{anchor}"{hide}>{escape(text)}</text>')
    return _track("axis", "".join(parts))
