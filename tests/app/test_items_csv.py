from __future__ import annotations

import csv
import io
import re

from hypothesis import given
from hypothesis import strategies as st

from store.base import Item
from store.items_csv import export_rows, header_cells, parse_import, rejected_csv, safe_cell


def test_valid_rows_with_bom_and_any_column_order() -> None:
    data = "\ufeffquantity,name,description\r\n3,Apple,red\r\n0,Pear,\r\n".encode()
    parsed = parse_import(data)
    assert parsed.error is None and parsed.rejected == []
    assert [(i.name, i.description, i.quantity) for i in parsed.valid] == [("Apple", "red", 3), ("Pear", "", 0)]


def test_bad_rows_are_rejected_with_line_numbers_and_reasons() -> None:
    data = (
        b"name,description,quantity\n"
        b"Good,,1\n"  # line 2
        b",no name,1\n"  # line 3
        b"Bad qty,,abc\n"  # line 4
        b'"multi\nline",desc,2\n'  # lines 5-6: valid, spans two lines
        b"Neg,,-1\n"  # line 7
        + b"x" * 201 + b",,1\n"  # line 8
        b"Bad \xff bytes,,1\n"  # line 9
    )
    parsed = parse_import(data)
    assert [i.name for i in parsed.valid] == ["Good", "multi\nline"]
    assert [(r.line, r.reason.split(":")[0].split(" ")[0]) for r in parsed.rejected] == [
        (3, "Name"),
        (4, "Quantity"),
        (7, "Quantity"),
        (8, "Name"),
        (9, "Bad"),
    ]
    assert "negative" in parsed.rejected[2].reason
    assert "200" in parsed.rejected[3].reason


def test_whole_file_errors() -> None:
    assert parse_import(b"").error == "The file is empty."
    assert "header" in (parse_import(b"foo,bar\n1,2\n").error or "")
    too_many = b"name\n" + b"a\n" * 11
    assert "Too many rows" in (parse_import(too_many, max_rows=10).error or "")


@given(st.binary(max_size=2000))
def test_parse_never_raises(data: bytes) -> None:
    parsed = parse_import(b"name,description,quantity\n" + data)
    assert parsed.error is None or isinstance(parsed.error, str)
    for item in parsed.valid:
        assert 1 <= len(item.name) <= 200 and item.quantity >= 0


@given(st.text() | st.lists(st.sampled_from(["a", ";", "\t", " ", '"', "'", "=", "+", "-", "@", "1"])).map("".join))
def test_safe_cell_never_starts_a_formula(text: str) -> None:
    cell = safe_cell(text)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    # Nor does any part a spreadsheet splitting on ";" or tabs would make of it.
    for part in re.split("[;\t]", cell)[1:]:
        lead = re.match("[ \"']*", part).group()  # type: ignore[union-attr]
        assert lead.endswith("'") or not part[len(lead):].startswith(("=", "+", "-", "@")), cell
    assert cell.replace("'", "") == text.replace("'", "")  # apostrophes are the only change
    assert safe_cell(cell) == cell


def test_a_semicolon_or_tab_separated_spreadsheet_finds_no_formula_in_the_export() -> None:
    names = ["a;=1+1", "b;+SUM(A1)", "c; -2+3", 'd;"=cmd', "e\t@x", "f;g"]
    items = [Item(id=i, name=n, description=n, quantity=1, created_at="c", updated_at="u") for i, n in enumerate(names)]
    text = "".join(export_rows(items))
    for delimiter in (";", "\t"):
        cells = [cell.strip(" \"") for row in csv.reader(io.StringIO(text), delimiter=delimiter) for cell in row]
        assert [c for c in cells if c.startswith(("=", "+", "-", "@"))] == [], delimiter
    rows = list(csv.reader(io.StringIO(text)))  # the file itself: the apostrophe is the only change
    assert [r[0] for r in rows[1:]] == ["a;'=1+1", "b;'+SUM(A1)", "c; '-2+3", 'd;"\'=cmd', "e\t'@x", "f;g"]


def test_export_is_formula_safe_csv() -> None:
    items = [Item(id=1, name="=HYPERLINK(\"x\")", description="-2+3", quantity=4, created_at="c", updated_at="u")]
    rows = list(csv.reader(io.StringIO("".join(export_rows(items)))))
    assert rows[0] == ["name", "description", "quantity", "created_at", "updated_at"]
    assert rows[1][:3] == ["'=HYPERLINK(\"x\")", "'-2+3", "4"]


def test_rejected_rows_keep_the_offending_value_and_the_record() -> None:
    data = (
        b"Name,Quantity,Notes\r\n"
        b"Lamp,lots,x\r\n"  # line 2: quantity
        b",1\r\n"  # line 3: no name, a short record
        b"Caf\xe9,2,y\r\n"  # line 4: not UTF-8
    )
    parsed = parse_import(data)
    assert [(r.line, r.field, r.value, r.cells) for r in parsed.rejected] == [
        (2, "quantity", "lots", ("Lamp", "lots", "x")),
        (3, "name", "", ("", "1")),
        (4, "name", "Caf\ufffd", ("Caf\ufffd", "2", "y")),
    ]
    assert header_cells(data) == ["Name", "Quantity", "Notes"]
    table = list(csv.reader(io.StringIO(rejected_csv(header_cells(data), parsed.rejected).decode(), newline="")))
    assert table == [
        ["Name", "Quantity", "Notes", "error"],
        ["Lamp", "lots", "x", "Line 2: Quantity must be a whole number."],
        ["", "1", "", "Line 3: Name is required."],
        ["Caf\ufffd", "2", "y", "Line 4: Bad encoding: the row is not valid UTF-8."],
    ]


def test_the_rejected_rows_download_is_formula_safe() -> None:
    data = b"name,description,quantity\r\n=HYPERLINK(\"http://evil\"),@SUM(A1),-1\r\n"
    parsed = parse_import(data)
    out = rejected_csv(header_cells(data), parsed.rejected).decode()
    row = list(csv.reader(io.StringIO(out, newline="")))[1]
    assert row[:3] == ["'=HYPERLINK(\"http://evil\")", "'@SUM(A1)", "'-1"]
    assert row[3] == "Line 2: Quantity cannot be negative."


def test_an_import_refuses_digits_outside_ascii() -> None:
    parsed = parse_import("name,quantity\r\nA,٣\r\nB,3\r\n".encode())
    assert [(i.name, i.quantity) for i in parsed.valid] == [("B", 3)]
    assert [(r.line, r.reason) for r in parsed.rejected] == [(2, "Quantity must be a whole number.")]
