"""A throwaway PostgreSQL cluster from Debian's packages, for tests only.

initdb into a temp dir, serve on a unix socket inside that dir (no TCP), wait until pg_isready
says yes, remove everything afterwards. PostgreSQL refuses to run as root, so as root the
server-side programs run as the `postgres` user (the temp dir is chowned to it).

SQL goes through the `psql` CLI: no driver package is needed, and psql's own `:'name'`
variable interpolation quotes literals safely, so callers never build SQL literals by hand.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin (Debian's layout)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not candidates:
        raise RuntimeError("PostgreSQL not installed: apt-get install -y postgresql")
    return Path(candidates[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PsqlError(Exception):
    """psql failed; `sqlstate` is parsed from the verbose error line when present."""

    def __init__(self, stderr: str) -> None:
        match = re.search(r"ERROR:\s+([0-9A-Z]{5}):\s+(.*)", stderr)
        self.sqlstate = match.group(1) if match else None
        self.message = match.group(2).strip() if match else stderr.strip()
        super().__init__(stderr.strip())


class PgCluster:
    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.datadir = root / "data"
        self.sockdir = root / "sock"
        self.port = port

    def _as_postgres(self, argv: list[str]) -> list[str]:
        # As root the server programs must drop to the postgres user; as anyone else they
        # already run unprivileged.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def start(self) -> None:
        self.sockdir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockdir, "postgres", "postgres")
        run = lambda argv: subprocess.run(  # noqa: E731
            self._as_postgres(argv), check=True, capture_output=True, text=True
        )
        run([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
        opts = (
            f"-p {self.port} -k {self.sockdir} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l",
             str(self.root / "server.log"), "-o", opts, "start"])
        self._wait_ready(deadline=time.monotonic() + 30)

    def _wait_ready(self, deadline: float) -> None:
        while True:
            done = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", str(self.sockdir), "-p", str(self.port)],
                capture_output=True,
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                log = (self.root / "server.log").read_text(errors="replace")
                raise RuntimeError(f"PostgreSQL did not become ready:\n{log}")
            time.sleep(0.05)  # polling a condition, with a deadline

    def stop(self) -> None:
        subprocess.run(
            self._as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.datadir),
                               "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )

    def psql_argv(self, db: str, user: str, variables: Mapping[str, str]) -> list[str]:
        argv = [str(self.bindir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                "-v", "VERBOSITY=verbose", "-h", str(self.sockdir), "-p", str(self.port),
                "-U", user, "-d", db]
        for name, value in variables.items():
            argv += ["-v", f"{name}={value}"]
        return argv

    def psql(
        self,
        sql: str,
        *,
        db: str = "postgres",
        user: str = "postgres",
        variables: Mapping[str, str] | None = None,
    ) -> str:
        """Run `sql` (may reference :'name' variables) and return stdout. Raises PsqlError."""
        done = subprocess.run(
            self.psql_argv(db, user, variables or {}),
            input=sql, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise PsqlError(done.stderr)
        return done.stdout

    def create_database(self, name: str) -> None:
        self.psql("create database :\"name\"", variables={"name": name})


@contextlib.contextmanager
def running_cluster() -> Iterator[PgCluster]:
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    cluster = PgCluster(find_bindir(), root, free_port())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
