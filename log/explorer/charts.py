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


EMPTY_W = 56  # width of the band that stands for an empty stretch of the range


def requests_chart(
    buckets: Sequence[tuple[dt.datetime, Mapping[int, int]]],
    bucket_minutes: int,
    *,
    empty_before: tuple[dt.datetime, dt.datetime] | None = None,
    empty_after: tuple[dt.datetime, dt.datetime] | None = None,
    chart_id: str | None = None,
) -> Markup:
    """Stacked bars: requests per time bucket, split by status class (5xx on top).

    The bars span the part of the range that holds data; an empty stretch before or after it
    (empty_before / empty_after: [from, to)) is a hatched band of fixed width labelled as empty,
    so a day of data in a week's range gets the chart's width instead of one pixel column."""
    cid = chart_id or _chart_id("requests")
    width, height, left, bottom, top = 720, 220, 48, 36, 8
    plot_h = height - bottom - top
    x0 = left + (EMPTY_W if empty_before else 0)
    x1 = width - 8 - (EMPTY_W if empty_after else 0)
    plot_w = x1 - x0
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
    n = max(len(buckets), 1)
    bar_w = plot_w / n
    if buckets:
        ticks = sorted({0, n // 4, n // 2, 3 * n // 4, n - 1}) if n > 4 else list(range(n))
        for i in ticks:
            x = x0 + (i + 0.5) * bar_w
            anchor = "start" if i == 0 and not empty_before else "end" if i == n - 1 and not empty_after else "middle"
            tx = x0 if anchor == "start" else x0 + (i + 1) * bar_w if anchor == "end" else x
            parts.append(f'<line x1="{_num(x)}" y1="{top + plot_h}" x2="{_num(x)}" y2="{top + plot_h + 4}"'
                         f' stroke="currentColor" class="opacity-60"/>')
            parts.append(f'<text x="{_num(tx)}" y="{height - 20}" text-anchor="{anchor}">{escape(_tick(buckets[i][0], i, buckets))}</text>')
    parts.append("</g>")
    for band, x in ((empty_before, left), (empty_after, x1)):
        if band:
            parts.append(_empty_band(cid, x, top, plot_h, band, height))
    gap = min(1.0, bar_w * 0.2)
    for i, (when, counts) in enumerate(buckets):
        x = x0 + i * bar_w
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
    for label, band in (("before", empty_before), ("after", empty_after)):
        if band:
            desc += f" No requests {_when(band[0])} to {_when(band[1])} ({label} the bars)."
    return _svg(cid, "Requests over time by status class", desc, width, height, "".join(parts))


def _empty_band(cid: str, x: float, top: int, plot_h: int, band: tuple[dt.datetime, dt.datetime], height: int) -> str:
    """A hatched band standing for a stretch of the range with no requests, with its length."""
    pattern = f"{cid}-empty-{int(x)}"
    w = EMPTY_W - 4
    return (
        f'<defs><pattern id="{pattern}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="currentColor" stroke-width="1.5"/></pattern></defs>'
        f'<g data-empty="{escape(_when(band[0]))}/{escape(_when(band[1]))}">'
        f'<rect class="opacity-20" x="{_num(x + 2)}" y="{top}" width="{w}" height="{plot_h}" fill="url(#{pattern})">'
        f"<title>No requests from {escape(_when(band[0]))} to {escape(_when(band[1]))}</title></rect>"
        f'<text x="{_num(x + 2 + w / 2)}" y="{top + plot_h / 2 - 4}" text-anchor="middle" font-size="10" fill="currentColor">empty</text>'
        f'<text x="{_num(x + 2 + w / 2)}" y="{top + plot_h / 2 + 9}" text-anchor="middle" font-size="10" fill="currentColor">{escape(_duration(band[1] - band[0]))}</text>'
        "</g>"
    )


def _duration(span: dt.timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes >= 2 * 1440:
        return f"{minutes / 1440:.0f} days"
    if minutes >= 120:
        return f"{minutes / 60:.0f} h"
    return f"{minutes} min"


def _tick(t: dt.datetime, i: int, buckets: Sequence[tuple[dt.datetime, Mapping[int, int]]]) -> str:
    """A tick label: the date only where it changes (or at the first tick), the time always."""
    same_day = i > 0 and buckets[0][0].date() == t.date() and buckets[-1][0].date() == t.date()
    return f"{t:%H:%M}" if same_day else _when(t)


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
        w = (width - label_w - 150) * count / top  # 150: room for "1,000,000 (100.0%)"
        share = 100 * count / total if total else 0
        parts.append(
            f'<text x="0" y="{y + 14}" fill="currentColor">{escape(class_label(cls))}</text>'
            f'<rect class="{class_color(cls)}" fill="currentColor" x="{label_w}" y="{y}" width="{_num(max(w, 1))}" height="{row_h - 8}"/>'
            f'<text x="{_num(label_w + max(w, 1) + 6)}" y="{y + 14}" fill="currentColor">{count:,} ({share:.1f}%)</text>'
        )
    parts.append("</g>")
    desc = "; ".join(f"{class_label(c)}: {n:,}" for c, n in rows) or "no requests"
    return _svg(cid, "Requests by status class", desc, width, height, "".join(parts))


def latency_bar(p50: int | None, p95: int | None, p99: int | None, top: int, *, label: str = "") -> Markup:
    """One route's latency as a small bar for a table cell: to p99 (faint), p95 (medium) and p50
    (solid), on the scale `top` (ms) shared by every row. The numbers are the table's own
    columns, so nothing here is text that could be clipped."""
    width, height = 200, 12
    parts = []
    for value, opacity in ((p99, "opacity-30"), (p95, "opacity-60"), (p50, "")):
        if value is None:
            continue
        w = max(width * value / max(top, 1), 1)
        parts.append(
            f'<rect class="text-primary {opacity}" fill="currentColor" x="0" y="1" width="{_num(min(w, width))}" height="{height - 2}"/>'
        )
    desc = f"p50 {_ms(p50)}, p95 {_ms(p95)}, p99 {_ms(p99)}; scale 0 to {top:,} ms"
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="w-full h-3 min-w-16 text-base-content"'
        f' preserveAspectRatio="none" role="img" aria-label="{escape(label + " latency: " if label else "Latency: ")}{escape(desc)}">'
        f"{''.join(parts)}</svg>"
    )


def _ms(value: int | None) -> str:
    return "–" if value is None else f"{value:,} ms"
