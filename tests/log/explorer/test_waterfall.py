"""log/explorer/waterfall.py: well-formed, theme-coloured SVG tracks placed in percent of the axis."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from log.explorer import waterfall
from log.explorer.spans import build
from tests.log.explorer.test_spans import import_rows, request, task

NS = "{http://www.w3.org/2000/svg}"


def parse(markup: Markup) -> ET.Element:
    assert isinstance(markup, Markup)
    root = ET.fromstring(str(markup))
    assert root.get("aria-hidden") == "true"  # the row's text and the table carry the facts
    for el in root.iter():
        assert "style" not in el.attrib  # CSP: no inline styles
        assert not (el.get("fill") or "").startswith("#")  # colours come from the theme
    return root


def percent(value: str | None) -> float:
    assert value is not None and value.endswith("%"), value
    return float(value[:-1])


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}text")]


def test_an_imports_tracks_place_each_bar_on_the_requests_axis_with_its_duration() -> None:
    wf = build([request(0, 15_359)], import_rows())
    bar = wf.requests[0]
    req = parse(waterfall.request_track(bar, wf.total))
    (rect,) = req.iter(f"{NS}rect")
    assert (percent(rect.get("x")), percent(rect.get("width"))) == (0, 100)
    assert "text-primary" in (rect.get("class") or "") and texts(req) == ["15,359 ms"]

    validation, transform, commit = bar.runs[0].steps
    v = parse(waterfall.step_track(validation, wf.total))
    (rect,) = v.iter(f"{NS}rect")
    assert abs(percent(rect.get("x")) - 100 * 14_000 / 15_359) < 0.01
    assert abs(percent(rect.get("width")) - 100 * 300 / 15_359) < 0.01
    assert "text-success" in (rect.get("class") or "")
    assert texts(v) == ["300 ms"]
    assert v.find(f"{NS}g[@data-ticks='2']") is not None  # two progress rows, two ticks
    assert len(list(v.find(f"{NS}g[@data-ticks='2']"))) == 2
    # a zero-length step still shows
    (rect,) = parse(waterfall.step_track(transform, wf.total)).iter(f"{NS}rect")
    assert percent(rect.get("width")) >= waterfall.MIN_WIDTH_PCT

    gap = parse(waterfall.gap_track(bar.gaps[0], wf.total))
    (line,) = [el for el in gap.iter(f"{NS}line") if el.get("stroke-dasharray")]
    assert (percent(line.get("x1")), round(percent(line.get("x2")), 2)) == (0, round(100 * 14_000 / 15_359, 2))
    assert texts(gap) == ["gap 14,000 ms"]


def test_failed_open_and_point_steps_have_their_own_marks() -> None:
    rows = [task(0, "A", "START", 1), task(10, "A", "FAILED", 2), task(20, "B", "START", 3),
            task(30, "Rec", "SUCCESS", 1, name="Item_Create")]
    wf = build([request(0, 100)], rows)
    failed, open_ = wf.requests[0].runs[0].steps
    (rect,) = parse(waterfall.step_track(failed, wf.total)).iter(f"{NS}rect")
    assert "text-error" in (rect.get("class") or "")
    open_svg = parse(waterfall.step_track(open_, wf.total))
    (rect,) = open_svg.iter(f"{NS}rect")
    assert rect.get("stroke-dasharray") and "text-warning" in (rect.get("class") or "")
    assert percent(rect.get("x")) + percent(rect.get("width")) == 100  # open: to the end of the axis
    assert texts(open_svg) == ["open, ≥ 80 ms"]
    point = parse(waterfall.step_track(wf.requests[0].runs[1].steps[0], wf.total))
    (circle,) = point.iter(f"{NS}circle")
    assert percent(circle.get("cx")) == 30 and texts(point) == ["at +30 ms"]


def test_ticks_are_capped_and_escaped_text_stays_text() -> None:
    rows = [task(0, "S", "START", 1)] + [task(i, "S", "IN_PROGRESS", i + 1) for i in range(1, 2_000)]
    rows.append(task(2_000, "S", "SUCCESS", 2_001))
    wf = build([request(0, 2_000)], rows)
    svg = parse(waterfall.step_track(wf.steps[0], wf.total))
    ticks = svg.find(f"{NS}g[@data-ticks='1999']")
    assert ticks is not None and len(list(ticks)) == waterfall.MAX_TICKS
    assert texts(parse(waterfall._track("x", waterfall._label(0, 10, "<b>&", "c")))) == ["<b>&"]


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 10_000))
def test_labels_stay_beside_their_bar_and_positions_inside_the_axis(a, b, total) -> None:
    start, end = sorted((min(a, total), min(b, total)))
    x0, x1 = waterfall.pct(start, total), waterfall.pct(end, total)
    assert 0 <= x0 <= x1 <= 100
    side = waterfall.label_side(x0, x1)
    # text right of a bar only with room to its right, left only with room to its left
    assert (side != "right" or x1 <= 72) and (side != "left" or x0 >= 28)
    assert side != "inside" or x1 - x0 >= 44  # otherwise the bar is wide enough to hold it
    wf = build([request(0, total)], [task(start, "S", "START", 1), task(end, "S", "SUCCESS", 2)])
    (rect,) = parse(waterfall.step_track(wf.steps[0], wf.total)).iter(f"{NS}rect")
    assert 0 <= percent(rect.get("x")) and percent(rect.get("x")) + percent(rect.get("width")) <= 100.001


def test_axis_labels_span_the_trace() -> None:
    assert waterfall.axis_labels(15_359) == ["0 ms", "3,840 ms", "7,680 ms", "11,519 ms", "15,359 ms"]
    assert texts(parse(waterfall.axis_track(15_359))) == waterfall.axis_labels(15_359)
