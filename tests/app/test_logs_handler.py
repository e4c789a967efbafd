"""The explorer pages through the real app (in-process): access, filters, trace, overview."""

from __future__ import annotations

import datetime as dt
import math
import re
import sqlite3
from pathlib import Path

import pytest

from log.explorer.queries import SNOWFLAKE_EPOCH_MS, UTC, stamp
from log.core.rows import ApiLog, TaskProgressLog, columns

pytestmark = pytest.mark.anyio

FAILED_TRACE = "aaaaaaaa-0000-4000-8000-000000000001"
OK_TRACE = "bbbbbbbb-0000-4000-8000-000000000002"


def snowflake(at: dt.datetime, seq: int) -> int:
    return ((math.floor(at.timestamp() * 1000) - SNOWFLAKE_EPOCH_MS) << 22) | seq


def seed(data_dir: Path) -> dict[str, int]:
    """Known rows a few minutes old: one failing request with a failed step, two good ones."""
    now = dt.datetime.now(UTC)
    t0 = now - dt.timedelta(minutes=5)
    api = [
        ApiLog(id=snowflake(t0, 1), trace_id=FAILED_TRACE, method="POST", endpoint="/items/import",
               request_header='{"content-type":"text/csv","cookie":"[REDACTED]"}', request_body='{"rows":3}',
               response_status=500, response_body='{"error":"Internal Server Error"}', duration_ms=321,
               ip_address="10.0.0.1", user_id="7", created_at=stamp(t0)),
        ApiLog(id=snowflake(t0 + dt.timedelta(seconds=1), 2), trace_id=OK_TRACE, method="GET", endpoint="/items?q=x",
               request_header="{}", request_body=None, response_status=200, response_body=None, duration_ms=12,
               ip_address="10.0.0.2", user_id="8", created_at=stamp(t0 + dt.timedelta(seconds=1))),
        ApiLog(id=snowflake(t0 + dt.timedelta(seconds=2), 3), trace_id=OK_TRACE, method="GET", endpoint="/login",
               request_header="{}", request_body=None, response_status=404, response_body=None, duration_ms=3,
               ip_address=None, user_id=None, created_at=stamp(t0 + dt.timedelta(seconds=2))),
    ]
    steps = [
        TaskProgressLog(id=snowflake(t0, 10), trace_id=FAILED_TRACE, task_name="import_items", step_name="parse",
                        status="SUCCESS", input_data='{"file":"a.csv","size":12}', output_data='{"rows":3}',
                        error_message=None, stack_trace=None, execution_order=1, created_at=stamp(t0)),
        TaskProgressLog(id=snowflake(t0, 11), trace_id=FAILED_TRACE, task_name="import_items", step_name="save",
                        status="FAILED", input_data='{"rows":3}', output_data=None,
                        error_message="IntegrityError: UNIQUE constraint failed: items.name",
                        stack_trace='Traceback (most recent call last):\n  File "store.py", line 9\nIntegrityError',
                        execution_order=2, created_at=stamp(t0 + dt.timedelta(milliseconds=300))),
    ]
    conn = sqlite3.connect(data_dir / "logs.db", isolation_level=None)
    for row_type, rows in ((ApiLog, api), (TaskProgressLog, steps)):
        cols = columns(row_type)
        table = "api_logs" if row_type is ApiLog else "task_progress_logs"
        conn.executemany(
            f"INSERT INTO {table} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
            [[getattr(r, c) for c in cols] for r in rows],
        )
    conn.close()
    return {"failed": api[0].id, "ok": api[1].id, "notfound": api[2].id}


@pytest.fixture
async def admin(make_client, tmp_path):
    client = await make_client()
    await client.signup("admin@example.com")  # the first account is the admin
    ids = seed(tmp_path)
    return client, ids


def row_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-id="(\d+)"', html)]


@pytest.mark.parametrize("path", ["/logs", "/logs/overview", f"/logs/traces/{FAILED_TRACE}", "/logs?status=9"])
async def test_signed_out_and_non_admins_get_the_not_found_page(make_client, tmp_path, path) -> None:
    first = await make_client()
    await first.signup("admin@example.com")
    seed(tmp_path)
    anonymous = await make_client()
    response = await anonymous.get(path)
    assert response.status_code == 404 and 'id="not-found"' in response.text
    # Only the visitor's own URL comes back (in the "Log in" link's next=), never logged data.
    login_link = re.search(r'href="(/login\?next=[^"]*)" data-testid="not-found-login"', response.text)
    assert login_link is not None
    assert FAILED_TRACE not in response.text.replace(login_link.group(1), "")
    other = await make_client()
    await other.signup("someone@example.com")
    response = await other.get(path)
    assert response.status_code == 404 and 'id="not-found"' in response.text
    assert (await first.get(path.split("?")[0])).status_code == 200


async def test_list_is_newest_first_and_filters_combine(admin) -> None:
    client, ids = admin
    page = await client.get("/logs")
    assert page.status_code == 200 and "<html" in page.text
    assert row_ids(page.text) == [ids["notfound"], ids["ok"], ids["failed"]]
    five = await client.get("/logs?status=5xx&range=1h")
    assert row_ids(five.text) == [ids["failed"]]
    assert f'href="/logs/traces/{FAILED_TRACE}" data-testid="trace-link"' in five.text
    combo = await client.get("/logs?method=get&endpoint=/items&min_ms=10")
    assert row_ids(combo.text) == [ids["ok"]]
    assert row_ids((await client.get("/logs?user=8")).text) == [ids["ok"]]
    assert row_ids((await client.get(f"/logs?trace={OK_TRACE.upper()}")).text) == [ids["notfound"], ids["ok"]]
    assert row_ids((await client.get("/logs?code=404")).text) == [ids["notfound"]]
    assert row_ids((await client.get("/logs?range=15m&user=' OR '1'='1")).text) == []


async def test_htmx_gets_the_results_fragment_and_history_restore_the_page(admin) -> None:
    client, ids = admin
    fragment = await client.get("/logs?status=5xx", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<section id="log-results"') and "<html" not in fragment.text
    assert fragment.headers["vary"] == "HX-Request"
    restore = await client.get("/logs?status=5xx", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in restore.text and row_ids(restore.text) == [ids["failed"]]


async def test_invalid_filters_show_a_message_not_a_500(admin) -> None:
    client, _ = admin
    for query in ("code=abc", "range=3y", "from=not-a-date", "trace=xyz", "before=-1", "min_ms=-5",
                  "from=2026-02-01T00:00&to=2026-01-01T00:00"):
        response = await client.get(f"/logs?{query}")
        assert response.status_code == 422, query
        assert 'data-testid="filter-error"' in response.text
    fragment = await client.get("/logs?code=abc", headers={"HX-Request": "true"})
    assert fragment.status_code == 422 and "code" in fragment.text and "<html" not in fragment.text


async def test_pagination_links_walk_older_rows_without_repeats(admin, tmp_path) -> None:
    client, ids = admin
    base = dt.datetime.now(UTC) - dt.timedelta(hours=2)
    conn = sqlite3.connect(tmp_path / "logs.db", isolation_level=None)
    more = [snowflake(base + dt.timedelta(seconds=i), 100 + i) for i in range(120)]
    conn.executemany(
        "INSERT INTO api_logs (id, trace_id, method, endpoint, response_status, duration_ms, created_at)"
        " VALUES (?, ?, 'GET', '/p', 200, 1, ?)",
        [(row_id, OK_TRACE, stamp(base + dt.timedelta(seconds=i))) for i, row_id in enumerate(more)],
    )
    conn.close()
    seen = []
    pages = 0
    url = "/logs?range=24h"
    while url:
        page = await client.get(url)
        pages += 1
        seen += row_ids(page.text)
        found = re.search(r'<a class="btn btn-sm" href="([^"]+)"[^>]*data-testid="older"', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert pages == 3
    assert seen == [ids["notfound"], ids["ok"], ids["failed"], *reversed(more)]


async def test_trace_page_shows_requests_and_steps_in_order_with_the_failure(admin) -> None:
    client, _ = admin
    page = await client.get(f"/logs/traces/{FAILED_TRACE}")
    assert page.status_code == 200
    text = page.text
    assert text.index('data-kind="request"') < text.index('data-status="SUCCESS"') < text.index('data-status="FAILED"')
    assert 'data-testid="failed-step"' in text
    assert "IntegrityError: UNIQUE constraint failed: items.name" in text
    assert "File &#34;store.py&#34;, line 9" in text
    assert '&#34;file&#34;: &#34;a.csv&#34;,\n  &#34;size&#34;: 12' in text  # pretty-printed JSON input
    assert "[REDACTED]" in text
    assert (await client.get(f"/logs/traces/{FAILED_TRACE.upper().replace('-', '')}")).status_code == 200


@pytest.mark.parametrize("trace", ["not-a-trace", "cccccccc-0000-4000-8000-000000000003", "1%27%20OR%201%3D1"])
async def test_invalid_or_unknown_trace_is_404(admin, trace) -> None:
    client, _ = admin
    response = await client.get(f"/logs/traces/{trace}")
    assert response.status_code == 404 and 'id="not-found"' in response.text


async def test_overview_renders_charts_and_exact_numbers(admin) -> None:
    client, _ = admin
    page = await client.get("/logs/overview?range=1h")
    assert page.status_code == 200
    text = page.text
    # the two charts, and one latency bar per route (its numbers are table columns)
    assert text.count('<svg xmlns="http://www.w3.org/2000/svg"') == 2 + 3
    assert text.count("<title id=") == 2 and text.count("<desc id=") == 2
    assert 'style="' not in text.split("<main", 1)[1]  # the CSP forbids inline styles
    status = dict(re.findall(r'<td class="text-right tabular-nums" data-class="(\d)">(\d+)</td>', text))
    assert status == {"2": "1", "4": "1", "5": "1"}
    rates = dict(re.findall(r'<tr data-endpoint="([^"]+)">.*?data-rate="([\d.]+)"', text, re.S))
    assert rates == {"/items/import": "100.0", "/items": "0.0", "/login": "0.0"}  # 5xx share per route
    # The failed import's trace is a signature never seen before the range: route + status + exception type.
    new_errors = text.split('data-testid="new-errors"', 1)[1].split("</ul>", 1)[0]
    assert f'href="/logs/traces/{FAILED_TRACE}"' in new_errors
    assert "/items/import" in new_errors and "IntegrityError" in new_errors and 'data-status="500"' in new_errors
    latency = dict(re.findall(r'<tr data-endpoint="([^"]+)">.*?data-p="95">(\d+)<', text, re.S))
    assert latency == {"/items/import": "351", "/items": "12", "/login": "3"}  # 321 is in bucket [320, 351]
    for preset in ("15m", "24h", "7d", "all"):
        assert (await client.get(f"/logs/overview?range={preset}")).status_code == 200
    bad = await client.get("/logs/overview?range=1y")
    assert bad.status_code == 422 and 'data-testid="filter-error"' in bad.text


NASTY = ["'", "\"", "' OR '1'='1", "1; DROP TABLE api_logs; --", "%", "_", "\\", "<script>x</script>",
         "\u202e", "ü" * 300, "2026-01-01T00:00' --", "-1", "1e9", "0x1F", "NaN", " ", "\x00",
         "0001-01-01T00:00", "9999-12-31T23:59:59", "0001-01-01"]  # lone surrogates: see tests/log/explorer/test_queries.py (httpx cannot send them)
PARAMS = ["range", "from", "to", "status", "code", "method", "path", "endpoint", "user", "trace", "min_ms", "before"]


async def test_hostile_values_in_every_filter_give_200_or_422_and_no_foreign_rows(admin, tmp_path) -> None:
    client, ids = admin
    for name in PARAMS:
        for value in NASTY:
            for path in ("/logs", "/logs/overview"):
                response = await client.get(path, params={name: value, "status": "5xx"})
                if not value.strip() and name != "status":  # an empty filter is dropped from the URL
                    assert response.status_code == 303 and response.headers["location"] == f"{path}?status=5xx"
                    continue
                assert response.status_code in (200, 422), (path, name, value, response.status_code)
                if path == "/logs" and response.status_code == 200:
                    assert set(row_ids(response.text)) <= {ids["failed"]}, (name, value)
    conn = sqlite3.connect(tmp_path / "logs.db")
    assert conn.execute("SELECT COUNT(*) FROM api_logs").fetchone()[0] == 3


async def test_errors_status_route_or_path_field_and_emails(admin) -> None:
    client, ids = admin
    errors = await client.get("/logs?status=errors")
    assert row_ids(errors.text) == [ids["notfound"], ids["failed"]]  # 404 and 500, not the 200
    by_path = await client.get("/logs?path=/items")  # a path: prefix match
    assert row_ids(by_path.text) == [ids["ok"], ids["failed"]]
    assert 'name="path" value="/items"' in by_path.text
    page = await client.get("/logs")
    assert 'data-user="7">7<' in page.text  # no such account here: shown by id


async def test_route_template_in_the_path_field_matches_the_route_column(admin, tmp_path) -> None:
    client, ids = admin
    conn = sqlite3.connect(tmp_path / "logs.db", isolation_level=None)
    conn.execute("UPDATE api_logs SET route = '/items/{item_id:int}', user_id = '1' WHERE id = ?", [ids["ok"]])
    conn.close()
    page = await client.get("/logs", params={"path": "/items/{item_id:int}"})
    assert row_ids(page.text) == [ids["ok"]]
    assert 'data-user="1">admin@example.com<' in page.text
    by_email = await client.get("/logs", params={"user": "Admin@Example.com"})  # the filter takes an email too
    assert row_ids(by_email.text) == [ids["ok"]]


async def test_empty_filters_are_left_out_of_the_url(admin) -> None:
    client, _ = admin
    response = await client.get("/logs?range=1h&status=&method=&path=&user=&trace=&min_ms=&code=")
    assert response.status_code == 303 and response.headers["location"] == "/logs?range=1h"
    response = await client.get("/logs/overview?range=&from=&to=")
    assert response.status_code == 303 and response.headers["location"] == "/logs/overview"


async def test_live_tail_returns_only_rows_newer_than_the_newest_shown(admin, tmp_path) -> None:
    client, ids = admin
    page = await client.get("/logs?status=errors&tail=1")
    poller = re.search(r'<div id="log-tail" data-tail hx-get="([^"]+)" hx-trigger="every 2s"', page.text)
    assert poller is not None
    url = poller.group(1).replace("&amp;", "&")
    assert url == f"/logs/tail?status=errors&after={ids['notfound']}"
    assert (await client.get(url, headers=client.htmx())).status_code == 204  # nothing new
    newer = dt.datetime.now(UTC) - dt.timedelta(seconds=1)
    conn = sqlite3.connect(tmp_path / "logs.db", isolation_level=None)
    for seq, status in ((20, 503), (21, 200)):
        conn.execute("INSERT INTO api_logs (id, trace_id, method, endpoint, response_status, created_at)"
                     " VALUES (?, ?, 'GET', '/new', ?, ?)", [snowflake(newer, seq), OK_TRACE, status, stamp(newer)])
    conn.close()
    poll = await client.get(url, headers=client.htmx())
    assert poll.status_code == 200 and "<html" not in poll.text
    assert row_ids(poll.text) == [snowflake(newer, 20)]  # the filter applies: the 200 is not an error
    assert 'hx-swap-oob="afterbegin:#log-rows"' in poll.text
    assert f"after={snowflake(newer, 20)}" in poll.text  # the poller moves on
    assert 'id="log-empty"' not in poll.text  # the list had rows: no "no requests" row to remove
    first = await client.get("/logs/tail?status=errors&after=0", headers=client.htmx())  # the list was empty
    assert '<div id="log-empty" hx-swap-oob="delete"></div>' in first.text
    # A filter change re-renders the results without tail=1: no poller, the tail stops.
    assert 'id="log-tail"' not in (await client.get("/logs?status=5xx", headers=client.htmx())).text
    assert (await client.get("/logs/tail?after=x")).status_code == 422


async def test_live_tail_is_404_for_non_admins(make_client, tmp_path) -> None:
    first = await make_client()
    await first.signup("admin@example.com")
    seed(tmp_path)
    anonymous = await make_client()
    assert (await anonymous.get("/logs/tail?after=0")).status_code == 404


async def test_overview_drills_down_from_a_route_to_its_paths(admin, tmp_path) -> None:
    client, ids = admin
    conn = sqlite3.connect(tmp_path / "logs.db", isolation_level=None)
    conn.execute("UPDATE api_logs SET route = '/items' WHERE id = ?", [ids["ok"]])
    conn.close()
    page = await client.get("/logs/overview", params={"range": "1h", "route": "/items"})
    paths = page.text.split('data-testid="paths-table"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<a class="link" href="/logs\?path=([^"&]+)', paths) == ["/items"]  # query string cut
    assert ">1<" in paths


async def test_explorer_pages_are_full_width_and_item_pages_keep_theirs(admin) -> None:
    client, _ = admin
    for path in ("/logs", "/logs/overview", f"/logs/traces/{FAILED_TRACE}"):
        assert re.search(r"<main [^>]*class=\"max-w-none ", (await client.get(path)).text), path
    assert re.search(r"<main [^>]*class=\"max-w-4xl ", (await client.get("/")).text)


async def test_both_explorer_forms_offer_the_same_time_range_fields(admin) -> None:
    client, _ = admin
    for path in ("/logs?range=custom&from=2026-12-01T10:00", "/logs/overview?range=custom&from=2026-12-01T10:00"):
        html = (await client.get(path)).text
        assert re.search(r'<option value="custom" selected>Custom \(UTC\)</option>', html), path
        assert 'name="from" value="2026-12-01T10:00"' in html and 'name="to" value=""' in html, path
        assert '<option value="all" >All time</option>' in html, path


def test_every_class_the_list_rows_use_is_in_the_built_css() -> None:
    """The Tailwind build scans views/ only: classes written by log/explorer/list_rows.py must be
    listed in views/logs.html, or the committed CSS lacks them."""
    from log.explorer import list_rows

    css = (Path(__file__).resolve().parents[2] / "views" / "static" / "app.css").read_text()
    rows = [{"id": i, "trace_id": "t", "response_status": status, "method": "GET", "endpoint": "/", "created_at": "x",
             "user_id": "7", "duration_ms": 1} for i, status in enumerate((None, 200, 302, 404, 500))]
    markup = str(list_rows.request_rows(rows, {}))
    used = {c for attr in re.findall(r'class="([^"]*)"', markup) for c in attr.split()}
    assert {"bg-error/10", "link-error", "after:absolute", "badge-warning", "lg:table-cell"} <= used  # every kind of row drawn
    missing = sorted(c for c in used if "." + re.sub(r"([^\w-])", r"\\\1", c) not in css)  # CSS-escaped
    assert not missing, missing
