"""log/explorer/trace_rows.py: the trace page's rows as HTML, balanced and escaped."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from log.explorer import trace_rows
from log.explorer.spans import build
from tests.log.explorer.test_spans import import_rows, request, task

VOID = {"br", "hr", "img", "input", "meta", "link", "line", "rect", "circle"}
HOSTILE = '<script>alert("x")</script>&'


class Tags(HTMLParser):
    """Checks every element is closed, in order; collects the text and the attribute values."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.attrs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [v or "" for _, v in attrs]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [v or "" for _, v in attrs]

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, (self.stack[-3:], tag)
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(markup: Markup) -> Tags:
    assert isinstance(markup, Markup)
    tags = Tags()
    tags.feed(str(markup))
    tags.close()
    assert not tags.stack, tags.stack
    assert "script" not in tags.tags
    return tags


def hostile_trace():
    req = request(0, 2_000, user=HOSTILE, endpoint="/items?q=" + HOSTILE)
    steps = [
        task(100, HOSTILE, "START", 1, name=HOSTILE, input='{"k": "' + HOSTILE.replace('"', "'") + '"}'),
        task(150, HOSTILE, "IN_PROGRESS", 2, name=HOSTILE, output=HOSTILE),
        task(900, HOSTILE, "FAILED", 3, name=HOSTILE, error=HOSTILE, stack=HOSTILE, output="{}"),
        task(1_000, "Open", "START", 1, name="Other"),
    ]
    return build([req], steps)


def test_every_text_from_a_row_is_escaped_and_every_element_closed() -> None:
    wf = hostile_trace()
    for markup in (trace_rows.waterfall_items(wf, {HOSTILE: HOSTILE}), trace_rows.table_rows(wf, {})):
        tags = parse(markup)
        text = "".join(tags.text)
        assert HOSTILE in text  # shown as text, not run as markup
        assert "<script" not in str(markup)
    items = parse(trace_rows.waterfall_items(wf, {}))
    assert "/items?q=" + HOSTILE in items.attrs  # the endpoint's title attribute


def test_a_failed_step_is_open_with_its_error_and_stack_and_a_step_without_end_says_so() -> None:
    html = str(trace_rows.waterfall_items(hostile_trace(), {}))
    failed = html.split('data-status="FAILED"', 1)[1]
    assert failed.startswith('> <details class="group" open>')
    assert 'data-testid="stack-trace">&lt;script&gt;' in failed
    assert html.count('<details class="group" open>') == 1  # only the failed one
    assert 'data-shape="open" data-status="OPEN"' in html and "No end row: still running" in html


def test_the_table_has_one_row_per_request_step_and_gap() -> None:
    wf = build([request(0, 15_359)], import_rows())
    tags = parse(trace_rows.table_rows(wf, {}))
    assert tags.tags.count("tr") == 1 + 3 + len(wf.requests[0].gaps)
    assert "Bulk_Import › Validation" in "".join(tags.text)


def test_only_the_first_hundred_progress_rows_are_listed_but_all_are_counted() -> None:
    rows = [task(0, "Load", "START", 1)] + [task(i, "Load", "IN_PROGRESS", i + 1, output=f'{{"i":{i}}}') for i in range(1, 251)]
    html = str(trace_rows.waterfall_items(build([request(0, 1_000)], rows), {}))
    assert html.count('data-kind="tick"') == 100
    assert "250 progress updates" in html and "The first 100 of 250." in html


def test_pretty_indents_json_as_logged_and_leaves_anything_else_alone() -> None:
    assert trace_rows.pretty('{"a":1,"b":[1,2]}') == '{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}'
    assert trace_rows.pretty('{"a":1,"a":2}') == '{\n  "a": 1,\n  "a": 2\n}'  # a repeated key stays visible
    assert trace_rows.pretty('{"n":1.50,"s":"\\u00e9"}') == '{\n  "n": 1.50,\n  "s": "\\u00e9"\n}'  # as written
    for text in ("not json", "{", "", '"\ud800"', "x<y"):
        assert trace_rows.pretty(text) == text
    assert trace_rows.pretty(None) is None


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40))
def test_pretty_never_raises_and_keeps_non_json_text(text: str) -> None:
    out = trace_rows.pretty(text)
    assert isinstance(out, str)
    if out != text:  # reformatted: it was JSON, so the result is JSON of the same value
        assert json.loads(out) == json.loads(text)
