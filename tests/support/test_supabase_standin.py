"""The stand-in answers like the real services where the adapter depends on it: response
shapes, error bodies, headers, token rotation. Raw HTTP here, no adapter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest

from tests.support.supabase_standin import Standin, module_fixtures, serve_standin


pg, standin = module_fixtures()


@pytest.fixture
def client(standin: Standin) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standin.url, headers={"apikey": standin.anon_key}) as c:
        yield c


def signed_in(client: httpx.Client, standin: Standin) -> dict:
    address = f"{uuid.uuid4().hex[:10]}@example.test"
    assert client.post("/auth/v1/signup", json={"email": address,
                                                "password": "correct horse 1"}).status_code == 200
    token_hash = standin.state.outbox[-1][1]
    response = client.post("/auth/v1/verify", json={"type": "email", "token_hash": token_hash})
    assert response.status_code == 200
    return response.json()


def test_gotrue_error_bodies_and_version_header(client: httpx.Client) -> None:
    response = client.post("/auth/v1/token", params={"grant_type": "password"},
                           json={"email": "nobody@example.test", "password": "x"})
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error_code": "invalid_credentials",
                               "msg": "Invalid login credentials"}
    assert response.headers["x-supabase-api-version"] == "2024-01-01"
    weak = client.post("/auth/v1/signup", json={"email": "w@example.test", "password": "a"})
    assert weak.status_code == 422
    assert weak.json()["weak_password"] == {"reasons": ["length", "characters"]}


def test_unconfirmed_users_cannot_log_in(client: httpx.Client) -> None:
    address = f"{uuid.uuid4().hex[:10]}@example.test"
    created = client.post("/auth/v1/signup", json={"email": address, "password": "correct 1x"})
    assert created.status_code == 200 and "access_token" not in created.json()
    response = client.post("/auth/v1/token", params={"grant_type": "password"},
                           json={"email": address, "password": "correct 1x"})
    assert response.json()["error_code"] == "email_not_confirmed"


def test_access_tokens_verify_against_the_published_jwks(client: httpx.Client,
                                                          standin: Standin) -> None:
    session = signed_in(client, standin)
    keys = client.get("/auth/v1/.well-known/jwks.json").json()["keys"]
    token = session["access_token"]
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == kid))
    claims = jwt.decode(token, key, algorithms=["ES256"], audience="authenticated")
    assert claims["sub"] == session["user"]["id"] and claims["role"] == "authenticated"
    assert set(session) >= {"access_token", "refresh_token", "expires_in", "expires_at",
                            "token_type", "user"}


def test_refresh_tokens_rotate_and_late_reuse_revokes_the_family(client: httpx.Client,
                                                                  standin: Standin) -> None:
    first = signed_in(client, standin)["refresh_token"]

    def refresh(token: str) -> httpx.Response:
        return client.post("/auth/v1/token", params={"grant_type": "refresh_token"},
                           json={"refresh_token": token})

    second = refresh(first).json()["refresh_token"]
    assert second != first
    # Reuse inside the grace window: answered with the session's current token.
    assert refresh(first).json()["refresh_token"] == second
    standin.config.reuse_interval = 0
    try:
        late = refresh(first)
        assert late.status_code == 400
        assert late.json()["error_code"] == "refresh_token_already_used"
        assert refresh(second).json()["error_code"] == "refresh_token_not_found"
    finally:
        standin.config.reuse_interval = 10.0


def test_postgrest_shapes(client: httpx.Client, standin: Standin) -> None:
    token = signed_in(client, standin)["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    made = client.post("/rest/v1/items", json={"name": "one"},
                       headers={**auth, "Prefer": "return=representation"})
    assert made.status_code == 201 and made.json()[0]["name"] == "one"
    for n in range(3):
        client.post("/rest/v1/items", json={"name": f"n{n}"}, headers=auth)
    page = client.get("/rest/v1/items", params={"select": "id,name", "order": "id.desc",
                                                "offset": "1", "limit": "2"},
                      headers={**auth, "Prefer": "count=exact"})
    assert page.status_code == 206 and page.headers["content-range"] == "1-2/4"
    assert [r["name"] for r in page.json()] == ["n1", "n0"]
    past = client.get("/rest/v1/items", params={"offset": "9", "limit": "2"},
                      headers={**auth, "Prefer": "count=exact"})
    assert past.status_code == 416 and past.json()["code"] == "PGRST103"
    bad = client.post("/rest/v1/items", json={"name": ""}, headers=auth)
    assert bad.status_code == 400
    assert set(bad.json()) == {"code", "details", "hint", "message"}
    assert bad.json()["code"] == "23514"


def test_postgrest_turns_away_bad_tokens_and_keys(client: httpx.Client,
                                                  standin: Standin) -> None:
    token = signed_in(client, standin)["access_token"]
    expired = jwt.encode({**jwt.decode(token, options={"verify_signature": False}), "exp": 1},
                         standin.private_key, algorithm="ES256", headers={"kid": standin.kid})
    response = client.get("/rest/v1/items", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.json() == {"code": "PGRST303", "details": None, "hint": None,
                               "message": "JWT expired"}
    anon = client.get("/rest/v1/items")
    assert anon.status_code == 401 and anon.json()["code"] == "42501"
    no_key = httpx.get(f"{standin.url}/rest/v1/items")
    assert no_key.status_code == 401
