"""The embedded default: accounts and items in one SQLite file (WAL) under DATA_DIR.

Queries are short and indexed, so they run on the event loop thread with one connection;
only password hashing (deliberately slow) goes to a worker thread.

Sessions are rows (migration 002): the signed cookie carries a random id, the `sessions` table
its SHA-256. Every request resumes its session with one indexed lookup in the shared file, so a
logout in any worker process is seen by the very next request in every other one.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio.from_thread
import anyio.to_thread

from store.base import AuthError, Item, ItemInput, ItemPage, Session, StoreUnavailable, User
from store.migrate import migrate
from store.passwords import dummy_hash, hash_password, verify_password

INVALID_LOGIN = "Invalid email or password."
SESSION_MAX_AGE = 14 * 24 * 3600  # the cookie's default life (settings.session_max_age)
IMPORT_CHUNK = 5000
ITEM_COLUMNS = "id, name, description, quantity, created_at, updated_at"
SQLITE_BUSY, SQLITE_LOCKED = 5, 6


def wal_mode(conn: sqlite3.Connection, wait: float = 10.0) -> None:
    """PRAGMA journal_mode=WAL. Switching a new database needs the file to itself, and SQLite
    reports "database is locked" at once instead of calling the busy handler: workers opening a
    new database together (WEB_CONCURRENCY) try again until `wait` seconds have passed. Once the
    file is in WAL mode (it stays so), the pragma no longer needs that lock."""
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (SQLITE_BUSY, SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False)
    wal_mode(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    migrate(conn)
    return conn


BUSY = "The database is busy right now. Please try again in a moment."


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`with conn:` (commit, or roll back on error), where a write lock still held by another
    connection after busy_timeout is the app's 503 (StoreUnavailable), not a crash: it is load,
    not a fault of the request."""
    try:
        with conn:
            yield conn
    except sqlite3.OperationalError as exc:
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (SQLITE_BUSY, SQLITE_LOCKED):
            raise StoreUnavailable(BUSY) from exc
        raise


def session_digest(session_id: str) -> bytes:
    """What the sessions table stores for a cookie's session id."""
    return hashlib.sha256(session_id.encode()).digest()


def like_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SqliteStore:
    def __init__(
        self, path: Path, *, session_max_age: int = SESSION_MAX_AGE, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.conn = connect(path)
        self.session_max_age = session_max_age
        self.clock = clock

    async def close(self) -> None:
        self.conn.close()

    # accounts -----------------------------------------------------------------
    async def sign_up(self, email: str, password: str) -> Session | None:
        password_hash = await anyio.to_thread.run_sync(hash_password, password)
        try:
            with write_transaction(self.conn):
                # The first local account is the admin: local emails are unverified, so
                # ADMIN_EMAILS cannot be trusted here (grant others with `python -m cli grant-admin`).
                cur = self.conn.execute(
                    "INSERT INTO users (email, password_hash, is_admin)"
                    " VALUES (?, ?, NOT EXISTS (SELECT 1 FROM users))",
                    (email, password_hash),
                )
        except sqlite3.IntegrityError:
            raise AuthError("An account with this email already exists. Log in instead.") from None
        return self._start_session(self._user(cur.lastrowid))

    async def log_in(self, email: str, password: str) -> Session:
        row = self.conn.execute(
            "SELECT id, password_hash FROM users WHERE email = ?", (email,)
        ).fetchone()
        stored = row[1] if row else dummy_hash()
        ok = await anyio.to_thread.run_sync(verify_password, password, stored)
        if not (row and ok):
            raise AuthError(INVALID_LOGIN)
        return self._start_session(self._user(row[0]))

    def _start_session(self, user: User) -> Session:
        session_id = secrets.token_urlsafe(32)
        now = int(self.clock())
        with write_transaction(self.conn):
            # Expired rows go here, on the rare write path, not on every request.
            self.conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            self.conn.execute(
                "INSERT INTO sessions (id_hash, user_id, expires_at) VALUES (?, ?, ?)",
                (session_digest(session_id), int(user.id), now + self.session_max_age),
            )
        return Session(user=user, tokens={"sid": session_id})

    async def resume(self, session: Session) -> Session | None:
        """One indexed lookup: the session row still exists (not logged out), is not expired,
        and belongs to the cookie's user; the user's current email and admin flag come along."""
        session_id = session.tokens.get("sid", "")
        if not session_id:  # a cookie from before server-side sessions
            return None
        row = self.conn.execute(
            "SELECT u.id, u.email, u.is_admin FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.id_hash = ? AND s.expires_at > ?",
            (session_digest(session_id), int(self.clock())),
        ).fetchone()
        if row is None or str(row[0]) != session.user.id:
            return None
        user = User(id=str(row[0]), email=row[1], is_admin=bool(row[2]))
        return session if user == session.user else Session(user=user, tokens=session.tokens)

    async def log_out(self, session: Session) -> None:
        """Ends this session: its cookie, or any copy of it, is signed out from now on."""
        with write_transaction(self.conn):
            self.conn.execute(
                "DELETE FROM sessions WHERE id_hash = ?", (session_digest(session.tokens.get("sid", "")),)
            )

    async def log_out_everywhere(self, session: Session) -> None:
        """Ends every session of the session's user (all browsers and devices)."""
        with write_transaction(self.conn):
            self.conn.execute("DELETE FROM sessions WHERE user_id = ?", (int(session.user.id),))

    def _user(self, user_id: int | None) -> User:
        row = self.conn.execute(
            "SELECT id, email, is_admin FROM users WHERE id = ?", (user_id,)
        ).fetchone()
        return User(id=str(row[0]), email=row[1], is_admin=bool(row[2]))

    async def user_emails(self, user_ids: set[str]) -> dict[str, str]:
        """user id -> email for the ids that are accounts here (the log explorer shows users by
        email). Ids that are not integers (logged by another backend) are skipped."""
        ids = [int(i) for i in user_ids if i.isascii() and i.isdigit() and len(i) < 19]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(f"SELECT id, email FROM users WHERE id IN ({marks})", ids).fetchall()
        return {str(row[0]): row[1] for row in rows}

    async def user_id_for_email(self, email: str) -> str | None:
        """The account id of an email (the log explorer's user filter accepts either)."""
        row = self.conn.execute("SELECT id FROM users WHERE email = ?", (email.strip().lower(),)).fetchone()
        return str(row[0]) if row else None

    def grant_admin(self, email: str) -> bool:
        with write_transaction(self.conn):
            cur = self.conn.execute("UPDATE users SET is_admin = 1 WHERE email = ?", (email,))
        return cur.rowcount == 1

    # items ----------------------------------------------------------------------
    async def list_items(self, session: Session, q: str, page: int, per_page: int) -> ItemPage:
        where, args = "user_id = ?", [int(session.user.id)]
        if q:
            where += " AND (name LIKE ? ESCAPE '\\' OR description LIKE ? ESCAPE '\\')"
            args += [like_pattern(q)] * 2
        total = self.conn.execute(f"SELECT count(*) FROM items WHERE {where}", args).fetchone()[0]
        rows = self.conn.execute(
            f"SELECT {ITEM_COLUMNS} FROM items WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            [*args, per_page, (page - 1) * per_page],
        ).fetchall()
        return ItemPage(items=[Item(*r) for r in rows], total=total, page=page, per_page=per_page)

    async def get_item(self, session: Session, item_id: int) -> Item | None:
        row = self.conn.execute(
            f"SELECT {ITEM_COLUMNS} FROM items WHERE id = ? AND user_id = ?",
            (item_id, int(session.user.id)),
        ).fetchone()
        return Item(*row) if row else None

    async def create_item(self, session: Session, data: ItemInput) -> Item:
        with write_transaction(self.conn):
            row = self.conn.execute(
                f"INSERT INTO items (user_id, name, description, quantity) VALUES (?, ?, ?, ?)"
                f" RETURNING {ITEM_COLUMNS}",
                (int(session.user.id), data.name, data.description, data.quantity),
            ).fetchone()
        return Item(*row)

    async def create_items(
        self, session: Session, rows: list[ItemInput], progress: Callable[[int], None] | None = None
    ) -> int:
        """All rows in one transaction: every row is stored or none is.

        Runs in a worker thread on its own connection so the event loop keeps serving (progress
        polls included). The rows are first staged, chunk by chunk with progress, in a TEMP table
        of that connection, which takes no lock on the shared file; then one INSERT ... SELECT
        copies them into `items`. So the write lock is held only for that copy (tens of ms for
        50,000 rows), not for the whole import: the event loop's own writes (creates, sign-ins:
        short, on one connection with busy_timeout) wait briefly instead of blocking the loop
        until busy_timeout and failing with "database is locked". No progress callback runs while
        the lock is held: it waits for the event loop, which may itself be waiting on the lock.
        """
        uid = int(session.user.id)

        def insert_all() -> int:
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                conn.execute("CREATE TEMP TABLE import_rows (name TEXT, description TEXT, quantity INTEGER)")
                with conn:  # touches only the connection's temp database
                    for start in range(0, len(rows), IMPORT_CHUNK):
                        conn.executemany(
                            "INSERT INTO temp.import_rows (name, description, quantity) VALUES (?, ?, ?)",
                            [(r.name, r.description, r.quantity) for r in rows[start : start + IMPORT_CHUNK]],
                        )
                        done = min(len(rows), start + IMPORT_CHUNK)
                        if progress is not None and done < len(rows):
                            anyio.from_thread.run_sync(progress, done)
                with write_transaction(conn):  # the one short write transaction on the shared file, in file order
                    conn.execute(
                        "INSERT INTO items (user_id, name, description, quantity)"
                        " SELECT ?, name, description, quantity FROM temp.import_rows ORDER BY rowid",
                        (uid,),
                    )
            finally:
                conn.close()
            if progress is not None and rows:
                anyio.from_thread.run_sync(progress, len(rows))
            return len(rows)

        return await anyio.to_thread.run_sync(insert_all)

    async def update_item(self, session: Session, item_id: int, data: ItemInput) -> Item | None:
        with write_transaction(self.conn):
            row = self.conn.execute(
                "UPDATE items SET name = ?, description = ?, quantity = ?,"
                " updated_at = STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')"
                f" WHERE id = ? AND user_id = ? RETURNING {ITEM_COLUMNS}",
                (data.name, data.description, data.quantity, item_id, int(session.user.id)),
            ).fetchone()
        return Item(*row) if row else None

    async def delete_item(self, session: Session, item_id: int) -> bool:
        with write_transaction(self.conn):
            cur = self.conn.execute(
                "DELETE FROM items WHERE id = ? AND user_id = ?", (item_id, int(session.user.id))
            )
        return cur.rowcount == 1
