"""log/explorer/list_rows.py: the request list's rows as HTML, balanced, escaped, one per row."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from log.explorer import list_rows
from tests.log.explorer.test_trace_rows import HOSTILE, parse


def row(i: int, status: int | None = 200, user: str | None = "7", **kw) -> dict:
    return {"id": i, "trace_id": f"{i:08d}-0000-4000-8000-000000000000", "response_status": status, "method": "GET",
            "endpoint": "/items", "created_at": "2026-12-02 10:11:12.345", "user_id": user, "duration_ms": 12, **kw}


def test_one_row_per_request_in_order_each_a_link_to_its_trace_with_a_copy_button() -> None:
    html = str(list_rows.request_rows([row(3), row(2, 500, None), row(1, None, "", duration_ms=None)], {"7": "seven@example.com"}))
    tags = parse(list_rows.request_rows([row(3)], {}))
    assert tags.tags.count("tr") == 1
    assert re.findall(r'<tr data-id="(\d+)"', html) == ["3", "2", "1"]
    assert re.findall(r'href="/logs/traces/([^"]+)"', html) == [row(i)["trace_id"] for i in (3, 2, 1)]
    assert html.count('data-copy="') == 3 and html.count(">Copy</button>") == 3
    # Only the 5xx row is marked failed: red row, red link, the link tests look for.
    assert html.count("bg-error/10") == 1 and html.count("link-error") == 1 and html.count('data-testid="trace-link"') == 1
    assert 'data-user="7">seven@example.com<' in html  # shown by email where known
    assert html.count('title="–">–</span>') == 2  # no user (None or empty): a dash, no data-user
    assert '<td class="text-right tabular-nums">–</td>' in html  # no duration
    assert "no status</a>" not in html and ", no status" in html  # the status-less row's accessible name
    assert '<span class="hidden sm:inline">2026-12-02 </span>10:11:12.345</a>' in html


def test_no_rows_is_no_markup() -> None:
    assert str(list_rows.request_rows([], {})) == ""


def test_every_text_from_a_row_is_escaped() -> None:
    hostile = row(1, 500, HOSTILE, trace_id=HOSTILE, method=HOSTILE, endpoint="/items?q=" + HOSTILE,
                  created_at=HOSTILE + HOSTILE, duration_ms=HOSTILE)
    for emails in ({}, {HOSTILE: HOSTILE}):
        tags = parse(list_rows.request_rows([hostile], emails))
        assert any(HOSTILE in t for t in tags.attrs)  # the values arrive intact, as text
        assert HOSTILE in "".join(tags.text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "id": st.integers(0, 2**63 - 1), "trace_id": st.text(max_size=40), "method": st.text(max_size=8),
    "endpoint": st.text(max_size=40), "created_at": st.text(max_size=30), "user_id": st.none() | st.text(max_size=10),
    "duration_ms": st.none() | st.integers(0, 10**9) | st.floats(0, 1e9), "response_status": st.none() | st.integers(0, 999),
}), max_size=5))
def test_any_rows_give_balanced_markup_with_one_row_each(rows: list[dict]) -> None:
    tags = parse(list_rows.request_rows(rows, {}))
    assert tags.tags.count("tr") == len(rows) and tags.tags.count("button") == len(rows)
