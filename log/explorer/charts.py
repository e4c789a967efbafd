"""Server-rendered SVG charts for the log overview: pure functions, data in, markup out.

No JavaScript and no chart library. Colours come from the theme: every shape is filled with
`currentColor` and carries a DaisyUI text colour class (text-success, text-error, ...), so the
charts follow the light and dark themes; no inline style attributes (the CSP forbids them).
Every chart is role="img" with a <title> and <desc>; the page shows the same numbers as a table.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

# status class (response_status // 100; 0 = no status) -> (label, DaisyUI colour class)
CLASS_STYLE: dict[int, tuple[str, str]] = {
    0: ("no status", "text-neutral"),
    1: ("1xx", "text-base-content"),
    2: ("2xx", "text-success"),
    3: ("3xx", "text-info"),
    4: ("4xx", "text-warning"),
    5: ("5xx", "text-error"),
}


def class_label(cls: int) -> str:
    return CLASS_STYLE.get(cls, (f"{cls}xx", ""))[0]


def class_color(cls: int) -> str:
    return CLASS_STYLE.get(cls, ("", "text-base-content"))[1]


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _svg(chart_id: str, title: str, desc: str, width: int, height: int, body: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="w-full h-auto text-base-content"'
        f' role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" preserveAspectRatio="xMidYMid meet">'
        f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(desc)}</desc>'
        f"{body}</svg>"
    )


def _chart_id(prefix: str) -> str:
    # Several charts on one page need distinct ids for aria-labelledby; a random suffix keeps
    # the function free of counters (the markup is otherwise a pure function of its input).
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def nice_max(value: int) -> int:
    """A round axis maximum >= value (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def requests_chart(
    buckets: Sequence[tuple[dt.datetime, Mapping[int, int]]], bucket_minutes: int, *, chart_id: str | None = None
) -> Markup:
    """Stacked bars: requests per time bucket, split by status class (5xx on top)."""
    cid = chart_id or _chart_id("requests")
    width, height, left, bottom, top = 720, 220, 48, 24, 8
    plot_w, plot_h = width - left - 8, height - bottom - top
    totals = [sum(c.values()) for _, c in buckets]
    total = sum(totals)
    ymax = nice_max(max(totals, default=0))
    parts = [
        f'<g class="opacity-30" stroke="currentColor" stroke-width="1">'
        f'<line x1="{left}" y1="{top}" x2="{width - 8}" y2="{top}"/>'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}"/></g>',
        f'<g fill="currentColor" font-size="11">'
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end">{ymax:,}</text>'
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    if buckets:
        parts.append(f'<text x="{left}" y="{height - 6}">{escape(_when(buckets[0][0]))}</text>')
        parts.append(f'<text x="{width - 8}" y="{height - 6}" text-anchor="end">{escape(_when(buckets[-1][0]))}</text>')
    parts.append("</g>")
    n = max(len(buckets), 1)
    bar_w = plot_w / n
    gap = min(1.0, bar_w * 0.2)
    for i, (when, counts) in enumerate(buckets):
        x = left + i * bar_w
        y = top + plot_h
        for cls in sorted(counts):
            count = counts[cls]
            if count <= 0:
                continue
            h = plot_h * count / ymax
            y -= h
            parts.append(
                f'<rect class="{class_color(cls)}" fill="currentColor" x="{_num(x)}" y="{_num(y)}"'
                f' width="{_num(max(bar_w - gap, 0.5))}" height="{_num(h)}">'
                f"<title>{escape(_when(when))}: {count:,} {class_label(cls)}</title></rect>"
            )
    busiest = max(totals, default=0)
    desc = (
        f"{total:,} requests in {len(buckets)} bars of {bucket_minutes} minute(s); "
        f"busiest bar {busiest:,} requests. Bars are stacked by status class."
    )
    return _svg(cid, "Requests over time by status class", desc, width, height, "".join(parts))


def _when(t: dt.datetime) -> str:
    return f"{t:%m-%d %H:%M}"


def status_chart(totals: Mapping[int, int], *, chart_id: str | None = None) -> Markup:
    """One horizontal bar per status class, labelled with count and share."""
    cid = chart_id or _chart_id("status")
    rows = sorted(totals.items())
    total = sum(totals.values())
    width, row_h, label_w = 720, 26, 70
    height = max(len(rows), 1) * row_h + 4
    top = max((n for _, n in rows), default=0) or 1
    parts = ['<g font-size="12">']
    for i, (cls, count) in enumerate(rows):
        y = i * row_h + 4
        w = (width - label_w - 120) * count / top
        share = 100 * count / total if total else 0
        parts.append(
            f'<text x="0" y="{y + 14}" fill="currentColor">{escape(class_label(cls))}</text>'
            f'<rect class="{class_color(cls)}" fill="currentColor" x="{label_w}" y="{y}" width="{_num(max(w, 1))}" height="{row_h - 8}"/>'
            f'<text x="{_num(label_w + max(w, 1) + 6)}" y="{y + 14}" fill="currentColor">{count:,} ({share:.1f}%)</text>'
        )
    parts.append("</g>")
    desc = "; ".join(f"{class_label(c)}: {n:,}" for c, n in rows) or "no requests"
    return _svg(cid, "Requests by status class", desc, width, height, "".join(parts))


def latency_chart(rows: Sequence[tuple[str, int | None, int | None, int | None]], *, chart_id: str | None = None) -> Markup:
    """Per endpoint: a bar to p99 (faint), p95 (medium) and p50 (solid), on a shared scale."""
    cid = chart_id or _chart_id("latency")
    width, row_h, label_w = 720, 22, 230
    height = max(len(rows), 1) * row_h + 20
    top = nice_max(max((r[3] or r[2] or r[1] or 0 for r in rows), default=0))
    plot_w = width - label_w - 70
    parts = ['<g font-size="11">']
    for i, (endpoint, p50, p95, p99) in enumerate(rows):
        y = i * row_h + 2
        label = endpoint if len(endpoint) <= 34 else endpoint[:33] + "…"
        parts.append(f'<text x="0" y="{y + 13}" fill="currentColor">{escape(label)}</text>')
        for value, opacity in ((p99, "opacity-30"), (p95, "opacity-60"), (p50, "")):
            if value is None:
                continue
            w = max(plot_w * value / top, 1)
            parts.append(
                f'<rect class="text-primary {opacity}" fill="currentColor" x="{label_w}" y="{y + 2}"'
                f' width="{_num(w)}" height="{row_h - 8}"/>'
            )
        parts.append(
            f'<text x="{label_w + plot_w + 6}" y="{y + 13}" fill="currentColor">{_ms(p95)} p95</text>'
        )
    axis_y = len(rows) * row_h + 14
    parts.append(
        f'<text x="{label_w}" y="{axis_y}" fill="currentColor">0</text>'
        f'<text x="{label_w + plot_w}" y="{axis_y}" fill="currentColor" text-anchor="end">{top:,} ms</text></g>'
    )
    desc = "; ".join(f"{e}: p50 {_ms(a)}, p95 {_ms(b)}, p99 {_ms(c)}" for e, a, b, c in rows) or "no requests"
    return _svg(cid, "Latency per endpoint (p50 solid, p95 medium, p99 faint)", desc, width, height, "".join(parts))


def _ms(value: int | None) -> str:
    return "–" if value is None else f"{value:,} ms"
