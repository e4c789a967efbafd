"""The write-ahead record: an answered request's row is on disk before its response is passed on.

Rows wait in memory for the sinks' batch (200 ms / 500 rows). A process killed in that window
(kill -9, an OOM kill, a second signal during shutdown) would lose the rows of requests it had
already answered. So, just before the final response message goes to the server, the capture
layer hands the request's raw material (log/core/captured.py, its row ids included) to
`WriteAhead.append_answered`: one frame (log/core/wal_codec.py) copied into the file in LOG_DIR
through a shared memory map. No fsync: the page cache survives a process crash (not a power
cut: then the CSV rows of the last seconds are at the same risk). Task rows go through
`append_task` the same way.

Why a map and not write(2): a copy into mapped pages is no system call, and the thread keeps
the GIL, so a response never waits for a background thread that took the GIL during the write
(BENCHMARKS.md has the numbers). The pages are the file's page cache, exactly what write(2)
would have filled: a killed process leaves them to the kernel, which writes them out. The
segment's blocks are reserved up front (posix_fallocate), so a full disk fails when a segment
is opened (counted, the request goes on) and never as a fault on a mapped page. The unused
tail of a segment is zeros; a sealed segment is cut to the bytes written.

Files: LOG_DIR/wal.w<worker id>.<seq>.log, a new segment every SEGMENT_SECONDS (or
SEGMENT_BYTES). A sealed segment is deleted once every row it holds has reached every sink: its
rows have all been handed to the fan-out (`release`, per answered row), then a mark of the
fan-out's lanes is taken and the segment goes when the lanes have written up to it. A graceful
shutdown that wrote everything leaves no file. Past MAX_BYTES the oldest segments go anyway
(counted: a sink that stays down must not fill the disk).

Liveness: a writer holds an exclusive flock on LOG_DIR/wal.w<worker id>.lock for its life; the
kernel lets it go the moment the process dies, kill -9 included (a worker-id lease waits out its
ttl). Where the file system has no locks, the leases decide (Tracing passes `ended_by_lease`).

Recovery (`claim` + `read_records`, called by Tracing.open): the files of processes that ended
are renamed to this process's name (an atomic claim: two starting workers never take the same
file) and read; the last record of an id wins, a torn tail is ignored. `csv_ids` says which of their ids the CSV files
already hold, so a row reaches the CSV once; the log database ignores ids it has.
"""

from __future__ import annotations

import csv
import fcntl
import logging
import mmap
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from log.core.captured import Captured
from log.core.csv_codec import row_decoder
from log.core.ids import SEQUENCE_BITS, WORKER_BITS
from log.core.rows import TABLES, TaskProgressLog
from log.core.wal_codec import decode_frames, decode_record, encode_answered, encode_task
from log.sinks.csv_sink import csv_files

logger = logging.getLogger("log.wal")

SEGMENT_SECONDS = 1.0
SEGMENT_BYTES = 4 * 1024 * 1024
MAX_BYTES = 256 * 1024 * 1024
OWN_LOCK_WAIT = 2.0  # seconds a writer waits for its lock file while a claim holds it
# Rows reach a CSV file in about the order of their ids, not exactly (ids are taken when the
# response completes, rows appended when the batch is written): the scan of a CSV file's tail
# for recovered ids goes this far (in id time, 10 minutes) below the lowest of them.
CSV_SCAN_MARGIN_IDS = 600_000 << (WORKER_BITS + SEQUENCE_BITS)

_NAME = re.compile(r"^wal\.w(?P<worker>\d+)\.(?P<seq>\d+)\.log$")
_LOCK_NAME = re.compile(r"^wal\.w(?P<worker>\d+)\.lock$")
Mark = Any  # the fan-out's opaque "written up to here" mark


def wal_files(directory: Path) -> list[tuple[int, int, Path]]:
    """(seq, worker id, path) of every write-ahead file in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append((int(m["seq"]), int(m["worker"]), entry))
    return sorted(found)


def lock_path(directory: Path, worker_id: int) -> Path:
    return directory / f"wal.w{worker_id}.lock"


_NO_LOCKS = -1  # the file system cannot lock


def try_lock(path: Path) -> int | None:
    """An fd holding the exclusive lock on the file `path` names; None while a live process
    holds it; _NO_LOCKS where locks are not supported.

    A lock file is deleted only by the holder of its lock (a claim, a clean close). A process
    that opened the file just before and locked it just after would hold a lock on a file no
    longer in the folder: invisible to the next claim, which would take that live process's
    files. So a lock counts only while `path` still names the locked file; else open it anew."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError:
            return _NO_LOCKS
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            os.close(fd)
            return _NO_LOCKS
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass  # deleted by the holder we waited out: open the path again
        except OSError:
            os.close(fd)
            return _NO_LOCKS
        os.close(fd)


def hold_lock(path: Path, wait: float = OWN_LOCK_WAIT) -> int | None:
    """A writer's own lock (try_lock), waiting up to `wait` seconds while another process holds
    it: a starting worker's claim holds an ended worker's lock file while it renames that
    worker's files, and that worker id's new writer may be starting at that moment (flock has
    no timed wait, hence the polling). None past `wait`: a live process has this worker id."""
    deadline = time.monotonic() + wait
    while True:
        fd = try_lock(path)
        if fd is not None or time.monotonic() > deadline:
            return fd
        time.sleep(0.01)


def _reserve(fd: int, size: int) -> None:
    """Give the file `size` bytes of disk now (a full disk raises OSError here, not later)."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None:  # macOS: no reservation, a sparse file
        os.ftruncate(fd, size)
    else:
        fallocate(fd, 0, size)


class _Segment:
    __slots__ = ("path", "seq", "fd", "map", "size", "records", "open", "opened_at", "mark")

    def __init__(
        self, path: Path, seq: int, fd: int | None, size: int, opened_at: float, map: mmap.mmap | None = None
    ) -> None:
        self.path, self.seq, self.fd, self.size = path, seq, fd, size
        self.map = map  # the writable segment's mapping; None once sealed (and for recovered files)
        self.records = 0
        self.open = 0  # answered records not yet handed to the fan-out
        self.opened_at = opened_at
        self.mark: Mark = None


class WriteAhead:
    def __init__(
        self, directory: Path, worker_id: int, *, clock: Callable[[], float] = time.monotonic,
        segment_seconds: float = SEGMENT_SECONDS, segment_bytes: int = SEGMENT_BYTES, max_bytes: int = MAX_BYTES,
    ) -> None:
        self.directory, self.worker_id = Path(directory), worker_id
        self._clock = clock
        self.segment_seconds, self.segment_bytes, self.max_bytes = segment_seconds, segment_bytes, max_bytes
        self._lock = threading.Lock()  # task rows may come from worker threads
        self._sealed: list[_Segment] = []  # oldest first
        self._current: _Segment | None = None
        self._pending: dict[int, _Segment] = {}  # answered row id -> segment of its first record
        self.c = dict.fromkeys(("records", "bytes", "segments_deleted", "segments_dropped", "write_errors"), 0)
        self._gone_records = self._gone_bytes = 0  # of segments no longer held
        self.closed = False
        self._held = hold_lock(lock_path(self.directory, worker_id))
        if self._held is None:
            logger.warning("another live process writes the write-ahead record of worker id %d", worker_id)

    # -- the request path ------------------------------------------------------------------

    def append_answered(self, captured: Captured) -> None:
        """One frame, one copy into the mapped segment (before the final response message is passed on)."""
        data = encode_answered(captured)
        with self._lock:
            if self.closed:
                return
            seg = self._write(data)
            if captured.row_id not in self._pending:
                self._pending[captured.row_id] = seg
                seg.open += 1

    def release(self, row_id: int) -> None:
        """The answered row `row_id` has been handed to the fan-out (its record may go once written)."""
        seg = self._pending.pop(row_id, None)
        if seg is not None:
            seg.open -= 1

    def append_task(self, row: TaskProgressLog, emit: Callable[[TaskProgressLog], None]) -> None:
        """The task row's frame, then emit(row), under one lock: a segment's mark is only taken
        once every row it holds is in the fan-out."""
        data = encode_task(row)
        with self._lock:
            if not self.closed:
                self._write(data)
            emit(row)

    def _write(self, data: bytes) -> _Segment:
        seg = self._current
        size = len(data)
        if seg is None or seg.map is None or seg.size + size > len(seg.map):
            try:
                seg = self._new_segment(size)
            except OSError:
                self.c["write_errors"] += 1
                raise
        start = seg.size
        seg.map[start : start + size] = data
        seg.size = start + size
        seg.records += 1
        return seg

    def _new_segment(self, need: int) -> _Segment:
        """Seal the current segment (if any) and open the next, with room for at least `need`
        bytes (called under the lock)."""
        old, self._current = self._current, None
        if old is not None:
            self._seal(old)
            self._sealed.append(old)
        last = max((s.seq for s in self._sealed), default=0)
        seq = max(time.time_ns(), last + 1)
        path = self.directory / f"wal.w{self.worker_id}.{seq}.log"
        capacity = -(-max(self.segment_bytes, need) // mmap.PAGESIZE) * mmap.PAGESIZE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            _reserve(fd, capacity)
            mapped = mmap.mmap(fd, capacity)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._current = _Segment(path, seq, fd, 0, self._clock(), mapped)
        return self._current

    def _seal(self, seg: _Segment) -> None:
        """No more writes to `seg`: unmap it and cut the file to the bytes written."""
        if seg.map is not None:
            seg.map.close()
            seg.map = None
        if seg.fd is not None:
            try:
                os.ftruncate(seg.fd, seg.size)
            except OSError as exc:  # the zeros after the last frame are read as the end anyway
                logger.warning("could not trim %s: %s", seg.path.name, exc)
            os.close(seg.fd)
            seg.fd = None

    # -- checkpoints (on the event loop, a few times a second) --------------------------------

    def adopt(self, paths: Iterable[Path], mark: Mark) -> None:
        """Recovered files, their rows all handed to the fan-out: deleted once `mark` is written."""
        for path in paths:
            m = _NAME.match(path.name)
            seg = _Segment(path, int(m["seq"]) if m else 0, None, path.stat().st_size, self._clock())
            seg.mark = mark
            self._sealed.append(seg)
        self._sealed.sort(key=lambda s: s.seq)

    def checkpoint(self, mark: Callable[[], Mark], written: Callable[[Mark], bool]) -> None:
        """Seal the current segment when it is old or big enough; delete the sealed segments,
        oldest first, whose rows every sink has written."""
        with self._lock:
            cur = self._current
            if cur is not None and cur.size and (
                self._clock() - cur.opened_at >= self.segment_seconds or cur.size >= self.segment_bytes
            ):
                self._seal(cur)
                self._sealed.append(cur)
                self._current = None
            sealed = list(self._sealed)
        for seg in sealed:
            if seg.mark is None and seg.open <= 0:
                seg.mark = mark()
        while self._sealed:
            seg = self._sealed[0]
            if seg.mark is None or not written(seg.mark):
                break
            self._delete(seg, "segments_deleted")
        total = sum(s.size for s in self._sealed)
        while self._sealed and total > self.max_bytes:
            seg = self._sealed[0]
            total -= seg.size
            logger.warning("write-ahead record over %d bytes: %s deleted before its rows reached every sink",
                           self.max_bytes, seg.path.name)
            self._delete(seg, "segments_dropped")

    def _delete(self, seg: _Segment, counter: str) -> None:
        self._sealed.remove(seg)
        self._gone_records += seg.records
        self._gone_bytes += seg.size
        for row_id in [i for i, s in self._pending.items() if s is seg]:
            del self._pending[row_id]
        try:
            seg.path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("could not delete %s: %s", seg.path.name, exc)
        self.c[counter] += 1

    def close(self, everything_written: bool) -> None:
        """At shutdown: every file goes when the sinks wrote every row; otherwise they stay for
        the next start to recover."""
        with self._lock:
            self.closed = True
            cur, self._current = self._current, None
            if cur is not None:
                self._seal(cur)
                self._sealed.append(cur)
            if everything_written:
                for seg in list(self._sealed):
                    self._delete(seg, "segments_deleted")
            if self._held is not None and self._held != _NO_LOCKS:
                if everything_written and not self._sealed:
                    lock_path(self.directory, self.worker_id).unlink(missing_ok=True)
                os.close(self._held)
                self._held = None

    def stats(self) -> dict[str, int]:
        segments = [*self._sealed, *([self._current] if self._current is not None else [])]
        size = sum(s.size for s in segments)
        return {
            **self.c, "records": self._gone_records + sum(s.records for s in segments),
            "bytes": self._gone_bytes + size, "segments": len(segments), "size": size,
        }


# -- recovery -------------------------------------------------------------------------------------


def claim(directory: Path, worker_id: int, ended_by_lease: Callable[[int], bool]) -> list[Path]:
    """Rename the files of workers that ended (and this worker id's own, left by a process that
    held it before) to this worker's name; the claimed paths, oldest first. A worker ended when
    its lock is free (held here while its files are renamed), or, where there are no locks, when
    `ended_by_lease` says so. A file another starting process claimed first is skipped."""
    owners: dict[int, list[tuple[int, Path]]] = {}
    for seq, owner, path in wal_files(directory):
        owners.setdefault(owner, []).append((seq, path))
    for entry in directory.glob("wal.w*.lock"):  # a killed process's lock file with no files left
        m = _LOCK_NAME.match(entry.name)
        if m and int(m["worker"]) != worker_id:
            owners.setdefault(int(m["worker"]), [])
    claimed = []
    for owner, files in owners.items():
        held = None
        if owner != worker_id:
            held = try_lock(lock_path(directory, owner))
            if held is None or (held == _NO_LOCKS and not ended_by_lease(owner)):
                continue  # alive
        try:
            for seq, path in files:
                target = directory / f"wal.w{worker_id}.{seq}.log"
                if target != path:
                    try:
                        if target.exists():
                            continue
                        os.rename(path, target)
                    except FileNotFoundError:  # claimed by another process first
                        continue
                claimed.append(target)
        finally:
            if held is not None and held != _NO_LOCKS:
                lock_path(directory, owner).unlink(missing_ok=True)
                os.close(held)
    return sorted(claimed, key=lambda p: int(_NAME.match(p.name)["seq"]))  # type: ignore[index]


class Recovered:
    """What the claimed files hold: the last record per id, in file order."""

    def __init__(self) -> None:
        self.answered: dict[int, Captured] = {}
        self.tasks: dict[int, TaskProgressLog] = {}
        self.torn_bytes = 0
        self.unreadable = 0

    def ids(self) -> list[int]:
        ids = [*self.answered, *self.tasks]
        ids += [c.crash_id for c in self.answered.values() if c.crash_id]
        return ids


def read_records(paths: Iterable[Path]) -> Recovered:
    out = Recovered()
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            logger.warning("could not read %s: %s", path.name, exc)
            continue
        payloads, torn = decode_frames(data)
        out.torn_bytes += torn
        for payload in payloads:
            try:
                record = decode_record(payload)
            except ValueError:
                out.unreadable += 1
                continue
            if isinstance(record, Captured):
                if record.row_id:
                    out.answered[record.row_id] = record
            else:
                out.tasks[record.id] = record
    return out


def csv_ids(log_dir: Path, wanted: Iterable[int]) -> dict[str, set[int]]:
    """Per table, which of the `wanted` ids the CSV files (every worker suffix) hold as a row a
    reader decodes. Each file is read from its end backwards until the ids are older than the
    lowest wanted one by CSV_SCAN_MARGIN_IDS; only lines of a wanted id are decoded."""
    wanted = set(wanted)
    found: dict[str, set[int]] = {table: set() for table in TABLES}
    if not wanted or not log_dir.is_dir():
        return found
    floor = min(wanted) - CSV_SCAN_MARGIN_IDS
    for table in TABLES:
        for files in csv_files(log_dir, table).values():
            for path in reversed(files):  # newest first
                if _tail_ids(path, table, floor, wanted, found[table]):
                    break
    return found


def _tail_ids(path: Path, table: str, floor: int, wanted: set[int], into: set[int], block: int = 1 << 20) -> bool:
    """Add the wanted ids of `path`'s rows, last line first, until an id is below `floor` (then
    True). A row is one physical line whose first cell is its id; it counts when it decodes
    (a line torn by a crash usually does not: readers skip it too)."""
    try:
        with path.open("rb") as f:
            header = f.readline().decode("utf-8", "replace")
            try:
                decode = row_decoder(TABLES[table], next(csv.reader([header]), []))
            except (ValueError, csv.Error):
                return False
            pos = f.seek(0, os.SEEK_END)
            rest = b""
            while pos > 0:
                n = min(block, pos)
                pos -= n
                f.seek(pos)
                lines = (f.read(n) + rest).split(b"\n")
                rest = lines.pop(0) if pos > 0 else b""
                for line in reversed(lines):
                    head = line.split(b",", 1)[0]
                    if not head.isdigit():
                        continue
                    row_id = int(head)
                    if row_id < floor:
                        return True
                    if row_id in wanted and _decodes(decode, line):
                        into.add(row_id)
    except OSError as exc:
        logger.warning("could not read %s: %s", path.name, exc)
    return False


def _decodes(decode: Callable[[list[str]], object], line: bytes) -> bool:
    try:
        decode(next(csv.reader([line.decode("utf-8", "replace")])))
    except (ValueError, TypeError, csv.Error, StopIteration):
        return False
    return True
