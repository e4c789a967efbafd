"""The durable first copy of every log row: append-only CSV files, one per table (and worker).

Files, in LOG_DIR:   {table}{suffix}.csv        the one being appended to
                     {table}{suffix}.{n}.csv    rotated files, 1 = newest
suffix is "" for a single process or ".w<id>" per worker, so processes never share a file.

Each batch is encoded (log/core/csv_codec.py), appended with one write, flushed (and fsync'ed if asked)
in a worker thread so the event loop never blocks on the disk. A failed append is truncated back,
so a batch is all or nothing. Rotation: when appending would pass max_bytes the current file is
renamed to .1 (older ones shift up). Files beyond `keep` are deleted only if `can_delete(table,
max_id)` says every remote sink has what they hold; otherwise they stay, up to `hard_keep` files,
past which the oldest is deleted anyway and its rows counted in rows_lost_to_rotation.
Retention (delete_expired) also deletes rotated files whose rows have all expired, on the same terms.
"""

from __future__ import annotations

import csv
import heapq
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread

from log.core.csv_codec import encode_rows, header_line, row_decoder
from log.core.retention import csv_file_expired, file_extent
from log.core.rows import TABLES, LogRow
from log.sinks.base import SinkError, WriteResult

CanDelete = Callable[[str, int], bool]  # (table, highest id in the file) -> may it go?
OnError = Callable[[Path, Exception], None]


def _always(table: str, max_id: int) -> bool:
    return True


def _name_re(table: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(table)}(?P<suffix>\.w[A-Za-z0-9_-]+)?(?:\.(?P<n>\d+))?\.csv$")


class CsvSink:
    name = "csv"

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        suffix: str = "",
        max_bytes: int = 50_000_000,
        keep: int = 5,
        hard_keep: int | None = None,
        fsync: bool = False,
        can_delete: CanDelete = _always,
    ) -> None:
        if suffix and not re.fullmatch(r"\.w[A-Za-z0-9_-]+", suffix):
            raise ValueError(f"suffix must look like '.w3', got {suffix!r}")
        self.log_dir = Path(log_dir)
        self.suffix = suffix
        self.max_bytes = max_bytes
        self.keep = max(keep, 0)
        self.hard_keep = max(hard_keep if hard_keep is not None else self.keep * 4 + 4, self.keep)
        self.fsync = fsync
        self.can_delete = can_delete
        self.rows_lost_to_rotation = 0
        self.files_rotated = 0
        self._lock = threading.Lock()  # writes come from worker threads

    def path(self, table: str, n: int = 0) -> Path:
        return self.log_dir / (f"{table}{self.suffix}.{n}.csv" if n else f"{table}{self.suffix}.csv")

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open_sync)

    async def write(self, table: str, rows: Sequence[LogRow]) -> WriteResult:
        if table not in TABLES:
            raise SinkError(f"unknown table {table!r}", retryable=False)
        data = encode_rows(rows).encode("utf-8")
        await anyio.to_thread.run_sync(self._append_sync, table, data)
        return WriteResult(inserted=len(rows))

    async def close(self) -> None:
        pass  # nothing held open between batches

    def stats(self) -> dict[str, int]:
        return {"rows_lost_to_rotation": self.rows_lost_to_rotation, "files_rotated": self.files_rotated}

    # -- blocking parts, run in a worker thread ------------------------------------------------

    def _open_sync(self) -> None:
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with self._lock:
                for table in TABLES:
                    self._prepare(table)
        except OSError as exc:
            raise SinkError(f"csv: cannot prepare {self.log_dir}: {exc}", retryable=True) from exc

    def _prepare(self, table: str) -> None:
        """Make sure the current file exists, starts with the right header and ends with a newline."""
        path, header = self.path(table), header_line(TABLES[table]).encode()
        if path.exists() and path.stat().st_size > 0:
            with path.open("rb") as f:
                # Another header (an older one too): move the file aside, never mix columns in
                # one file; readers still read it by its own header.
                if f.readline() != header:
                    f.close()
                    self._rotate(table)
                else:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":  # torn last line from a crash: end it, readers skip it
                        with path.open("ab") as out:
                            out.write(b"\r\n")
                    return
        with path.open("wb") as f:
            f.write(header)
            self._sync(f)

    def _append_sync(self, table: str, data: bytes) -> None:
        with self._lock:
            try:
                path = self.path(table)
                if not path.exists():
                    self._prepare(table)
                size = path.stat().st_size
                if size > len(header_line(TABLES[table])) and size + len(data) > self.max_bytes:
                    self._rotate(table)
                    self._prepare(table)
                    size = path.stat().st_size
                # Unbuffered: a buffered file's truncate() and close() would first flush what a
                # failed write left in its buffer, re-adding part of the batch (a torn row that
                # the next batch's first row would be glued onto).
                with path.open("ab", buffering=0) as f:
                    try:
                        view = memoryview(data)
                        while view:  # a raw write may be partial (file size limit, disk full)
                            view = view[f.write(view) :]
                        self._sync(f)
                    except OSError:
                        os.ftruncate(f.fileno(), size)  # all or nothing: drop the partial batch
                        raise
            except OSError as exc:
                raise SinkError(f"csv: cannot append to {table}: {exc}", retryable=True) from exc

    def _sync(self, f: BinaryIO) -> None:
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())

    def _rotate(self, table: str) -> None:
        for n in sorted(self._rotated_numbers(table), reverse=True):
            os.replace(self.path(table, n), self.path(table, n + 1))
        if self.path(table).exists():
            os.replace(self.path(table), self.path(table, 1))
        self.files_rotated += 1
        for n in sorted(self._rotated_numbers(table)):
            if n > self.keep:
                path = self.path(table, n)
                max_id = max((row.id for row in _rows_in(path, table, None)), default=-1)
                if self.can_delete(table, max_id):
                    path.unlink()
        remaining = sorted(self._rotated_numbers(table))
        while len(remaining) > self.hard_keep:  # over the hard cap: delete the oldest anyway
            path = self.path(table, remaining.pop())
            self.rows_lost_to_rotation += sum(1 for _ in _rows_in(path, table, None))
            path.unlink()
        for new, old in enumerate(remaining, start=1):
            if new != old:  # close gaps left by deletions so numbers stay 1..k, order kept
                os.replace(self.path(table, old), self.path(table, new))

    def delete_expired(self, before: str | None) -> list[Path]:
        """Retention: delete this sink's rotated files whose newest row was created before
        `before` and whose rows every remote sink has (can_delete). Blocking: run it in a worker
        thread. Under the sink's lock, so it never races a rotation renaming the same files."""
        # Reading the files is the slow part: done first, without the lock (appends go on). A
        # rotated file never changes, a rotation only renames it; under the lock each file is
        # known again by (inode, size), and one not read yet waits for the next round.
        known: dict[tuple[int, int], tuple[int, str] | None] = {}
        for table in TABLES:
            expired_files(self.log_dir, table, before, suffix=self.suffix, known=known)
        deleted: list[Path] = []
        with self._lock:
            for table in TABLES:
                for path in expired_files(self.log_dir, table, before, suffix=self.suffix,
                                          can_delete=self.can_delete, known=known, read=False):
                    path.unlink(missing_ok=True)
                    deleted.append(path)
        return deleted

    def _rotated_numbers(self, table: str) -> list[int]:
        pattern = _name_re(table)
        found = []
        for entry in self.log_dir.iterdir():
            m = pattern.match(entry.name)
            if m and m["n"] and (m["suffix"] or "") == self.suffix:
                found.append(int(m["n"]))
        return found


def _rows_in(path: Path, table: str, on_error: OnError | None) -> Iterator[LogRow]:
    """Rows of one file; a torn line or a file with another header is skipped (and reported).

    A file written before a column was appended (an older header, see csv_codec.row_decoder)
    is read by column name, the new column None. Each physical line is parsed on its own (rows
    never span lines), so a torn line with an open quote cannot swallow the good rows after it.
    """
    row_type = TABLES[table]
    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as f:
            first = f.readline()
            try:
                decode = row_decoder(row_type, next(csv.reader([first]), []))
            except (ValueError, csv.Error):
                if on_error is not None:
                    on_error(path, ValueError(f"{path.name}: header is not the {table} columns"))
                return
            for line in f:
                try:
                    yield decode(next(csv.reader([line])))
                except (ValueError, TypeError, csv.Error) as exc:
                    if on_error is not None:
                        on_error(path, exc)
    except OSError as exc:
        if on_error is not None:
            on_error(path, exc)


Extents = dict[tuple[int, int], "tuple[int, str] | None"]  # (inode, size) -> file_extent


def expired_files(
    log_dir: str | os.PathLike[str], table: str, before: str | None, *,
    suffix: str | None = None, can_delete: CanDelete = _always,
    known: Extents | None = None, read: bool = True,
) -> list[Path]:
    """Rotated files of `table` (one worker's `suffix`, or every worker's) whose newest row was
    created before `before` and that `can_delete` lets go (log/core/retention.py decides).
    `known` caches what files hold by (inode, size); with read=False a file not in it is left."""
    if before is None or not Path(log_dir).is_dir():
        return []
    known = {} if known is None else known
    pattern, found = _name_re(table), []
    for entry in sorted(Path(log_dir).iterdir()):
        m = pattern.match(entry.name)
        if m is None or not m["n"] or (suffix is not None and (m["suffix"] or "") != suffix):
            continue
        try:
            st = entry.stat()
        except OSError:
            continue
        key = (st.st_ino, st.st_size)
        if key not in known:
            if not read:
                continue
            known.update(_extent(entry))
        extent = known.get(key)
        if csv_file_expired(int(m["n"]), extent, before) and extent is not None and can_delete(table, extent[0]):
            found.append(entry)
    return found


def _extent(path: Path) -> Extents:
    """{(inode, size): file_extent} of the file open at `path` (the inode read, even if renamed meanwhile)."""
    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as f:
            st = os.fstat(f.fileno())
            return {(st.st_ino, st.st_size): file_extent(f)}
    except OSError:
        return {}


def csv_files(log_dir: str | os.PathLike[str], table: str) -> dict[str, list[Path]]:
    """{suffix: [files oldest first]} for every worker suffix found in log_dir."""
    pattern = _name_re(table)
    groups: dict[str, list[tuple[int, Path]]] = {}
    for entry in Path(log_dir).iterdir():
        m = pattern.match(entry.name)
        if m:
            # Rotated files are older than the current one (n=0); a higher n is older still.
            groups.setdefault(m["suffix"] or "", []).append((int(m["n"] or 0), entry))
    return {s: [p for _, p in sorted(files, reverse=True)] for s, files in sorted(groups.items())}


def read_rows(log_dir: str | os.PathLike[str], table: str, *, on_error: OnError | None = None) -> Iterator[LogRow]:
    """Every row of a table across rotated files and worker suffixes, oldest first.

    Each worker's files are read oldest to newest; workers' streams are merged by id (ids are
    time-ordered), so the result is in time order up to small in-flight reorderings.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    if not Path(log_dir).is_dir():
        return iter(())
    streams = [
        (row for path in files for row in _rows_in(path, table, on_error))
        for files in csv_files(log_dir, table).values()
    ]
    return heapq.merge(*streams, key=lambda row: row.id)
