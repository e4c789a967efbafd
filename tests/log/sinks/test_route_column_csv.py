"""CSV files written before api_logs.route (an older header) still read, replay and sync, the
new column NULL; new files carry the new header; the sink never mixes the two in one file."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from log.core.csv_codec import encode_rows, header_line, read_csv, row_decoder
from log.core.rows import ApiLog, columns
from log.db.database import FileLogDatabase
from log.sinks.csv_sink import CsvSink, read_rows
from log.sinks.replay import sync_csv
from log.sinks.turso_sink import TursoSink

OLD_HEADER = ",".join(columns(ApiLog)[:-1]) + "\r\n"  # every column but route


def api(i: int, route: str | None = None) -> ApiLog:
    return ApiLog(
        id=i, trace_id=f"t{i}", method="GET", endpoint=f"/items/{i}", request_header='{"a":"b"}', request_body=None,
        response_status=200, response_body=None, duration_ms=3, ip_address=None, user_id="u",
        created_at="2026-11-27 08:00:00.000", route=route,
    )  # fmt: skip


def old_lines(rows: list[ApiLog]) -> str:
    """Rows as a CSV writer from before the route column wrote them: one cell fewer."""
    out = []
    for line in encode_rows(rows).splitlines():
        assert line.endswith(",\\N")  # route None is the last cell
        out.append(line[: -len(",\\N")] + "\r\n")
    return "".join(out)


def test_an_old_header_reads_by_name_with_route_none() -> None:
    assert header_line(ApiLog) == OLD_HEADER[:-2] + ",route\r\n"
    rows = list(read_csv([OLD_HEADER, *old_lines([api(1), api(2)]).splitlines(keepends=True)], ApiLog))
    assert rows == [api(1), api(2)] and all(r.route is None for r in rows)


def test_headers_that_are_not_these_columns_are_refused() -> None:
    names = list(columns(ApiLog))
    for header in (["id", "x"], names[:-2], [*names, "extra"], [*names[:-1], "id"]):
        with pytest.raises(ValueError):
            row_decoder(ApiLog, header)
    reordered = [names[1], names[0], *names[2:]]  # by name: the order of a header does not matter
    cells = next(csv.reader([encode_rows([api(1)])]))
    assert row_decoder(ApiLog, reordered)([cells[1], cells[0], *cells[2:]]) == api(1)


@pytest.mark.anyio
async def test_old_file_is_moved_aside_read_and_synced_with_the_new_one(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "api_logs.csv").write_text(OLD_HEADER + old_lines([api(1), api(2)]), newline="")
    sink = CsvSink(logs)
    await sink.open()
    await sink.write("api_logs", [api(3, "/items/{item_id:int}")])
    # The old file is kept whole under its old header; the current file has the new one.
    assert (logs / "api_logs.1.csv").read_bytes().decode().startswith(OLD_HEADER)
    assert (logs / "api_logs.csv").read_bytes().decode().startswith(header_line(ApiLog))
    errors: list[Exception] = []
    rows = list(read_rows(logs, "api_logs", on_error=lambda p, e: errors.append(e)))
    assert errors == []
    assert rows == [api(1), api(2), api(3, "/items/{item_id:int}")]

    db = FileLogDatabase(str(tmp_path / "logs.db"))
    try:
        target = TursoSink(db)
        await target.open()
        first = await sync_csv(logs, target)
        assert (first["api_logs"].inserted, first["api_logs"].failed) == (3, 0)
        assert await db.fetch_rows(ApiLog, "1 ORDER BY id") == rows  # column for column, route NULL
        again = await sync_csv(logs, target)  # a replay: already present, no conflicts
        assert (again["api_logs"].inserted, again["api_logs"].already_present, again["api_logs"].conflicts) == (0, 3, 0)
    finally:
        await db.aclose()
