"""The embedded SQLite store: migrations, WAL, accounts, per-user items, search, pages."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from cli import main
from settings import Settings
from store.base import AuthError, ItemInput, Session, StoreUnavailable, User
from store.migrate import MIGRATIONS_DIR, migrate, pending, statements
from store.passwords import verify_password
from store.sqlite import IMPORT_CHUNK, INVALID_LOGIN, SqliteStore, connect, like_pattern, session_digest

PASSWORD = "correct horse battery"
LATEST = max(n for n, _ in pending(0))



@pytest.fixture
async def store(tmp_path: Path):
    s = SqliteStore(tmp_path / "app.db")
    yield s
    await s.close()


def fake_session(user_id: int) -> Session:
    # Items only look at the id; skip scrypt where the account itself is not under test.
    return Session(user=User(id=str(user_id), email=f"u{user_id}@example.com"))


def add_user(store: SqliteStore, email: str) -> Session:
    with store.conn:
        cur = store.conn.execute(
            "INSERT INTO users (email, password_hash) VALUES (?, 'scrypt$unused')", (email,)
        )
    return fake_session(cur.lastrowid)


def item(name: str = "Widget", description: str = "", quantity: int = 1) -> ItemInput:
    return ItemInput(name=name, description=description, quantity=quantity)


# migrations -------------------------------------------------------------------------------


def test_migrations_run_once_and_set_user_version(tmp_path: Path):
    path = tmp_path / "app.db"
    first = connect(path)
    assert first.execute("PRAGMA user_version").fetchone()[0] == LATEST
    first.close()
    # A second start must not re-run 001 (CREATE TABLE would fail).
    second = connect(path)
    assert second.execute("PRAGMA user_version").fetchone()[0] == LATEST
    assert migrate(second) == LATEST
    tables = {r[0] for r in second.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "items"} <= tables
    second.close()


def _open_at_once(path: Path, barrier, results) -> None:
    barrier.wait()
    try:
        connect(path).close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which shows it
        results.put(repr(exc))


def test_workers_opening_a_new_database_together_all_start(tmp_path: Path):
    # WEB_CONCURRENCY workers open one new app.db at the same moment: switching it to WAL and
    # migrating it must not fail in any of them ("database is locked", "table users already
    # exists" both happened when the version was read before the write lock was taken).
    ctx = multiprocessing.get_context("spawn")
    outcomes = []
    for attempt in range(3):
        path = tmp_path / f"app{attempt}.db"
        barrier, results = ctx.Barrier(4), ctx.Queue()
        workers = [ctx.Process(target=_open_at_once, args=(path, barrier, results)) for _ in range(4)]
        for w in workers:
            w.start()
        outcomes += [results.get(timeout=60) for _ in workers]
        for w in workers:
            w.join(timeout=60)
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA user_version").fetchone()[0] == LATEST
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert outcomes == ["ok"] * 12


def test_migration_statements_split_whole():
    script = "CREATE TABLE a (x); INSERT INTO a VALUES (';');\n-- note\nCREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END;\n"
    conn = sqlite3.connect(":memory:")
    parts = statements(script)
    assert len(parts) == 3 and parts[2].strip().startswith("-- note")
    for sql in parts:
        conn.execute(sql)
    assert conn.execute("SELECT x FROM a").fetchall() == [(";",)]


def test_pending_is_ordered_by_number(tmp_path: Path):
    for name in ["010_c.sql", "002_b.sql", "001_a.sql", "notes.txt", "x_01.sql"]:
        (tmp_path / name).write_text("")
    assert [n for n, _ in pending(0, tmp_path)] == [1, 2, 10]
    assert [n for n, _ in pending(2, tmp_path)] == [10]
    assert pending(10, tmp_path) == []
    assert [n for n, _ in pending(0)] == sorted(n for n, _ in pending(0, MIGRATIONS_DIR))


def test_new_migration_applies_only_the_new_file(tmp_path: Path):
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "001_a.sql").write_text("CREATE TABLE log (n INTEGER); INSERT INTO log VALUES (1);")
    conn = sqlite3.connect(tmp_path / "db")
    assert migrate(conn, migrations) == 1
    (migrations / "002_b.sql").write_text("INSERT INTO log VALUES (2);")
    assert migrate(conn, migrations) == 2
    assert migrate(conn, migrations) == 2
    assert [r[0] for r in conn.execute("SELECT n FROM log ORDER BY n")] == [1, 2]
    conn.close()


def test_failed_migration_leaves_previous_version(tmp_path: Path):
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "001_a.sql").write_text("CREATE TABLE a (x);")
    (migrations / "002_b.sql").write_text("CREATE TABLE b (x); INSERT INTO no_such_table VALUES (1);")
    conn = sqlite3.connect(tmp_path / "db")
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, migrations)
    # Whatever the connection does next (any `with conn:` commits) must not persist half of 002.
    conn.commit()
    conn.close()
    check = sqlite3.connect(tmp_path / "db")
    assert check.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"a"}
    # Once fixed, 002 applies cleanly.
    (migrations / "002_b.sql").write_text("CREATE TABLE b (x);")
    assert migrate(check, migrations) == 2
    check.close()


@pytest.mark.anyio
async def test_wal_mode(store: SqliteStore):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


# accounts -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_first_account_is_admin_later_ones_not(store: SqliteStore):
    first = await store.sign_up("first@example.com", PASSWORD)
    second = await store.sign_up("second@example.com", PASSWORD)
    assert first is not None and second is not None
    assert first.user.is_admin is True
    assert second.user.is_admin is False
    assert first.user.email == "first@example.com"
    assert first.user.id != second.user.id


@pytest.mark.anyio
async def test_password_never_stored_in_clear(store: SqliteStore):
    await store.sign_up("a@example.com", PASSWORD)
    (stored,) = store.conn.execute("SELECT password_hash FROM users").fetchone()
    assert stored.startswith("scrypt$16384$8$1$")
    assert PASSWORD not in stored
    assert verify_password(PASSWORD, stored)
    # nowhere else in the row either
    row = store.conn.execute("SELECT * FROM users").fetchone()
    assert all(PASSWORD not in str(v) for v in row)


@pytest.mark.anyio
async def test_duplicate_email_is_refused(store: SqliteStore):
    await store.sign_up("dup@example.com", PASSWORD)
    with pytest.raises(AuthError, match="already exists"):
        await store.sign_up("DUP@example.com", "another password")
    assert store.conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1


@pytest.mark.anyio
async def test_log_in_and_generic_failures(store: SqliteStore):
    created = await store.sign_up("me@example.com", PASSWORD)
    session = await store.log_in("me@example.com", PASSWORD)
    assert session.user == created.user
    with pytest.raises(AuthError) as wrong:
        await store.log_in("me@example.com", "wrong password")
    with pytest.raises(AuthError) as unknown:
        await store.log_in("nobody@example.com", PASSWORD)
    assert str(wrong.value) == str(unknown.value) == INVALID_LOGIN


@pytest.mark.anyio
async def test_resume(store: SqliteStore, tmp_path: Path):
    await store.sign_up("admin@example.com", PASSWORD)
    session = await store.sign_up("later@example.com", PASSWORD)
    assert await store.resume(session) == session
    # Another process (the CLI) grants admin: the next resume sees it.
    assert main(["grant-admin", "later@example.com"], settings=Settings(data_dir=tmp_path)) == 0
    resumed = await store.resume(session)
    assert resumed is not None and resumed.user.is_admin is True
    # A deleted account is signed out.
    with store.conn:
        store.conn.execute("DELETE FROM users WHERE id = ?", (int(session.user.id),))
    assert await store.resume(session) is None


@pytest.mark.anyio
async def test_sessions_are_rows_that_end_on_logout_or_expiry(tmp_path: Path):
    now = [1_000_000.0]
    store = SqliteStore(tmp_path / "app.db", session_max_age=100, clock=lambda: now[0])
    try:
        first = await store.sign_up("me@example.com", PASSWORD)
        assert await store.resume(first) == first
        (stored,) = store.conn.execute("SELECT id_hash FROM sessions").fetchall()
        assert stored == (session_digest(first.tokens["sid"]),)  # the id itself is not stored
        # The id alone is not enough: it must belong to the cookie's user.
        someone = Session(user=User(id="999", email="x@example.com"), tokens=first.tokens)
        assert await store.resume(someone) is None
        assert await store.resume(Session(user=first.user)) is None  # a cookie without an id
        now[0] += 100
        assert await store.resume(first) is None  # expired with the cookie's max age
        second = await store.log_in("me@example.com", PASSWORD)
        # Logging in prunes expired rows.
        assert store.conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1
        third = await store.log_in("me@example.com", PASSWORD)
        await store.log_out(second)
        assert await store.resume(second) is None and await store.resume(third) == third
        await store.log_out_everywhere(third)
        assert await store.resume(third) is None
    finally:
        await store.close()


# items ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_item_crud(store: SqliteStore):
    me = add_user(store, "me@example.com")
    created = await store.create_item(me, item("Lamp", "desk lamp", 2))
    assert (created.name, created.description, created.quantity) == ("Lamp", "desk lamp", 2)
    assert created.created_at and created.updated_at >= created.created_at
    assert await store.get_item(me, created.id) == created

    updated = await store.update_item(me, created.id, item("Lamp 2", "", 0))
    assert updated is not None
    assert (updated.id, updated.name, updated.description, updated.quantity) == (created.id, "Lamp 2", "", 0)
    assert updated.created_at == created.created_at
    assert await store.get_item(me, created.id) == updated

    assert await store.delete_item(me, created.id) is True
    assert await store.get_item(me, created.id) is None
    assert await store.delete_item(me, created.id) is False
    assert await store.update_item(me, created.id, item()) is None


@pytest.mark.anyio
async def test_items_are_isolated_per_user(store: SqliteStore):
    alice = add_user(store, "alice@example.com")
    bob = add_user(store, "bob@example.com")
    mine = await store.create_item(alice, item("Alice's"))
    await store.create_item(bob, item("Bob's"))

    assert await store.get_item(bob, mine.id) is None
    assert await store.update_item(bob, mine.id, item("stolen")) is None
    assert await store.delete_item(bob, mine.id) is False
    assert await store.get_item(alice, mine.id) == mine

    bobs = await store.list_items(bob, "", 1, 20)
    assert [i.name for i in bobs.items] == ["Bob's"] and bobs.total == 1
    assert (await store.list_items(bob, "Alice", 1, 20)).total == 0


@pytest.mark.anyio
async def test_create_items_is_all_or_nothing(store: SqliteStore):
    me = add_user(store, "me@example.com")
    assert await store.create_items(me, [item("a"), item("b")]) == 2
    bad = [item("c"), ItemInput(name="", description="", quantity=1)]  # violates CHECK
    with pytest.raises(sqlite3.IntegrityError):
        await store.create_items(me, bad)
    names = sorted(i.name for i in (await store.list_items(me, "", 1, 20)).items)
    assert names == ["a", "b"]


@pytest.mark.anyio
async def test_create_items_holds_no_write_lock_while_it_reports_progress(store: SqliteStore):
    """Progress runs on the event loop while the import's thread waits for it; were the import's
    write transaction open then, a create on the loop (same file, other connection) would wait
    out busy_timeout and fail with "database is locked" (a 500 under load)."""
    me = add_user(store, "me@example.com")
    store.conn.execute("PRAGMA busy_timeout=200")  # fail fast on the lock, not after 5 s
    created: list[str] = []

    def progress(done: int) -> None:
        created.append((await_free(store.create_item(me, item(f"during {done}")))).name)

    rows = [item(f"imported {n}") for n in range(3 * IMPORT_CHUNK)]
    assert await store.create_items(me, rows, progress) == len(rows)
    assert created == [f"during {n}" for n in (IMPORT_CHUNK, 2 * IMPORT_CHUNK, 3 * IMPORT_CHUNK)]
    page = await store.list_items(me, "imported", 1, 1)
    assert page.total == len(rows) and page.items[0].name == f"imported {len(rows) - 1}"  # file order kept



@pytest.mark.anyio
async def test_a_write_lock_held_past_busy_timeout_is_unavailable_not_a_crash(store: SqliteStore):
    """Another connection (another worker process) holding the write lock longer than
    busy_timeout: StoreUnavailable (the app's 503 page), and nothing half-written."""
    me = add_user(store, "me@example.com")
    store.conn.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable):
            await store.create_item(me, item("while locked"))
        with pytest.raises(StoreUnavailable):
            await store.log_out_everywhere(me)
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert (await store.create_item(me, item("after"))).name == "after"
    assert [i.name for i in (await store.list_items(me, "", 1, 20)).items] == ["after"]

def await_free(coroutine):
    """Runs a coroutine that never suspends (the store's queries are synchronous) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine suspended")


@pytest.mark.parametrize(
    ("q", "pattern"),
    [("abc", "%abc%"), ("50%", "%50\\%%"), ("a_b", "%a\\_b%"), ("c:\\x", "%c:\\\\x%")],
)
def test_like_pattern_escapes_wildcards(q: str, pattern: str):
    assert like_pattern(q) == pattern


@pytest.mark.anyio
async def test_search_treats_wildcards_literally(store: SqliteStore):
    me = add_user(store, "me@example.com")
    for name in ["100% cotton", "100 percent", "a_b", "axb", "back\\slash", "backslash", "Plain"]:
        await store.create_item(me, item(name))
    await store.create_item(me, item("other", description="only 50% here"))

    async def names(q: str) -> list[str]:
        return sorted(i.name for i in (await store.list_items(me, q, 1, 50)).items)

    assert await names("%") == ["100% cotton", "other"]
    assert await names("_") == ["a_b"]
    assert await names("\\") == ["back\\slash"]
    assert await names("100%") == ["100% cotton"]
    assert await names("plain") == ["Plain"]  # case-insensitive for ASCII
    assert await names("50%") == ["other"]  # description is searched too
    assert await names("nothing") == []
    assert len(await names("")) == 8


@pytest.mark.anyio
async def test_pagination_totals(store: SqliteStore):
    me = add_user(store, "me@example.com")
    other = add_user(store, "other@example.com")
    await store.create_items(me, [item(f"item {n:02}") for n in range(45)])
    await store.create_items(other, [item("noise")] * 7)

    page1 = await store.list_items(me, "", 1, 20)
    assert (len(page1.items), page1.total, page1.pages, page1.page) == (20, 45, 3, 1)
    assert page1.items[0].name == "item 44"  # newest first
    page3 = await store.list_items(me, "", 3, 20)
    assert [i.name for i in page3.items] == [f"item {n:02}" for n in range(4, -1, -1)]
    beyond = await store.list_items(me, "", 4, 20)
    assert beyond.items == [] and beyond.total == 45

    seen = [i.id for p in (1, 2, 3) for i in (await store.list_items(me, "", p, 20)).items]
    assert len(seen) == len(set(seen)) == 45

    filtered = await store.list_items(me, "item 1", 1, 20)
    assert filtered.total == 10 and filtered.pages == 1
    empty = await store.list_items(add_user(store, "new@example.com"), "", 1, 20)
    assert empty.total == 0 and empty.pages == 1


@pytest.mark.anyio
async def test_deleting_a_user_deletes_their_items(store: SqliteStore):
    me = add_user(store, "me@example.com")
    await store.create_item(me, item())
    with store.conn:
        store.conn.execute("DELETE FROM users")
    assert store.conn.execute("SELECT count(*) FROM items").fetchone()[0] == 0


@pytest.mark.anyio
async def test_data_survives_reopen(tmp_path: Path):
    first = SqliteStore(tmp_path / "app.db")
    me = add_user(first, "me@example.com")
    created = await first.create_item(me, item("Kept"))
    await first.close()
    second = SqliteStore(tmp_path / "app.db")
    try:
        assert await second.get_item(me, created.id) == created
    finally:
        await second.close()
