"""The CSV sink cannot write (disk full, LOG_DIR unusable, file size limit reached): requests
still succeed, the failure shows at /health and in the server's output, rows still reach
Turso, and once the disk is usable again the CSV catches up with every row exactly once.

The tests run as root in CI, where `chmod a-w` stops nothing, so the breakages are ones that
fail for root too: files that are /dev/full, a LOG_DIR below a regular file (ENOTDIR) and
RLIMIT_FSIZE on the server process (EFBIG part way through, after the sink opened fine).
"""

from __future__ import annotations

import collections
import os
import resource
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.reliability import (
    Remote,
    Result,
    app_process,
    async_wait_for,
    csv_rows,
    db_ids,
    run_load,
    scaled,
    signed_in,
)

pytestmark = [pytest.mark.reliability, pytest.mark.anyio]

FSIZE_LIMIT = 64 * 1024  # the app's own SQLite files stay well below it (no item writes)



class Breakage:
    """How the CSV directory is broken before start (`prepare`), and repaired (`repair`)."""

    def __init__(self, tmp_path: Path, kind: str) -> None:
        self.kind = kind
        self.log_dir = tmp_path / "logs"
        self.preexec_fn: Callable[[], None] | None = None
        self.env: dict[str, str] = {}
        self.expect_error = {
            "disk_full": "No space left on device",
            "not_a_directory": "Not a directory",
            "file_size_limit": "File too large",
            "read_only_dir": "Permission denied",
        }[kind]

    def prepare(self) -> None:
        if self.kind == "disk_full":
            self.log_dir.mkdir()
            for table in ("api_logs", "task_progress_logs"):
                (self.log_dir / f"{table}.csv").symlink_to("/dev/full")
        elif self.kind == "not_a_directory":
            self.log_dir.parent.joinpath("blocker").write_text("a file, not a directory\n")
            self.log_dir = self.log_dir.parent / "blocker" / "logs"
        elif self.kind == "file_size_limit":
            # Only list/search requests run in this variant, so the app's own SQLite file does
            # not grow; full HTML bodies make each CSV row big, so the limit comes quickly.
            self.env = {"LOG_HTML_BODIES": "full"}
            self.preexec_fn = lambda: resource.setrlimit(
                resource.RLIMIT_FSIZE, (FSIZE_LIMIT, resource.RLIM_INFINITY)
            )
        elif self.kind == "read_only_dir":
            self.log_dir.mkdir()
            self.log_dir.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)

    def repair(self, pid: int) -> None:
        if self.kind == "disk_full":
            for link in self.log_dir.iterdir():
                link.unlink()
        elif self.kind == "not_a_directory":
            self.log_dir.parent.unlink()
        elif self.kind == "file_size_limit":
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        elif self.kind == "read_only_dir":
            self.log_dir.chmod(0o755)


# chmod a-w only stops a process that is not root; as root it would not break anything.
KINDS = ["disk_full", "not_a_directory", "file_size_limit"] + (["read_only_dir"] if os.geteuid() != 0 else [])


@pytest.mark.timeout(150)
@pytest.mark.parametrize("kind", KINDS)
async def test_csv_sink_failure_is_reported_and_loses_nothing(tmp_path: Path, kind: str) -> None:
    breakage = Breakage(tmp_path, kind)
    breakage.prepare()
    duration = scaled(2.0, minimum=1.0)
    with Remote(tmp_path / "turso.db") as remote:
        env = {"LOG_SINKS": "csv,turso", "LOG_DIR": str(breakage.log_dir), "TURSO_DATABASE_URL": remote.url,
               **breakage.env}
        with app_process(tmp_path / "data", env, preexec_fn=breakage.preexec_fn) as app:
            async with signed_in(app.url) as client:
                results: list[Result] = []
                mix = ("list", "search") if kind == "file_size_limit" else ("list", "create", "search")
                await run_load(client, rate=50, duration=duration, results=results, mix=mix)
                served = len(results) + 3  # + the sign-up's three requests
                assert [r for r in results if r.status != 200] == []

                # Turso has every row while the CSV sink is failing.
                await async_wait_for(lambda: len(db_ids(remote.db_path)) >= served, 30, "rows in Turso")
                csv = await async_wait_for(
                    lambda: (s := app.sink_stats("csv"))["failed_batches"] > 0 and s, 30, "a failed CSV batch"
                )
                assert breakage.expect_error in csv["last_error"], csv
                assert csv["dropped"] == 0, csv
                if kind != "disk_full":  # (reading /dev/full would never end)
                    assert len(csv_rows(breakage.log_dir)) < served  # the breakage really stopped it
                await async_wait_for(lambda: "log sink csv failing" in app.output(), 10, "the report in the output")
                assert breakage.expect_error in app.output()

                # Space is back: the CSV catches up with the rows it kept queued.
                breakage.repair(app.process.pid)
                await async_wait_for(lambda: len(csv_rows(breakage.log_dir)) >= served, 45, "CSV to catch up")
                assert app.sink_stats("csv")["queued"] == 0

    csv_ids = [row.id for row in csv_rows(breakage.log_dir)]
    assert [i for i, n in collections.Counter(csv_ids).items() if n > 1] == []
    assert len(csv_ids) == served
    assert sorted(csv_ids) == sorted(db_ids(remote.db_path))
