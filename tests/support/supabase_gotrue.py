"""The GoTrue side of the Supabase stand-in (/auth/v1/...): sign-up with email confirmation,
password and refresh-token grants with rotation, /user, /logout, /verify, and a JWKS publishing
the ES256 key that signs access tokens. supabase_standin.py serves it with the PostgREST side."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.support.pg import PgCluster


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


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


class GoTrue:
    """The auth endpoints and the users, sessions and refresh tokens behind them, in memory
    (auth.users rows also go to PostgreSQL, for the migration's foreign keys)."""

    def __init__(self, pg: PgCluster, db: str, config: StandinConfig) -> None:
        self.pg = pg
        self.db = db
        self.config = config
        self.state = GoTrueState()
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.kid = secrets.token_hex(8)
        self.url = ""  # set once served
        self.anon_key = self._sign({"iss": "supabase-standin", "role": "anon", "exp": 4102444800})

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
