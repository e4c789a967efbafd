"""log/charts.py: well-formed, accessible, theme-coloured SVG computed from the data."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from log.explorer.charts import latency_bar, nice_max, requests_chart, status_chart

NS = {"svg": "http://www.w3.org/2000/svg"}
T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.timezone.utc)


def parse(markup: Markup) -> ET.Element:
    assert isinstance(markup, Markup)
    return ET.fromstring(str(markup))


def accessible(root: ET.Element) -> tuple[str, str]:
    assert root.get("role") == "img"
    title = root.find("svg:title", NS)
    desc = root.find("svg:desc", NS)
    assert title is not None and desc is not None
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    for el in root.iter():
        assert "style" not in el.attrib  # CSP: style-src 'self', no inline styles
        assert not (el.get("fill") or "").startswith("#")  # colours come from the theme
    return title.text or "", desc.text or ""


def test_requests_chart_stacks_classes_proportionally() -> None:
    buckets = [(T0, {2: 30, 5: 10}), (T0 + dt.timedelta(minutes=1), {2: 50}), (T0 + dt.timedelta(minutes=2), {})]
    root = parse(requests_chart(buckets, 1))
    _, desc = accessible(root)
    assert "90 requests in 3 bars" in desc and "busiest bar 50" in desc
    rects = root.findall(".//svg:rect", NS)
    assert [r.get("class") for r in rects] == ["text-success", "text-error", "text-success"]
    heights = [float(r.get("height")) for r in rects]
    assert heights[0] == pytest.approx(3 * heights[1], rel=0.01)
    assert heights[2] == pytest.approx(5 * heights[1], rel=0.01)
    # 5xx is stacked on top of 2xx in the same bar
    assert float(rects[1].get("y")) + heights[1] == pytest.approx(float(rects[0].get("y")), abs=0.11)
    assert [r.find("svg:title", NS).text for r in rects][1] == "03-10 12:00: 10 5xx"


def test_status_chart_labels_counts_and_shares() -> None:
    root = parse(status_chart({2: 75, 4: 20, 5: 5}))
    _, desc = accessible(root)
    assert desc == "2xx: 75; 4xx: 20; 5xx: 5"
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "5 (5.0%)" in texts and "75 (75.0%)" in texts


def test_latency_bar_draws_percentiles_on_the_shared_scale_and_escapes_the_label() -> None:
    markup = latency_bar(10, 50, 90, 100, label="/x?<script>alert(1)</script>&a")
    assert "<script>" not in str(markup)
    root = parse(markup)
    assert root.get("role") == "img"
    assert root.get("aria-label") == "/x?<script>alert(1)</script>&a latency: p50 10 ms, p95 50 ms, p99 90 ms; scale 0 to 100 ms"
    assert not any("style" in el.attrib for el in root.iter())
    widths = [float(b.get("width")) for b in root.findall(".//svg:rect", NS)]
    assert widths == [180, 100, 20]  # p99, p95, p50 of a 200-wide bar, on the 0..100 ms scale
    assert root.findall(".//svg:text", NS) == []  # numbers live in the table's columns: nothing to clip
    assert latency_bar(None, None, None, 1).count("<rect") == 0


def test_requests_chart_draws_empty_stretches_as_bands_and_gives_the_bars_the_rest() -> None:
    day = [(T0 + dt.timedelta(hours=h), {2: 10}) for h in range(24)]
    before = (T0 - dt.timedelta(days=6), T0)
    plain = parse(requests_chart(day, 60))
    banded = parse(requests_chart(day, 60, empty_before=before))
    _, desc = accessible(banded)
    assert "No requests 03-04 12:00 to 03-10 12:00 (before the bars)." in desc
    band = banded.find(".//svg:g[@data-empty]", NS)
    assert band is not None and "6 days" in "".join(band.itertext())
    bars = [r for r in banded.findall(".//svg:rect", NS) if r.get("class") == "text-success"]
    plain_bars = [r for r in plain.findall(".//svg:rect", NS) if r.get("class") == "text-success"]
    assert len(bars) == 24
    # The day keeps most of the width: each bar only loses the band's share.
    assert float(bars[0].get("width")) > 0.9 * float(plain_bars[0].get("width"))
    assert float(bars[0].get("x")) > float(plain_bars[0].get("x"))  # drawn right of the band


def test_empty_data_still_renders_a_valid_chart() -> None:
    for markup in (requests_chart([], 1), status_chart({})):
        _, desc = accessible(parse(markup))
        assert desc


def test_distinct_charts_get_distinct_ids() -> None:
    a, b = parse(status_chart({2: 1})), parse(status_chart({2: 1}))
    assert a.find("svg:title", NS).get("id") != b.find("svg:title", NS).get("id")


@given(st.integers(min_value=0, max_value=10**12))
def test_nice_max_is_a_round_upper_bound(value) -> None:
    top = nice_max(value)
    assert top >= max(value, 1)
    assert str(top).rstrip("0") in {"1", "2", "5"}
    assert top < max(value, 1) * 2.5 + 1
