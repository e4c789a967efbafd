"""Log rows <-> CSV text, lossless, one physical line per row, safe to open in a spreadsheet.

Cell encoding (all of it reversed exactly by decode_cell):
  * None              -> \\N (a bare backslash-N; a real string "\\N" is written "\\\\N")
  * str               -> line breaks and other characters that some readers treat as line ends,
                         backslash and NUL are backslash-escaped: \\\\ \\n \\r \\0 and \\uXXXX for
                         \\x0b \\x0c \\x1c \\x1d \\x1e \\x85 \\u2028 \\u2029. So str.splitlines() of
                         a row is one line.
  * int               -> decimal digits (decoded as int because the Struct field says int)
  * then, formula-injection guard: a cell starting with = + - @ TAB CR (or ') gets one leading
    ' -- so "-5" is written '-5 and "'x" is written ''x; decoding strips exactly one '.
Quoting is RFC 4180 (csv.QUOTE_MINIMAL), rows end with CRLF, the header is the Struct's field
names in order (log/core/rows.py: columns), which is also the database column order.

Files are read by header name (`row_decoder`): a file written before a column was appended to
the Struct (api_logs.route) has a shorter header and still reads, the missing column taking the
field's default (None). Files are only ever written with the current header.
"""

from __future__ import annotations

import csv
import io
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence

import msgspec
from msgspec.structs import astuple

from log.core.rows import TABLES, ApiLog, LogRow, TaskProgressLog, columns

NULL = "\\N"
_DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r", "'")
_RARE_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # line ends to str.splitlines, not to csv
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\0": "\\0"} | {c: f"\\u{ord(c):04x}" for c in _RARE_BREAKS}
_RARE_RE = re.compile(f"[{_RARE_BREAKS}]")
_NEEDS_ESCAPE = re.compile(f"[\\\\\n\r\0{_RARE_BREAKS}]")
# A row's text cells, each preceded by \x1f (a character no rule above mentions), searched at
# once: an escape character anywhere, or \x1f then a dangerous first character, means some
# cell needs the per-cell path. False alarms (data holding \x1f then "=") only cost that path.
_SEP = "\x1f"
_FORMULA_START = re.compile(f"{_SEP}[=+\\-@\t\r']")
_UNESCAPE_RE = re.compile(r"\\(?:u([0-9a-f]{4})|(.))", re.DOTALL)
_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r", "0": "\0"}

RowType = type[ApiLog] | type[TaskProgressLog]


def _int_fields(row_type: RowType) -> tuple[bool, ...]:
    hints = typing.get_type_hints(row_type)
    return tuple(hints[name] is int or int in typing.get_args(hints[name]) for name in columns(row_type))


_IS_INT: dict[RowType, tuple[bool, ...]] = {t: _int_fields(t) for t in TABLES.values()}


def _escape(value: str) -> str:
    # Most cells hold nothing to escape: one regex search says so faster than the four replaces.
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    # Chained str.replace is a C-speed scan that returns quickly when there is nothing to do.
    text = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\0", "\\0")
    if _RARE_RE.search(text) is not None:
        text = _RARE_RE.sub(lambda m: _ESCAPES[m.group()], text)
    return text


def encode_cell(value: str | int | None) -> str:
    if value is None:
        return NULL
    text = str(value) if isinstance(value, int) else _escape(value)
    return "'" + text if text.startswith(_DANGEROUS_START) else text


def _unescape(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return chr(int(match.group(1), 16))
    try:
        return _UNESCAPES[match.group(2)]
    except KeyError:
        raise ValueError(f"bad escape \\{match.group(2)!r} in CSV cell") from None


def decode_cell(cell: str, is_int: bool) -> str | int | None:
    if cell == NULL:
        return None
    if cell.startswith("'"):
        cell = cell[1:]
    return int(cell) if is_int else _UNESCAPE_RE.sub(_unescape, cell)


def header_line(row_type: RowType) -> str:
    return _write([columns(row_type)])


def encode_rows(rows: Iterable[LogRow]) -> str:
    """CSV lines (no header) for rows, all of one table, each ending in CRLF.

    The usual batch has nothing to escape or guard anywhere: that is checked once for the whole
    batch (the text cells joined once; a substring search per character to escape, memchr-fast,
    and one search for a cell start to guard), and the batch is then encoded a column at a time, each column quoted only when one
    of its cells needs it. Otherwise each row takes the per-row check, and the rows that need it
    the per-cell path. Either way the text is the csv module's output (QUOTE_MINIMAL) for
    encode_cell of each value: tests/log/core/test_csv_codec.py compares the two.
    """
    tuples = [astuple(row) for row in rows]
    if not tuples:
        return ""
    joined = _SEP + _SEP.join([v for t in tuples for v in t if v.__class__ is str])
    if any(c in joined for c in _ESCAPE_CHARS) or _FORMULA_START.search(joined) is not None:
        lines = [",".join([_quoted(c) for c in _encode_row(t)]) for t in tuples]
    else:
        lines = list(map(",".join, zip(*map(_plain_column, zip(*tuples)))))
    lines.append("")
    return "\r\n".join(lines)


_ESCAPE_CHARS = tuple(_ESCAPES)
_NONE = type(None)
_INTS = frozenset({int, _NONE})
_INT, _STR = {int}, {str}


def _plain_column(values: tuple[object, ...]) -> Sequence[str]:
    """The cells of one column whose text cells hold nothing to escape or guard."""
    kinds = set(map(type, values))
    if kinds == _INT:  # digits, or a guarded negative: never quoted
        return list(map(str, values)) if min(values) >= 0 else [encode_cell(v) for v in values]  # type: ignore[arg-type]
    if kinds <= _INTS:
        return [NULL if v is None else str(v) if v >= 0 else "'" + str(v) for v in values]  # type: ignore[operator]
    cells: Sequence[str] = values if kinds == _STR else [  # type: ignore[assignment]
        v if v.__class__ is str else encode_cell(v) for v in values  # type: ignore[arg-type]
    ]
    joined = _SEP.join(cells)
    if '"' not in joined and "," not in joined:
        return cells
    return ['"' + c.replace('"', '""') + '"' if '"' in c or "," in c else c for c in cells]  # as _quoted


def _quoted(cell: str) -> str:
    # csv.QUOTE_MINIMAL for our cells (which never hold CR or LF: encode_cell escapes them),
    # as the csv module writes it, in plain string operations; tests compare the two.
    if '"' in cell:
        return '"' + cell.replace('"', '""') + '"'
    return '"' + cell + '"' if "," in cell else cell


def _encode_row(values: tuple[str | int | None, ...]) -> list[str]:
    # The cells encode_cell gives each value. Most rows' text needs no escaping and no formula
    # guard, and two searches over the whole row say so faster than one per cell.
    joined = _SEP + _SEP.join([v for v in values if v.__class__ is str])
    if _NEEDS_ESCAPE.search(joined) is None and _FORMULA_START.search(joined) is None:
        return [v if v.__class__ is str else encode_cell(v) for v in values]  # type: ignore[misc]
    return [encode_cell(v) for v in values]


def _write(records: Iterable[Sequence[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(records)
    return buf.getvalue()


def decode_row(row_type: RowType, cells: Sequence[str]) -> LogRow:
    names = columns(row_type)
    if len(cells) != len(names):
        raise ValueError(f"expected {len(names)} cells for {row_type.__name__}, got {len(cells)}")
    kinds = _IS_INT[row_type]
    return row_type(**{name: decode_cell(cell, k) for name, cell, k in zip(names, cells, kinds)})


RowDecoder = Callable[[Sequence[str]], LogRow]


def _optional(row_type: RowType) -> frozenset[str]:
    return frozenset(f.name for f in msgspec.structs.fields(row_type) if not f.required)


def row_decoder(row_type: RowType, header: Sequence[str]) -> RowDecoder:
    """A decoder for the rows of a file with this header; ValueError when they cannot be rows.

    The current header decodes with decode_row. An older header (columns the Struct has, in any
    order, lacking only fields with a default) decodes by name, the missing fields defaulted.
    """
    names = columns(row_type)
    if tuple(header) == names:
        return lambda cells: decode_row(row_type, cells)
    unknown = [h for h in header if h not in names]
    missing = set(names) - set(header) - _optional(row_type)
    if unknown or missing or len(set(header)) != len(header):
        raise ValueError(f"CSV header {list(header)!r} is not the {row_type.__name__} columns")
    is_int = dict(zip(names, _IS_INT[row_type]))
    kinds = [is_int[h] for h in header]
    fields = list(header)

    def decode(cells: Sequence[str]) -> LogRow:
        if len(cells) != len(fields):
            raise ValueError(f"expected {len(fields)} cells for {row_type.__name__}, got {len(cells)}")
        return row_type(**{name: decode_cell(cell, k) for name, cell, k in zip(fields, cells, kinds)})

    return decode


def read_csv(lines: Iterable[str], row_type: RowType) -> Iterator[LogRow]:
    """Rows from CSV lines (a file opened with newline="" or text.splitlines(keepends=True)).

    The first line is the header, the current one or an older one (see row_decoder); another
    header raises ValueError.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    decode = row_decoder(row_type, header)
    for cells in reader:
        yield decode(cells)
