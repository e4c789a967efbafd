"""The items migration on a real PostgreSQL: row level security, not the app, isolates users.

Each check runs the way PostgREST runs a request: connected as `authenticator`, one transaction,
`set local role authenticated`, the JWT claims in `request.jwt.claims`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.support.pg import PgCluster, PsqlError
from tests.support.supabase_standin import prepared_cluster

DB = "rls"


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    with prepared_cluster(DB) as cluster:
        yield cluster


def new_user(pg: PgCluster) -> str:
    uid = str(uuid.uuid4())
    pg.psql("insert into auth.users (id, email) values (:'id', :'email')", db=DB,
            variables={"id": uid, "email": f"{uid}@example.test"})
    return uid


def as_user(pg: PgCluster, uid: str, sql: str, prelude: str = "") -> str:
    """Run `sql` as PostgREST would for a request carrying `uid`'s JWT. `prelude` runs first,
    as the superuser, inside the same transaction (rolled back with it)."""
    claims = json.dumps({"sub": uid, "role": "authenticated", "aud": "authenticated"})
    script = (
        f"begin;\n{prelude}\nset local role authenticated;\n"
        "select set_config('request.jwt.claims', :'claims', true) \\g /dev/null\n"
        f"{sql};\nrollback;\n"
    )
    # The superuser connection only exists for `prelude`; every statement in `sql` runs under
    # `set local role authenticated`, which is what RLS checks.
    return pg.psql(script, db=DB, user="postgres" if prelude else "authenticator",
                   variables={"claims": claims}).strip()


def insert_as(pg: PgCluster, uid: str, name: str) -> int:
    claims = json.dumps({"sub": uid, "role": "authenticated"})
    out = pg.psql(
        "begin; set local role authenticated;\n"
        "select set_config('request.jwt.claims', :'claims', true) \\g /dev/null\n"
        "insert into public.items (name) values (:'name') returning id;\ncommit;",
        db=DB, user="authenticator", variables={"claims": claims, "name": name})
    return int(out.strip())


def cross_user_view(pg: PgCluster, prelude: str = "") -> dict[str, object]:
    """Alice and Bob each own a row; report what Bob can see and do to Alice's."""
    alice, bob = new_user(pg), new_user(pg)
    a_id = insert_as(pg, alice, "alice's")
    b_id = insert_as(pg, bob, "bob's")
    seen = as_user(pg, bob, "select coalesce(json_agg(id order by id), '[]') from public.items",
                   prelude)
    updated = as_user(pg, bob, f"with u as (update public.items set name = 'x' where id = {a_id}"
                                " returning 1) select count(*) from u", prelude)
    deleted = as_user(pg, bob, f"with d as (delete from public.items where id = {a_id}"
                               " returning 1) select count(*) from d", prelude)
    return {"seen": json.loads(seen), "updated": int(updated), "deleted": int(deleted),
            "alice_row": a_id, "bob_row": b_id}


def test_each_user_sees_and_touches_only_their_own_rows(pg: PgCluster) -> None:
    view = cross_user_view(pg)
    assert view["seen"] == [view["bob_row"]]
    assert view["updated"] == 0
    assert view["deleted"] == 0


@pytest.mark.parametrize("breakage", [
    "alter table public.items disable row level security;",
    'drop policy "items: owners select" on public.items;'
    'drop policy "items: owners update" on public.items;'
    'drop policy "items: owners delete" on public.items;'
    "create policy open on public.items to authenticated using (true);",
])
def test_the_cross_user_check_fails_without_the_policies(pg: PgCluster, breakage: str) -> None:
    # The breakage runs inside the checking transaction and is rolled back with it, so the
    # migration's policies are restored for every other test.
    view = cross_user_view(pg, prelude=breakage)
    assert view["alice_row"] in view["seen"]
    assert view["updated"] == 1 and view["deleted"] == 1


def test_policies_are_back_after_the_breakage_test(pg: PgCluster) -> None:
    view = cross_user_view(pg)
    assert view["seen"] == [view["bob_row"]]


def test_inserting_with_someone_elses_user_id_is_refused(pg: PgCluster) -> None:
    alice, bob = new_user(pg), new_user(pg)
    with pytest.raises(PsqlError) as err:
        as_user(pg, bob, f"insert into public.items (name, user_id) values ('spoof', '{alice}')")
    assert err.value.sqlstate == "42501"
    assert "row-level security" in err.value.message


def test_moving_a_row_to_another_user_is_refused(pg: PgCluster) -> None:
    alice, bob = new_user(pg), new_user(pg)
    b_id = insert_as(pg, bob, "bob's")
    with pytest.raises(PsqlError) as err:
        as_user(pg, bob, f"update public.items set user_id = '{alice}' where id = {b_id}")
    assert err.value.sqlstate == "42501"


def test_user_id_defaults_to_the_jwt_subject(pg: PgCluster) -> None:
    alice = new_user(pg)
    row = insert_as(pg, alice, "mine")
    owner = pg.psql("select user_id from public.items where id = :'id'", db=DB,
                    variables={"id": str(row)}).strip()
    assert owner == alice


def test_signed_out_visitors_get_nothing(pg: PgCluster) -> None:
    with pytest.raises(PsqlError) as err:
        pg.psql("begin; set local role anon; select count(*) from public.items; rollback;",
                db=DB, user="authenticator")
    assert err.value.sqlstate == "42501"


def test_the_app_role_neither_owns_the_table_nor_bypasses_rls(pg: PgCluster) -> None:
    owner = pg.psql("select tableowner from pg_tables where schemaname = 'public' and "
                    "tablename = 'items'", db=DB).strip()
    assert owner not in ("authenticator", "authenticated", "anon")
    flags = pg.psql("select rolname || ':' || rolsuper || ':' || rolbypassrls from pg_roles "
                    "where rolname in ('authenticator', 'authenticated') order by rolname",
                    db=DB).split()
    assert flags == ["authenticated:false:false", "authenticator:false:false"]
    forced = pg.psql("select relrowsecurity from pg_class where oid = 'public.items'::regclass",
                     db=DB).strip()
    assert forced == "t"


def test_constraints_and_updated_at_trigger(pg: PgCluster) -> None:
    alice = new_user(pg)
    for bad in ("insert into public.items (name) values ('')",
                "insert into public.items (name, quantity) values ('x', -1)",
                f"insert into public.items (name) values ('{'n' * 201}')",
                f"insert into public.items (name, description) values ('x', '{'d' * 2001}')"):
        with pytest.raises(PsqlError) as err:
            as_user(pg, alice, bad)
        assert err.value.sqlstate == "23514"
    row = insert_as(pg, alice, "stamp")
    out = as_user(pg, alice, f"update public.items set quantity = 3 where id = {row} "
                  "returning updated_at > created_at")
    # now() is the transaction start, so the trigger's stamp only differs across transactions:
    # the insert committed earlier, the update runs later.
    assert out == "t"
