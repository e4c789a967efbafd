import csv
import io
import typing

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from log.core.csv_codec import NULL, decode_cell, encode_cell, encode_rows, header_line, read_csv
from log.core.rows import ApiLog, TaskProgressLog, columns

plain_text = st.text(st.characters(blacklist_categories=("Cs",)))  # any unicode but lone surrogates
tricky = st.sampled_from(
    ["=", "+", "-", "@", "\t", "\r", "'", "''", "\\", "\\N", "\n", '"', ",", "\r\n", "\u2028", "\x85", "\0", " ",
     "\x1f", "\x1f=", "\x1f-"]  # \x1f: encode_rows' separator for its whole-row check
)
texts = st.one_of(plain_text, st.lists(tricky | plain_text, max_size=6).map("".join), st.just(""), st.just("\\N"))
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def rows_of(row_type):
    fields = {}
    for name, hint in typing.get_type_hints(row_type).items():
        base = int64 if (hint is int or int in typing.get_args(hint)) else texts
        fields[name] = base | st.none() if type(None) in typing.get_args(hint) else base
    return st.builds(row_type, **fields)


any_rows = st.one_of(st.lists(rows_of(ApiLog), max_size=4), st.lists(rows_of(TaskProgressLog), max_size=4))


def _text(rows, row_type):
    return header_line(row_type) + encode_rows(rows)


@given(any_rows)
def test_csv_round_trip_is_lossless(rows):
    row_type = type(rows[0]) if rows else ApiLog
    text = _text(rows, row_type)
    assert list(read_csv(text.splitlines(keepends=True), row_type)) == rows
    assert list(read_csv(io.StringIO(text, newline=""), row_type)) == rows


@given(any_rows)
def test_json_round_trip_is_lossless(rows):
    for row in rows:
        assert msgspec.json.decode(msgspec.json.encode(row), type=type(row)) == row


@given(any_rows)
def test_one_physical_line_per_row_and_no_formula_cells(rows):
    row_type = type(rows[0]) if rows else ApiLog
    text = _text(rows, row_type)
    assert text.endswith("\r\n")
    assert len(text.splitlines()) == len(rows) + 1  # splitlines knows every unicode line break
    parsed = list(csv.reader(io.StringIO(text, newline="")))  # what a spreadsheet importer sees
    assert len(parsed) == len(rows) + 1
    for cells in parsed:
        assert len(cells) == len(columns(row_type))
        for cell in cells:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_header_is_exact_column_names():
    assert header_line(ApiLog) == ",".join(columns(ApiLog)) + "\r\n"
    assert header_line(TaskProgressLog).startswith("id,trace_id,task_name,step_name,status,")


@pytest.mark.parametrize(
    ("value", "cell"),
    [(None, NULL), ("", ""), ("\\N", "\\\\N"), (-5, "'-5"), (7, "7"), ("=SUM(A1)", "'=SUM(A1)"), ("'quoted", "''quoted"),
     ("a\nb\r\\", "a\\nb\\r\\\\"), ("\r=", "\\r="), ("\tx", "'\tx"), ("@x", "'@x")],
)  # fmt: skip
def test_cell_examples(value, cell):
    assert encode_cell(value) == cell
    assert decode_cell(cell, isinstance(value, int)) == value


def test_wrong_header_and_bad_rows_raise():
    with pytest.raises(ValueError):
        list(read_csv(["id,x\r\n"], ApiLog))
    with pytest.raises(ValueError):
        list(read_csv([header_line(ApiLog), "1,2\r\n"], ApiLog))
    with pytest.raises(ValueError):
        decode_cell("\\q", False)
    assert list(read_csv([], ApiLog)) == []


@given(any_rows)
def test_whole_row_check_gives_exactly_the_per_cell_encoding(rows):
    # encode_rows skips per-cell escaping when one search over the row finds nothing to do, and
    # quotes cells itself: the bytes must be the csv module's for encode_cell of each value.
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\r\n").writerows(
        [[encode_cell(v) for v in msgspec.structs.astuple(r)] for r in rows]
    )
    assert encode_rows(rows) == expected.getvalue()


@pytest.mark.parametrize("text", ["=1+1", "x", "a\x1f=b", "\x1f", "-", "'", "ok\\", "\u2028", "\t"])
def test_whole_row_check_on_separator_and_formula_edges(text):
    row = ApiLog(id=1, trace_id=text, method="GET", endpoint=text, request_header="{}", request_body=None,
                 response_status=200, response_body=text, duration_ms=-1, ip_address=None, user_id=text,
                 created_at="2026-01-01 00:00:00.000")
    cells = next(csv.reader(io.StringIO(encode_rows([row]))))
    assert cells == [encode_cell(v) for v in msgspec.structs.astuple(row)]
