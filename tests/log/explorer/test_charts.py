"""log/charts.py: well-formed, accessible, theme-coloured SVG computed from the data."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from log.explorer.charts import latency_chart, nice_max, requests_chart, status_chart

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


def test_latency_chart_escapes_endpoint_names() -> None:
    markup = latency_chart([("/x?<script>alert(1)</script>&a", 10, 50, 90), ("/y", None, None, None)])
    assert "<script>" not in str(markup)
    root = parse(markup)
    _, desc = accessible(root)
    assert "/x?<script>alert(1)</script>&a: p50 10 ms, p95 50 ms, p99 90 ms" in desc  # unescaped after parsing
    assert "/y: p50 –" in desc
    bars = root.findall(".//svg:rect", NS)
    widths = [float(b.get("width")) for b in bars]
    assert widths[0] > widths[1] > widths[2]  # p99, p95, p50 of /x


def test_empty_data_still_renders_a_valid_chart() -> None:
    for markup in (requests_chart([], 1), status_chart({}), latency_chart([])):
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
