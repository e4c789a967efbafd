"""A local stand-in for the two Supabase services the adapter talks to, for tests only.

GoTrue (/auth/v1/...): sign-up with email confirmation, password and refresh-token grants with
rotation, /user, /logout, /verify, and a JWKS publishing the ES256 key that signs access tokens.
PostgREST (/rest/v1/items): the filters, ordering, range and Prefer headers the adapter uses.
Each PostgREST request runs on a real PostgreSQL inside one transaction as the JWT's role with
the JWT's claims in `request.jwt.claims`, exactly like PostgREST, so row level security in the
real migration decides what a user sees: nothing in this file knows which rows belong to whom.

Response shapes and error bodies follow the real services closely enough for supabase-py to parse
them the way it parses the real ones. Only the endpoints the adapter uses exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from datetime import datetime, timezone
from pathlib import Path

import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.pg import PgCluster, free_port, running_cluster

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


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# GoTrue


@dataclass
class StandinConfig:
    access_ttl: int = 3600
    autoconfirm: bool = False
    reuse_interval: float = 10.0
    min_password_length: int = 8
    clock: Callable[[], float] = time.time


@dataclass
class UserRec:
    id: str
    email: str
    password_digest: bytes
    salt: bytes
    created_at: float
    confirmed_at: float | None = None


@dataclass
class RefreshRec:
    token: str
    session_id: str
    revoked_at: float | None = None


@dataclass
class SessionRec:
    id: str
    user_id: str
    active_token: str
    revoked: bool = False


@dataclass
class GoTrueState:
    users: dict[str, UserRec] = field(default_factory=dict)  # by email
    sessions: dict[str, SessionRec] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshRec] = field(default_factory=dict)
    confirmations: dict[str, str] = field(default_factory=dict)  # token_hash -> email
    outbox: list[tuple[str, str]] = field(default_factory=list)  # (email, token_hash) "sent"
    refresh_grants: int = 0  # refresh_token grants received (the single-flight test counts these)
    rate_limited: bool = False


def auth_error(status: int, error_code: str, msg: str, **extra: object) -> JSONResponse:
    body = {"code": status, "error_code": error_code, "msg": msg, **extra}
    return JSONResponse(body, status_code=status, headers=AUTH_HEADERS)


AUTH_HEADERS = {"x-supabase-api-version": "2024-01-01"}


class Standin:
    def __init__(self, pg: PgCluster, db: str, config: StandinConfig) -> None:
        self.pg = pg
        self.db = db
        self.config = config
        self.state = GoTrueState()
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.kid = secrets.token_hex(8)
        self.url = ""  # set once served
        self.anon_key = self._sign({"iss": "supabase-standin", "role": "anon", "exp": 4102444800})
        self.app = Starlette(routes=[
            Route("/auth/v1/signup", self.signup, methods=["POST"]),
            Route("/auth/v1/token", self.token, methods=["POST"]),
            Route("/auth/v1/user", self.user, methods=["GET"]),
            Route("/auth/v1/logout", self.logout, methods=["POST"]),
            Route("/auth/v1/verify", self.verify, methods=["POST"]),
            Route("/auth/v1/.well-known/jwks.json", self.jwks, methods=["GET"]),
            Route("/rest/v1/items", self.items, methods=["GET", "POST", "PATCH", "DELETE"]),
        ])

    # -- keys and tokens

    def _sign(self, claims: dict) -> str:
        return jwt.encode(claims, self.private_key, algorithm="ES256",
                          headers={"kid": self.kid, "typ": "JWT"})

    def _verify(self, token: str) -> dict:
        """Raises jwt.ExpiredSignatureError / jwt.InvalidTokenError."""
        return jwt.decode(token, self.private_key.public_key(), algorithms=["ES256"],
                          options={"verify_aud": False})

    async def jwks(self, request: Request) -> Response:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "alg": "ES256", "use": "sig", "key_ops": ["verify"]})
        return JSONResponse({"keys": [jwk]})

    def _user_json(self, user: UserRec) -> dict:
        confirmed = iso(user.confirmed_at) if user.confirmed_at else None
        return {
            "id": user.id, "aud": "authenticated", "role": "authenticated",
            "email": user.email, "email_confirmed_at": confirmed, "confirmed_at": confirmed,
            "phone": "", "confirmation_sent_at": iso(user.created_at),
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {"email": user.email, "email_verified": bool(confirmed),
                              "phone_verified": False, "sub": user.id},
            "identities": [{
                "identity_id": str(uuid.uuid5(uuid.NAMESPACE_URL, user.id)), "id": user.id,
                "user_id": user.id, "provider": "email", "email": user.email,
                "identity_data": {"email": user.email, "sub": user.id},
                "created_at": iso(user.created_at), "updated_at": iso(user.created_at),
            }],
            "created_at": iso(user.created_at), "updated_at": iso(user.created_at),
            "is_anonymous": False,
        }

    def _issue(self, user: UserRec, session: SessionRec) -> dict:
        now = int(self.config.clock())
        exp = now + self.config.access_ttl
        access = self._sign({
            "iss": f"{self.url}/auth/v1", "sub": user.id, "aud": "authenticated",
            "exp": exp, "iat": now, "email": user.email, "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {"email": user.email, "sub": user.id},
            "role": "authenticated", "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": session.id, "is_anonymous": False,
        })
        return {"access_token": access, "token_type": "bearer",
                "expires_in": self.config.access_ttl, "expires_at": exp,
                "refresh_token": session.active_token, "user": self._user_json(user)}

    def _new_refresh(self, session_id: str) -> str:
        token = secrets.token_urlsafe(12)
        self.state.refresh_tokens[token] = RefreshRec(token, session_id)
        return token

    def _start_session(self, user: UserRec) -> dict:
        sid = str(uuid.uuid4())
        session = SessionRec(sid, user.id, "")
        session.active_token = self._new_refresh(sid)
        self.state.sessions[sid] = session
        return self._issue(user, session)

    def _user_by_id(self, user_id: str) -> UserRec | None:
        return next((u for u in self.state.users.values() if u.id == user_id), None)

    async def _psql(self, sql: str, **variables: str) -> str:
        """Run SQL as the superuser (GoTrue owns the auth schema)."""
        proc = await asyncio.create_subprocess_exec(
            *self.pg.psql_argv(self.db, "postgres", variables),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(sql.encode())
        if proc.returncode != 0:
            raise RuntimeError(err.decode())
        return out.decode()

    async def _body(self, request: Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            body = None
        return body if isinstance(body, dict) else {}

    def _bad_apikey(self, request: Request) -> Response | None:
        # The API gateway in front of both services turns away requests without the project key.
        if request.headers.get("apikey") != self.anon_key:
            return JSONResponse({"message": "Invalid API key"}, status_code=401)
        return None

    # -- GoTrue endpoints

    def _password_problems(self, password: str) -> list[str]:
        reasons = []
        if len(password) < self.config.min_password_length:
            reasons.append("length")
        if not (re.search(r"[A-Za-z]", password) and re.search(r"[0-9]", password)):
            reasons.append("characters")
        return reasons

    async def signup(self, request: Request) -> Response:
        if bad := self._bad_apikey(request):
            return bad
        if self.state.rate_limited:
            return auth_error(429, "over_email_send_rate_limit", "email rate limit exceeded")
        body = await self._body(request)
        email = str(body.get("email") or "").strip().lower()
        password = str(body.get("password") or "")
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            return auth_error(400, "validation_failed",
                              "Unable to validate email address: invalid format")
        if reasons := self._password_problems(password):
            msgs = {"length": f"Password should be at least {self.config.min_password_length}"
                              " characters.",
                    "characters": "Password should contain at least one letter and one digit."}
            return auth_error(422, "weak_password", " ".join(msgs[r] for r in reasons),
                              weak_password={"reasons": reasons})
        now = self.config.clock()
        existing = self.state.users.get(email)
        if existing is not None and existing.confirmed_at is not None:
            if self.config.autoconfirm:
                return auth_error(422, "user_already_exists", "User already registered")
            # With confirmations on GoTrue answers like a fresh sign-up (no identities), so the
            # endpoint cannot be used to find out who has an account.
            fake = self._user_json(UserRec(str(uuid.uuid4()), email, b"", b"", now))
            fake["identities"] = []
            return JSONResponse(fake, headers=AUTH_HEADERS)
        if existing is None:
            salt = secrets.token_bytes(16)
            existing = UserRec(str(uuid.uuid4()), email,
                               hashlib.sha256(salt + password.encode()).digest(), salt, now)
            self.state.users[email] = existing
            await self._psql("insert into auth.users (id, email) values (:'id', :'email')",
                             id=existing.id, email=email)
        if self.config.autoconfirm:
            await self._confirm(existing)
            return JSONResponse(self._start_session(existing), headers=AUTH_HEADERS)
        token_hash = secrets.token_hex(28)
        self.state.confirmations[token_hash] = email
        self.state.outbox.append((email, token_hash))
        return JSONResponse(self._user_json(existing), headers=AUTH_HEADERS)

    async def _confirm(self, user: UserRec) -> None:
        user.confirmed_at = self.config.clock()
        await self._psql("update auth.users set email_confirmed_at = now() where id = :'id'",
                         id=user.id)

    async def verify(self, request: Request) -> Response:
        if bad := self._bad_apikey(request):
            return bad
        body = await self._body(request)
        email = self.state.confirmations.pop(str(body.get("token_hash") or ""), None)
        if email is None or body.get("type") not in ("signup", "email"):
            return auth_error(403, "otp_expired", "Email link is invalid or has expired")
        user = self.state.users[email]
        await self._confirm(user)
        return JSONResponse(self._start_session(user), headers=AUTH_HEADERS)

    async def token(self, request: Request) -> Response:
        if bad := self._bad_apikey(request):
            return bad
        grant = request.query_params.get("grant_type")
        body = await self._body(request)
        if grant == "password":
            return self._password_grant(body)
        if grant == "refresh_token":
            return self._refresh_grant(str(body.get("refresh_token") or ""))
        return auth_error(400, "validation_failed", "unsupported_grant_type")

    def _password_grant(self, body: dict) -> Response:
        if self.state.rate_limited:
            return auth_error(429, "over_request_rate_limit", "Request rate limit reached")
        user = self.state.users.get(str(body.get("email") or "").strip().lower())
        password = str(body.get("password") or "").encode()
        if user is None or not hmac.compare_digest(
            user.password_digest, hashlib.sha256(user.salt + password).digest()
        ):
            return auth_error(400, "invalid_credentials", "Invalid login credentials")
        if user.confirmed_at is None:
            return auth_error(400, "email_not_confirmed", "Email not confirmed")
        return JSONResponse(self._start_session(user), headers=AUTH_HEADERS)

    def _refresh_grant(self, token: str) -> Response:
        self.state.refresh_grants += 1
        rec = self.state.refresh_tokens.get(token)
        session = self.state.sessions.get(rec.session_id) if rec else None
        if rec is None or session is None or session.revoked:
            return auth_error(400, "refresh_token_not_found",
                              "Invalid Refresh Token: Refresh Token Not Found")
        user = self._user_by_id(session.user_id)
        assert user is not None
        now = self.config.clock()
        if rec.revoked_at is not None:
            # A rotated token used again: tolerated briefly (concurrent requests racing), and
            # then answered with the session's current token; later it signals theft, so the
            # whole session goes.
            if now - rec.revoked_at <= self.config.reuse_interval:
                return JSONResponse(self._issue(user, session), headers=AUTH_HEADERS)
            session.revoked = True
            return auth_error(400, "refresh_token_already_used",
                              "Invalid Refresh Token: Already Used")
        rec.revoked_at = now
        session.active_token = self._new_refresh(session.id)
        return JSONResponse(self._issue(user, session), headers=AUTH_HEADERS)

    def _bearer_session(self, request: Request) -> tuple[UserRec, SessionRec] | Response:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        try:
            claims = self._verify(token)
        except jwt.InvalidTokenError as e:
            return auth_error(403, "bad_jwt", f"invalid JWT: unable to parse or verify signature, {e}")
        session = self.state.sessions.get(str(claims.get("session_id")))
        user = self._user_by_id(str(claims.get("sub")))
        if session is None or session.revoked or user is None:
            return auth_error(403, "session_not_found",
                              "Session from session_id claim in JWT does not exist")
        return user, session

    async def user(self, request: Request) -> Response:
        if bad := self._bad_apikey(request):
            return bad
        found = self._bearer_session(request)
        if isinstance(found, Response):
            return found
        return JSONResponse(self._user_json(found[0]), headers=AUTH_HEADERS)

    async def logout(self, request: Request) -> Response:
        if bad := self._bad_apikey(request):
            return bad
        found = self._bearer_session(request)
        if isinstance(found, Response):
            return found
        user, session = found
        scope = request.query_params.get("scope", "global")
        for s in self.state.sessions.values():
            if s.user_id == user.id and (
                (scope == "local" and s.id == session.id)
                or scope == "global"
                or (scope == "others" and s.id != session.id)
            ):
                s.revoked = True
        return Response(status_code=204, headers=AUTH_HEADERS)

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


def pgrst_error(status: int, code: str, message: str, details: str | None = None,
                headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "details": details, "hint": None, "message": message},
                        status_code=status, headers=headers)


def sql_error_response(stderr: str, role: str) -> Response:
    match = re.search(r"ERROR:\s+([0-9A-Z]{5}):\s+(.*)", stderr)
    if not match:
        return pgrst_error(500, "PGRST000", stderr.strip())
    code, message = match.group(1), match.group(2).strip()
    status = {"42501": 401 if role == "anon" else 403, "23503": 409, "23505": 409,
              "P0001": 400}.get(code)
    if status is None:
        status = 400 if code[:2] in ("22", "23") else 500
    return pgrst_error(status, code, message)


# -- PostgREST query language (the subset the adapter uses)

IDENT = re.compile(r"[a-z_][a-z0-9_]*\Z")
OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
       "like": "like", "ilike": "ilike"}
RESERVED = {"select", "order", "limit", "offset", "or", "columns"}


class QueryError(Exception):
    pass


def ident(name: str) -> str:
    if not IDENT.match(name):
        raise QueryError(f'"failed to parse {name}"')
    return f'"{name}"'


def split_logic(text: str) -> list[str]:
    """Split `a.ilike."x,y",b.eq.1` on commas outside double quotes (PostgREST's or= syntax)."""
    parts, current, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


@dataclass
class Query:
    sql: str
    variables: dict[str, str]
    method: str
    count: bool
    representation: bool
    offset: int

    def respond(self, result: dict) -> Response:
        rows = result["body"]
        total = result.get("total")
        headers = {}
        if self.method == "GET":
            if total is not None and self.offset > total:
                return pgrst_error(
                    416, "PGRST103", "Requested range not satisfiable",
                    f"An offset of {self.offset} was requested, but there are only {total} rows.",
                    headers={"content-range": f"*/{total}"})
            shown = f"{self.offset}-{self.offset + len(rows) - 1}" if rows else "*"
            headers["content-range"] = f"{shown}/{total if total is not None else '*'}"
            partial = total is not None and len(rows) < total
            return JSONResponse(rows, status_code=206 if partial else 200, headers=headers)
        status = 201 if self.method == "POST" else 200
        if not self.representation:
            counted = {"content-range": f"*/{len(rows)}"} if self.count else {}
            return Response(status_code=201 if self.method == "POST" else 204, headers=counted)
        return JSONResponse(rows, status_code=status)


def parse_query(request: Request, raw_body: bytes) -> Query:
    params = request.query_params
    prefer = {p.strip() for p in request.headers.get("prefer", "").split(",")}
    variables: dict[str, str] = {}

    def var(value: str) -> str:
        name = f"v{len(variables)}"
        variables[name] = value
        return f":'{name}'"

    def condition(column: str, expr: str) -> str:
        op, _, value = expr.partition(".")
        negate = op == "not"
        if negate:
            op, _, value = value.partition(".")
        if op == "is" and value in ("null", "true", "false"):
            sql = f"{ident(column)} is {value}"
        elif op in OPS:
            value = unquote(value)
            if op in ("like", "ilike"):
                value = value.replace("*", "%")
            sql = f"{ident(column)} {OPS[op]} {var(value)}"
        else:
            raise QueryError(f'"failed to parse filter ({expr})"')
        return f"not ({sql})" if negate else sql

    where = []
    for key, value in params.multi_items():
        if key == "or":
            if not (value.startswith("(") and value.endswith(")")):
                raise QueryError('"failed to parse logic tree"')
            terms = []
            for term in split_logic(value[1:-1]):
                column, _, expr = term.partition(".")
                terms.append(condition(column, expr))
            where.append("(" + " or ".join(terms) + ")")
        elif key not in RESERVED:
            where.append(condition(key, value))
    where_sql = " and ".join(where) or "true"

    select = params.get("select", "*")
    columns = "*" if select == "*" else ", ".join(ident(c) for c in select.split(","))
    order = []
    for part in filter(None, params.get("order", "").split(",")):
        column, *mods = part.split(".")
        direction = {"asc": "asc", "desc": "desc"}
        nulls = {"nullsfirst": "nulls first", "nullslast": "nulls last"}
        words = [direction.get(m) or nulls.get(m) for m in mods]
        if None in words:
            raise QueryError(f'"failed to parse order ({part})"')
        order.append(" ".join([ident(column), *words]))
    order_sql = f" order by {', '.join(order)}" if order else ""
    try:
        limit = int(params["limit"]) if "limit" in params else None
        offset = int(params.get("offset", "0"))
    except ValueError as e:
        raise QueryError('"failed to parse limit/offset"') from e
    page_sql = (f" limit {limit}" if limit is not None else "") + f" offset {offset}"
    count = "count=exact" in prefer
    representation = "return=representation" in prefer
    agg = "coalesce((select json_agg(t) from ({inner}) t), '[]'::json)"
    method = request.method

    if method == "GET":
        total = "(select count(*) from pgrst_source)" if count else "null"
        inner = f"select {columns} from pgrst_source{order_sql}{page_sql}"
        sql = (f"with pgrst_source as (select * from public.items where {where_sql}) "
               f"select json_build_object('total', {total}, 'body', {agg.format(inner=inner)})")
        return Query(sql, variables, method, count, True, offset)

    if method == "DELETE":
        mutation = f"delete from public.items where {where_sql} returning *"
    else:
        try:
            body = json.loads(raw_body or b"null")
        except ValueError as e:
            raise QueryError('"Empty or invalid json"') from e
        rows = body if isinstance(body, list) else [body]
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise QueryError('"Empty or invalid json"')
        keys = sorted({k for r in rows for k in r})
        cols = ", ".join(ident(k) for k in keys)
        if method == "POST":
            mutation = (f"insert into public.items ({cols}) select {cols} from "
                        f"json_populate_recordset(null::public.items, {var(json.dumps(rows))}) "
                        "returning *")
        else:
            mutation = (f"update public.items set ({cols}) = (select {cols} from "
                        f"json_populate_record(null::public.items, {var(json.dumps(rows[0]))})) "
                        f"where {where_sql} returning *")
    inner = f"select {columns} from pgrst_source"
    sql = (f"with pgrst_source as ({mutation}) "
           f"select json_build_object('body', {agg.format(inner=inner)})")
    return Query(sql, variables, method, count, representation, offset)


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
