"""Items ⇄ CSV for bulk import and export. Pure: bytes in, values out."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator

import msgspec

from store.base import Item, ItemInput
from store.validate import validate_item

MAX_ROWS = 100_000
# What errors="surrogateescape" turns undecodable bytes into.
_SURROGATES = re.compile("[\udc80-\udcff]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A spreadsheet that splits on ";" or tabs (the list separator in many locales) ignores this
# file's quoting and starts a new cell there: "a;=1+1" would give the cell "=1+1". Such a
# segment gets the apostrophe too, right before its formula character (after any spaces/quotes).
_SPLIT_FORMULA = re.compile(r"""(?<=[;\t])([ "']*)(?=[=+\-@])""")


class Rejected(msgspec.Struct, frozen=True):
    line: int
    reason: str
    field: str = ""  # the first column at fault ("" when the whole row is)
    value: str = ""  # that column's value as the file had it
    cells: tuple[str, ...] = ()  # the whole record, for the rejected-rows download


class ParsedImport(msgspec.Struct, frozen=True):
    valid: list[ItemInput]
    rejected: list[Rejected]
    error: str | None = None  # the whole file is unusable (no header, too many rows)


def parse_import(data: bytes, *, max_rows: int = MAX_ROWS) -> ParsedImport:
    """Parse `name,description,quantity` CSV (UTF-8, optional BOM, header row required)."""
    valid: list[ItemInput] = []
    rejected: list[Rejected] = []
    for result in iter_import(data, max_rows=max_rows):
        if isinstance(result, str):
            return ParsedImport([], [], error=result)
        (valid if isinstance(result, ItemInput) else rejected).append(result)
    return ParsedImport(valid, rejected)


def count_lines(data: bytes) -> int:
    """Upper bound of the data rows, for progress bars (quoted newlines make it an estimate)."""
    return max(0, data.count(b"\n") - 1 + (not data.endswith(b"\n")))


def iter_import(data: bytes, *, max_rows: int = MAX_ROWS) -> Iterator[ItemInput | Rejected | str]:
    """Yield each row as an ItemInput or a Rejected, or a single str when the whole file is
    unusable. Undecodable bytes are kept as surrogates so that only the records holding them
    are rejected ("bad encoding"), with the line each record starts on."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        # The common case: the whole file is valid UTF-8, so no row can hold a bad byte and
        # the per-row encoding check is skipped (it is the costliest part of validation).
        text, clean = data.decode("utf-8"), True
    except UnicodeDecodeError:
        text, clean = data.decode("utf-8", errors="surrogateescape"), False
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        yield "The file is empty."
        return
    except csv.Error as err:
        yield f"Not a CSV file: {err}."
        return
    if any(_has_surrogates(h) or "\x00" in h for h in header):
        # UTF-16 (Excel's "Unicode text") or a legacy code page: say so, rather than
        # claiming the header is missing.
        yield "The file is not UTF-8 text: save it as \"CSV UTF-8\" and try again."
        return
    if "name" not in header:
        yield "The first row must be a header with a 'name' column."
        return
    if count_lines(data) > max_rows + 1000:  # cheap early refusal; exact check below
        yield f"Too many rows: the limit is {max_rows:,}."
        return
    columns = {name: header.index(name) for name in ("name", "description", "quantity") if name in header}
    rows = 0
    start = reader.line_num + 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue  # blank lines are not rows
            rows += 1
            if rows > max_rows:
                yield f"Too many rows: the limit is {max_rows:,}."
                return
            yield _check(record, columns, clean, line)
    except csv.Error as err:
        yield Rejected(line=start, reason=f"Unreadable CSV from here on: {err}.", cells=("",))


def _check(record: list[str], columns: dict[str, int], clean: bool, line: int) -> ItemInput | Rejected:
    if not clean:
        bad = next((i for i, cell in enumerate(record) if _has_surrogates(cell)), None)
        if bad is not None:
            field = next((name for name, i in columns.items() if i == bad), "")
            return Rejected(
                line=line, reason="Bad encoding: the row is not valid UTF-8.", field=field,
                value=_readable(record[bad]), cells=tuple(_readable(cell) for cell in record),
            )
    form = {name: record[i] if i < len(record) else "" for name, i in columns.items()}
    item, errors = validate_item(form)
    if item is not None:
        return item
    field = next(iter(errors))
    return Rejected(
        line=line, reason=" ".join(errors.values()), field=field, value=form.get(field, ""), cells=tuple(record)
    )


def _readable(text: str) -> str:
    """Undecodable bytes (kept as surrogates) shown as U+FFFD, so the text can be written out."""
    return _SURROGATES.sub("\ufffd", text)


def _has_surrogates(text: str) -> bool:
    return _SURROGATES.search(text) is not None


def safe_cell(value: object) -> str:
    """Spreadsheet-safe text: a cell that would start a formula gets a leading apostrophe, and
    so does each part after a ";" or a tab that would (a spreadsheet may split the cell there)."""
    text = "" if value is None else str(value)
    if ";" in text or "\t" in text:
        text = _SPLIT_FORMULA.sub(_guard, text)
    return "'" + text if text.startswith(FORMULA_START) else text


def _guard(m: re.Match[str]) -> str:
    return m.group(1) if m.group(1).endswith("'") else m.group(1) + "'"


def export_rows(items: Iterable[Item], *, header: bool = True) -> Iterator[str]:
    """CSV text chunks (header first unless header=False) for the user's items, formula-safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(["name", "description", "quantity", "created_at", "updated_at"])
    for item in items:
        writer.writerow(
            [safe_cell(v) for v in (item.name, item.description, item.quantity, item.created_at, item.updated_at)]
        )
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def header_cells(data: bytes) -> list[str]:
    """The file's header row as written (for the rejected-rows download: same columns)."""
    text = data.removeprefix(b"\xef\xbb\xbf")[: 64 * 1024].decode("utf-8", errors="replace")
    try:
        return next(csv.reader(io.StringIO(text, newline="")))
    except (StopIteration, csv.Error):
        return []


def rejected_csv(header: list[str], rejected: Iterable[Rejected]) -> bytes:
    """The rejected rows as a CSV to fix and import again: the file's own columns, each
    record as it was (formula-safe), plus an `error` column with the reason and the line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header] + ["error"])
    width = len(header)
    for row in rejected:
        cells = list(row.cells[:width]) + [""] * (width - len(row.cells))
        writer.writerow([safe_cell(c) for c in cells] + [safe_cell(f"Line {row.line}: {row.reason}")])
    return buffer.getvalue().encode("utf-8")
