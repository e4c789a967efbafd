"""Security checks across the whole app.

- Planted secrets (Authorization, cookies, passwords in forms and in JSON at any depth,
  access_token in the query, TURSO_AUTH_TOKEN / SUPABASE_ANON_KEY / SECRET_KEY in settings)
  reach no log sink (CSV, the Turso stand-in) and no output of a real server.
- Session cookies: HttpOnly and SameSite always; Secure over HTTPS, whether direct or announced
  by a trusted proxy's X-Forwarded-Proto, and not on the word of an untrusted one.
- Log injection: CR/LF and the other characters some readers take for line ends cannot forge
  CSV rows (one physical line per row, and each value reads back as sent).
- The items CSV export is formula-safe.

(The log explorer, /logs, does not exist yet: its pages and its 404 for non-admins are not
checked here.)
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import ipaddress
import json
import sqlite3
import ssl
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from log.core.rows import ApiLog
from tests.support.app import AppClient, make_settings
from tests.support.reliability import Remote, app_process, async_wait_for, csv_rows

SECRETS = {
    "authorization": "planted-authz-7f3a91",
    "cookie": "planted-cookie-91bd44",
    "form_password": "planted-form-pw-55e1c0",
    "login_password": "planted-login-pw-a0c2d7",
    "json_password": "planted-json-pw-3c9d18",
    "deep_json_secret": "planted-deep-token-e2b7",
    "query_token": "planted-qs-token-e41f05",
    "turso_token": "planted-turso-token-b7c0aa",
    "supabase_key": "planted-supabase-anon-2d8e6f",
    "secret_key": "planted-secret-key-6a1f3b",
}
VISIBLE = "visible-marker-77c1"  # sent next to the secrets: proves the same fields are logged



def everything_in(db_path: Path) -> str:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return "\n".join(conn.iterdump())


@pytest.mark.anyio
async def test_planted_secrets_reach_no_sink_and_no_output(tmp_path: Path) -> None:
    s = SECRETS
    with Remote(tmp_path / "turso.db", token=s["turso_token"]) as remote:
        log_dir = tmp_path / "logs"
        env = {
            "LOG_SINKS": "csv,turso",
            "LOG_DIR": str(log_dir),
            "TURSO_DATABASE_URL": remote.url,
            # Quoted, as `docker run --env-file` passes it: the warning must not quote the value.
            "TURSO_AUTH_TOKEN": f'"{s["turso_token"]}"',
            "SUPABASE_ANON_KEY": s["supabase_key"],  # without SUPABASE_URL: the embedded store
            "SECRET_KEY": s["secret_key"],
        }
        # Started like the image (Dockerfile CMD): uvicorn's own access log is off there, since
        # it prints the raw query string (?access_token=...); the app's request log redacts it.
        with app_process(tmp_path / "data", env, args=("--no-access-log",)) as app:
            responses: list[httpx.Response] = []

            async def count(response: httpx.Response) -> None:
                responses.append(response)

            async with AppClient(base_url=app.url, event_hooks={"response": [count]}) as client:
                assert (await client.signup("sec@example.com", s["form_password"])).status_code == 303
                session_cookie = client.cookies["session"]
                client.cookies.set("tracker", s["cookie"])
                auth = {"Authorization": f"Bearer {s['authorization']}"}
                await client.get("/items", params={"access_token": s["query_token"], "q": VISIBLE}, headers=auth)
                deep: object = {"note": VISIBLE, "password": s["json_password"]}
                for level in range(40):
                    deep = {f"level{level}": [deep, {"auth_token": s["deep_json_secret"]}]}
                await client.post("/items", json={"user": {"profile": deep}}, headers=client.htmx(**auth))
                await client.post("/items", json=deep, headers=client.htmx(**{"Content-Type": "application/vnd.api+json"}))
                await client.post("/logout", headers=client.htmx())
                await client.refresh_csrf()
                bad_login = await client.post(
                    "/login", data={"email": "sec@example.com", "password": s["login_password"],
                                    "csrf_token": client.csrf},
                )
                assert bad_login.status_code == 401
                login_csrf = client.csrf
                sent = len(responses)
            await async_wait_for(lambda: len(remote.ids()) >= sent, 30, "every row in Turso")
            health = httpx.get(f"{app.url}/health").text
        output = app.output()

    csv_text = "".join(p.read_text(encoding="utf-8") for p in sorted(log_dir.iterdir()))
    db_text = everything_in(remote.db_path)
    assert len(csv_rows(log_dir)) == sent and len(remote.ids()) == sent
    # The fields the secrets travelled in are logged (so their absence means redaction):
    for where, text in (("csv", csv_text), ("turso", db_text)):
        assert VISIBLE in text and "sec@example.com" in text, where
        assert "[REDACTED]" in text, where
    assert "TURSO_AUTH_TOKEN was wrapped in quotes" in output
    places = {"csv": csv_text, "turso": db_text, "server output": output, "/health": health}
    planted = {**s, "session_cookie": session_cookie, "csrf_token": login_csrf}
    leaks = [(name, where) for name, value in planted.items() for where, text in places.items() if value in text]
    assert leaks == []


def test_session_cookie_flags_over_plain_http_and_behind_proxies(tmp_path: Path) -> None:
    # uvicorn trusts X-Forwarded-Proto only from --forwarded-allow-ips: 127.0.0.1 here.
    trusting = ("--proxy-headers", "--forwarded-allow-ips=127.0.0.1")
    with app_process(tmp_path / "a", {"LOG_SINKS": ""}, args=trusting) as app:
        plain = httpx.get(f"{app.url}/").headers["set-cookie"]
        proxied = httpx.get(f"{app.url}/", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    with app_process(tmp_path / "b", {"LOG_SINKS": ""},
                     args=("--proxy-headers", "--forwarded-allow-ips=192.0.2.1")) as app:
        untrusted = httpx.get(f"{app.url}/", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    for cookie in (plain, proxied, untrusted):
        attributes = [a.strip().lower() for a in cookie.split(";")]
        assert "httponly" in attributes and "samesite=lax" in attributes, cookie
    assert "secure" not in [a.strip().lower() for a in plain.split(";")], plain
    assert "secure" in [a.strip().lower() for a in proxied.split(";")], proxied
    assert "secure" not in [a.strip().lower() for a in untrusted.split(";")], untrusted


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = tmp_path / "key.pem", tmp_path / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_session_cookie_is_secure_over_direct_https(tmp_path: Path) -> None:
    key, cert = self_signed(tmp_path)
    args = ("--ssl-keyfile", str(key), "--ssl-certfile", str(cert))
    with app_process(tmp_path / "data", {"LOG_SINKS": ""}, args=args, scheme="https") as app:
        cookie = httpx.get(f"{app.url}/", verify=ssl.create_default_context(cafile=str(cert))).headers["set-cookie"]
    attributes = [a.strip().lower() for a in cookie.split(";")]
    assert {"httponly", "samesite=lax", "secure"} <= set(attributes), cookie


# -- log injection --------------------------------------------------------------------------

BREAKS = ["\r\n", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.anyio
async def test_line_breaks_in_headers_paths_and_bodies_cannot_forge_csv_rows(tmp_path: Path, make_client) -> None:
    log_dir = tmp_path / "logs"
    client = await make_client(make_settings(tmp_path, log_sinks=("csv",), log_dir=log_dir))
    forged = '1,forged,GET,/x,\\N,\\N,200,\\N,1,\\N,\\N,2026-01-01 00:00:00.000'
    sent: list[tuple[str, str, str, str]] = []  # (trace id, endpoint, header value, body text)
    for i, brk in enumerate(BREAKS):
        value = f"a{brk}{forged}{brk}b"
        header = value.encode("utf-8")  # raw bytes on the wire; the app reads them as latin-1
        path = f"/items/{i}{brk}{forged}"
        response = await client.post(
            quote(path, safe="/,"),  # the app sees the decoded path, breaks included
            # A form body: the CSRF check reads it, so the log captures it (bodies nobody
            # reads are not captured).
            content=f"note={quote(value)}".encode(),
            headers=[(b"x-note", header), (b"content-type", b"application/x-www-form-urlencoded")],
        )
        sent.append((response.headers["x-trace-id"], path, header.decode("latin-1"), value))
    rows = await async_wait_for(lambda: len(csv_rows(log_dir)) >= len(sent) and csv_rows(log_dir), 10, "rows")

    data = (log_dir / "api_logs.csv").read_bytes()
    # One physical line per row (header + rows), by every definition of a line.
    assert data.count(b"\r\n") == data.count(b"\n") == data.count(b"\r") == len(rows) + 1
    assert len(data.decode("utf-8").splitlines()) == len(rows) + 1
    by_trace = {row.trace_id: row for row in rows}
    assert all(isinstance(r, ApiLog) for r in rows) and "forged" not in by_trace
    for trace_id, path, header, body in sent:
        row = by_trace[trace_id]
        assert row.endpoint == path
        assert row.request_header is not None and row.request_body is not None, row
        assert json.loads(row.request_header)["x-note"] == header, row.request_header
        assert json.loads(row.request_body) == {"note": body}, row.request_body


# -- spreadsheet safety of the export --------------------------------------------------------

DANGEROUS = ["=1+1", "+SUM(A1:A2)", "-2+3", "@SUM(A1)", '=HYPERLINK("http://evil.example","x")',
             "=cmd|' /C calc'!A0", "'=already quoted"]


@pytest.mark.anyio
async def test_items_export_is_formula_safe(tmp_path: Path, make_client) -> None:
    client = await make_client()
    await client.signup("csv@example.com")
    for name in DANGEROUS:
        response = await client.post("/items", data={"name": name, "description": name, "quantity": "1"},
                                      headers=client.htmx())
        assert response.status_code == 200, response.text[:300]
    export = await client.get("/items/export.csv")
    assert export.status_code == 200
    records = list(csv.reader(io.StringIO(export.text)))
    assert records[0][:3] == ["name", "description", "quantity"]
    cells = [cell for record in records[1:] for cell in record]
    assert len(records) == 1 + len(DANGEROUS)
    assert [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))] == []
    names = sorted(record[0] for record in records[1:])
    # The apostrophe is the only change: a spreadsheet shows the text the user typed.
    assert names == sorted("'" + n if n.startswith(("=", "+", "-", "@")) else n for n in DANGEROUS)


# -- secrets in HTML that is kept in the log (error pages, LOG_HTML_BODIES=full) -------------


@pytest.mark.parametrize(
    ("page", "kept"),
    [
        ("""<body hx-headers='{"X-CSRF-Token": "tok-1", "X-Trace-ID": "t-1"}'>""", "t-1"),
        ('<input type="hidden" name="csrf_token" value="tok-1"><input name="email" value="e@x">', "e@x"),
        ("<input type=hidden name=CSRF_TOKEN value=tok-1><p>Wrong password</p>", "Wrong password"),
        ('<div hx-vals="{&#34;password&#34;: &#34;tok-1&#34;, &#34;note&#34;: 1}">ok</div>', "note"),
        ('<p>cut at the cap</p><input type="hidden" name="csrf_token" value="tok-1', "cut at the cap"),
        ("""<body hx-headers='{"X-CSRF-Token": "tok-1""", "body"),
    ],
)
def test_kept_html_bodies_have_their_tokens_redacted(page: str, kept: str) -> None:
    from log.core.bodies import body_to_json
    from log.core.redact import RedactionPolicy

    for status, mode in ((422, "summary"), (200, "full")):
        out = body_to_json(content_type="text/html; charset=utf-8", data=page.encode(), total_size=len(page),
                           cap=16384, policy=RedactionPolicy(), is_response=True, status=status, html_mode=mode)
        assert out is not None and "tok-1" not in out and "[REDACTED]" in out and kept in out, out


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        # JSON sent with a form content type: the whole text becomes one form key.
        ("application/x-www-form-urlencoded", b'{"password": "tok-1", "v": []}'),
        ("application/x-www-form-urlencoded", b"password: tok-1&name=kept"),
        ("application/x-www-form-urlencoded", b"user[password]=tok-1&name=kept"),
    ],
)
def test_form_keys_that_hold_a_secret_are_redacted(content_type: str, body: bytes) -> None:
    from log.core.bodies import body_to_json
    from log.core.redact import RedactionPolicy

    out = body_to_json(content_type=content_type, data=body, total_size=len(body), cap=16384,
                       policy=RedactionPolicy(), is_response=False)
    assert out is not None and "tok-1" not in out and "[REDACTED]" in out, out


def test_query_keys_that_hold_a_secret_are_redacted() -> None:
    from log.core.build import endpoint_of
    from log.core.redact import RedactionPolicy

    for query in ("password:tok-1", "access_token=tok-1&q=kept", "%7B%22token%22:%22tok-1%22%7D", "x&secret%20tok-1"):
        endpoint = endpoint_of("/items", query, RedactionPolicy())
        assert "tok-1" not in endpoint and "[REDACTED]" in endpoint, endpoint


@pytest.mark.anyio
async def test_planted_secrets_appear_on_no_explorer_page(make_client, tmp_path) -> None:
    """The explorer shows what the sinks hold; a secret sent by a client shows on none of its pages."""
    import asyncio
    import sqlite3

    from tests.support.app import make_settings

    settings = make_settings(tmp_path, log_sinks=("csv", "turso"))
    admin = await make_client(settings)
    await admin.signup("admin@example.com")  # the first local account is the admin
    secret = "s3cr3t-PLANTED-9f2c"
    trace = "cccccccc-0000-4000-8000-00000000000c"
    await admin.post(
        f"/items?access_token={secret}",
        data={"name": "x", "password": secret, "csrf_token": admin.csrf},
        headers={"Authorization": f"Bearer {secret}", "X-Trace-ID": trace, "X-Api-Key": secret},
    )
    await admin.post(
        "/items", json={"deep": {"a": [{"password": secret, "token": secret}]}},
        headers={"X-CSRF-Token": admin.csrf, "X-Trace-ID": trace},
    )
    pages = ["/logs?range=24h", f"/logs?trace={trace}&range=24h", f"/logs/traces/{trace}", "/logs/overview?range=1h"]
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # the rows reach the log database in the background (batches of 200 ms)
        with sqlite3.connect(tmp_path / "logs.db") as db:
            stored = db.execute("SELECT count(*) FROM api_logs WHERE trace_id = ?", (trace,)).fetchone()[0]
        if stored >= 2:
            trace_page = await admin.get(f"/logs/traces/{trace}")
            break
        assert asyncio.get_running_loop().time() < deadline, "rows never reached the log database"
        await asyncio.sleep(0.05)
    for path in pages:
        page = await admin.get(path)
        assert page.status_code == 200, path
        assert secret not in page.text, path
    assert "[REDACTED]" in trace_page.text  # the rows are there, with their secrets scrubbed


@pytest.mark.anyio
async def test_static_files_and_health_probes_get_no_session(make_client, tmp_path: Path) -> None:
    # No cookie minted for a cookie-less client (their responses stay cacheable, probes stay
    # cheap), and a signed-in browser's session is not checked against the store for them.
    client = await make_client()
    for path in ("/static/app.css", "/health"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert "set-cookie" not in response.headers, path
        assert "no-store" not in response.headers.get("cache-control", ""), path
    page = await client.get("/")
    assert "session=" in page.headers["set-cookie"]  # pages still start a session
    assert page.headers["cache-control"] == "private, no-store"
    # Signed in, then the account disappears behind the app's back: a page notices (the session
    # check drops the session and re-sends the cookie); static files and probes do not check.
    await client.signup("gone@example.com")
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("DELETE FROM users WHERE email = 'gone@example.com'")
    for path in ("/static/app.css", "/health"):
        assert "set-cookie" not in (await client.get(path)).headers, path
    assert "session=" in (await client.get("/items")).headers.get("set-cookie", "")
