"""A local stand-in for the two Supabase services the adapter talks to, for tests only.

GoTrue (/auth/v1/...): sign-up with email confirmation, password and refresh-token grants with
rotation, /user, /logout, /verify, and a JWKS publishing the ES256 key that signs access tokens.
PostgREST (/rest/v1/items): the filters, ordering, range and Prefer headers the adapter uses.
Each PostgREST request runs on a real PostgreSQL inside one transaction as the JWT's role with
the JWT's claims in `request.jwt.claims`, exactly like PostgREST, so row level security in the
real migration decides what a user sees: nothing in this file knows which rows belong to whom.

Response shapes and error bodies follow the real services closely enough for supabase-py to parse
them the way it parses the real ones. Only the endpoints the adapter uses exist.

This file prepares the database and serves both services; the GoTrue side is in
supabase_gotrue.py, the PostgREST query language in supabase_postgrest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.pg import PgCluster, free_port, running_cluster
from tests.support.supabase_gotrue import GoTrue, StandinConfig
from tests.support.supabase_postgrest import QueryError, parse_query, pgrst_error, sql_error_response

MIGRATIONS = sorted((Path(__file__).parents[2] / "supabase" / "migrations").glob("*.sql"))

# What a Supabase project has before any migration runs (trimmed to what the migration and the
# stand-in touch): the API roles, the auth schema with auth.users and Supabase's exact
# auth.uid(), the extensions schema, and the default privileges that grant every new public
# table to anon/authenticated/service_role (so RLS, not grants, is what isolates users).
BOOTSTRAP_SQL = """
do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
    create role authenticated nologin noinherit;
    create role service_role nologin noinherit bypassrls;
    create role authenticator login noinherit;
    grant anon, authenticated, service_role to authenticator;
  end if;
end
$$;
create schema auth;
create schema extensions;
grant usage on schema public, auth, extensions to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
create table auth.users (
  id uuid primary key,
  email text,
  email_confirmed_at timestamptz,
  created_at timestamptz not null default now()
);
create or replace function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
"""


def prepare_database(pg: PgCluster, db: str) -> None:
    """A fresh database laid out like a Supabase project, with the migrations applied unchanged."""
    pg.create_database(db)
    pg.psql(BOOTSTRAP_SQL, db=db)
    for path in MIGRATIONS:
        pg.psql(path.read_text(), db=db)


@contextlib.contextmanager
def prepared_cluster(db: str = "app") -> Iterator[PgCluster]:
    """A running PostgreSQL cluster holding `db`, prepared as above (for module-scoped fixtures)."""
    with running_cluster() as cluster:
        prepare_database(cluster, db)
        yield cluster


def module_fixtures(config: Callable[[], StandinConfig] = lambda: StandinConfig()) -> tuple[Any, Any]:
    """The `pg` and `standin` fixtures a test module binds at its top level: one cluster and one
    stand-in (made with config()) per module."""

    @pytest.fixture(scope="module")
    def pg() -> Iterator[PgCluster]:
        with prepared_cluster() as cluster:
            yield cluster

    @pytest.fixture(scope="module")
    def standin(pg: PgCluster) -> Iterator[Standin]:
        with serve_standin(pg, "app", config()) as s:
            yield s

    return pg, standin


class SkewClock:
    """A stand-in clock that tests can move, so tokens can be issued already expired (no waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Standin(GoTrue):
    """GoTrue and PostgREST (/rest/v1/items) behind one API key, as one ASGI app (`.app`)."""

    def __init__(self, pg: PgCluster, db: str, config: StandinConfig) -> None:
        super().__init__(pg, db, config)
        self.app = Starlette(routes=[
            Route("/auth/v1/signup", self.signup, methods=["POST"]),
            Route("/auth/v1/token", self.token, methods=["POST"]),
            Route("/auth/v1/user", self.user, methods=["GET"]),
            Route("/auth/v1/logout", self.logout, methods=["POST"]),
            Route("/auth/v1/verify", self.verify, methods=["POST"]),
            Route("/auth/v1/.well-known/jwks.json", self.jwks, methods=["GET"]),
            Route("/rest/v1/items", self.items, methods=["GET", "POST", "PATCH", "DELETE"]),
        ])

    # -- PostgREST

    async def items(self, request: Request) -> Response:
        if bad := self._bad_apikey(request):
            return bad
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else self.anon_key
        try:
            claims = self._verify(token)
        except jwt.ExpiredSignatureError:
            return pgrst_error(401, "PGRST303", "JWT expired")
        except jwt.InvalidTokenError:
            return pgrst_error(401, "PGRST301", "JWSError JWSInvalidSignature")
        role = str(claims.get("role") or "anon")
        try:
            query = parse_query(request, await request.body())
        except QueryError as e:
            return pgrst_error(400, "PGRST100", str(e))
        proc = await asyncio.create_subprocess_exec(
            *self.pg.psql_argv(self.db, "authenticator",
                               {"claims": json.dumps(claims), "role": role, **query.variables}),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        # Like PostgREST: one transaction, the JWT's role, the JWT's claims as a local setting.
        script = ("begin;\nset local role :\"role\";\n"
                  "select set_config('request.jwt.claims', :'claims', true) \\g /dev/null\n"
                  f"{query.sql};\ncommit;\n")
        out, err = await proc.communicate(script.encode())
        if proc.returncode != 0:
            return sql_error_response(err.decode(), role)
        return query.respond(json.loads(out.decode()))


# ---------------------------------------------------------------------------------------------
# Serving


@contextlib.contextmanager
def serve_standin(pg: PgCluster, db: str, config: StandinConfig | None = None) -> Iterator[Standin]:
    """Serve a Standin on a free loopback port in a background thread until the block ends."""
    standin = Standin(pg, db, config or StandinConfig())
    port = free_port()
    standin.url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(
        standin.app, host="127.0.0.1", port=port, log_level="warning",
        lifespan="off", ws="none", http="h11", loop="asyncio"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("stand-in did not start")
        time.sleep(0.01)  # polling a condition, with a deadline
    try:
        yield standin
    finally:
        server.should_exit = True
        thread.join(timeout=10)
