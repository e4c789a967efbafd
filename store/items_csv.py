"""Items ⇄ CSV for bulk import and export. Pure: bytes in, values out."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

import msgspec

from store.base import Item, ItemInput
from store.validate import validate_item

MAX_ROWS = 100_000
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Rejected(msgspec.Struct, frozen=True):
    line: int
    reason: str


class ParsedImport(msgspec.Struct, frozen=True):
    valid: list[ItemInput]
    rejected: list[Rejected]
    error: str | None = None  # the whole file is unusable (no header, too many rows)


def parse_import(data: bytes, *, max_rows: int = MAX_ROWS) -> ParsedImport:
    """Parse `name,description,quantity` CSV (UTF-8, optional BOM, header row required).

    Undecodable bytes are kept as surrogates so that only the records holding them are
    rejected ("bad encoding"), with the line each record starts on.
    """
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return ParsedImport([], [], error="The file is empty.")
    except csv.Error as err:
        return ParsedImport([], [], error=f"Not a CSV file: {err}.")
    if "name" not in header:
        return ParsedImport([], [], error="The first row must be a header with a 'name' column.")
    columns = {name: header.index(name) for name in ("name", "description", "quantity") if name in header}
    valid: list[ItemInput] = []
    rejected: list[Rejected] = []
    start = reader.line_num + 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue  # blank lines are not rows
            if len(valid) + len(rejected) >= max_rows:
                return ParsedImport([], [], error=f"Too many rows: the limit is {max_rows:,}.")
            reason, item = _check(record, columns)
            if item is None:
                rejected.append(Rejected(line=line, reason=reason))
            else:
                valid.append(item)
    except csv.Error as err:
        rejected.append(Rejected(line=start, reason=f"Unreadable CSV from here on: {err}."))
    return ParsedImport(valid, rejected)


def _check(record: list[str], columns: dict[str, int]) -> tuple[str, ItemInput | None]:
    if any(_has_surrogates(cell) for cell in record):
        return "Bad encoding: the row is not valid UTF-8.", None
    form = {name: record[i] if i < len(record) else "" for name, i in columns.items()}
    item, errors = validate_item(form)
    return " ".join(errors.values()), item


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def safe_cell(value: object) -> str:
    """Spreadsheet-safe text: a cell that would start a formula gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def export_rows(items: Iterable[Item]) -> Iterator[str]:
    """CSV lines (header first) for the user's items, formula-safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
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
