"""Secrets a client can smuggle past a by-name redactor, read back from the rows the app wrote.

- a login form declared in a charset the app ignores (utf-16-le, cp037): the app logs in with
  the ASCII form, so the row must redact that form, not a re-decoded copy of it;
- access keys and signatures in query strings and headers;
- tokens in the query string or fragment of URL-valued headers (Referer, Origin, HX-Current-URL);
- an invalid X-Trace-ID, which the README promises is never stored as sent.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.support.app import make_settings
from tests.support.reliability import async_wait_for, csv_rows

PLANTED = [f"planted-{i}-c4e1" for i in range(12)]
PASSWORD = "correct horse battery"


@pytest.mark.anyio
async def test_smuggled_secrets_are_redacted_in_the_stored_rows(tmp_path: Path, make_client) -> None:
    log_dir = tmp_path / "logs"
    client = await make_client(make_settings(tmp_path, log_sinks=("csv",), log_dir=log_dir))
    assert (await client.signup("redact@example.com", PASSWORD)).status_code == 303
    await client.post("/logout", data={"csrf_token": client.csrf})
    await client.refresh_csrf()

    traces = {name: str(uuid.uuid4()) for name in ("utf-16-le", "cp037", "query", "urls")}
    for charset in ("utf-16-le", "cp037"):
        form = f"email=redact%40example.com&password={PASSWORD.replace(' ', '+')}&csrf_token={client.csrf}"
        response = await client.post(
            "/login", content=form.encode(),
            headers={"Content-Type": f"application/x-www-form-urlencoded; charset={charset}",
                     "X-Trace-ID": traces[charset]},
        )
        assert response.status_code == 303, response.text  # the app read the form: it logged in
        await client.post("/logout", data={"csrf_token": client.csrf})
        await client.refresh_csrf()

    p = PLANTED
    await client.get(
        f"/login?access_key={p[0]}&sig={p[1]}&X-Amz-Signature={p[2]}&q=kept",
        headers={"X-Access-Key": p[3], "X-Trace-ID": traces["query"]},
    )
    await client.get("/login", headers={
        "Referer": f"http://testserver/auth/confirm?token_hash={p[4]}&type=email",
        "Origin": f"http://testserver/?access_token={p[5]}",
        "HX-Current-URL": f"http://testserver/#access_token={p[6]}&refresh_token={p[7]}&type=recovery",
        "X-Trace-ID": traces["urls"],
    })
    junk = f"<{p[8]}>"
    invalid = await client.get("/login", headers={"X-Trace-ID": junk})

    wanted = {*traces.values(), invalid.headers["x-trace-id"]}
    rows = await async_wait_for(
        lambda: wanted <= {r.trace_id for r in csv_rows(log_dir)} and csv_rows(log_dir), 10, "the rows")
    stored = "\n".join(path.read_text() for path in log_dir.glob("*.csv*"))
    assert PASSWORD not in stored and "correct+horse" not in stored
    assert not [s for s in PLANTED if s in stored]

    by_trace = {r.trace_id: r for r in rows}
    for charset in ("utf-16-le", "cp037"):  # the form as the app read it, redacted
        assert json.loads(by_trace[traces[charset]].request_body) == {
            "email": "redact@example.com", "password": "[REDACTED]", "csrf_token": "[REDACTED]"}
    query = by_trace[traces["query"]]
    assert query.endpoint == "/login?access_key=[REDACTED]&sig=[REDACTED]&X-Amz-Signature=[REDACTED]&q=kept"
    assert json.loads(query.request_header)["x-access-key"] == "[REDACTED]"
    urls = json.loads(by_trace[traces["urls"]].request_header)
    assert urls["referer"] == "http://testserver/auth/confirm?token_hash=[REDACTED]&type=email"
    assert urls["origin"] == "http://testserver/?access_token=[REDACTED]"
    assert urls["hx-current-url"] == (
        "http://testserver/#access_token=[REDACTED]&refresh_token=[REDACTED]&type=recovery")
    assert json.loads(by_trace[invalid.headers["x-trace-id"]].request_header)["x-trace-id"] == (
        f"[invalid: {len(junk)} chars]")
