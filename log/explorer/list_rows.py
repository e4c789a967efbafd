"""The request list's rows as HTML (the list page and each live-tail poll), a pure function.

Built in Python, one join per page, as trace_rows.py does for the trace page: as a Jinja loop
(a macro call for the badge, ~20 escapes and a dozen lookups per row) a row cost ~265k
instructions, a 50-row page more than its query and the rest of the page together. The markup
is the one the template wrote, byte for byte. Every text from a row is escaped with
markupsafe.escape; the rest is fixed markup. Classes used here are listed in views/logs.html so
the Tailwind build (which scans views/ only) keeps them; a test checks the built CSS has them.

The whole row is a link to the trace: the time cell's link covers the row (after:absolute) and
is the row's one tab stop; the copy button sits above it (relative z-10). Users are shown by
email where `emails` (user id -> email) knows them, by id otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from markupsafe import Markup, escape

from log.explorer.trace_rows import status_badge

LINK = "after:absolute after:inset-0 focus-visible:outline-2 focus-visible:outline-primary"
FAILED_LINK = ' data-testid="trace-link"'


def _row(r: Mapping[str, Any], emails: Mapping[Any, str]) -> str:
    status, user_id, at, duration = r["response_status"], r["user_id"], r["created_at"] or "", r["duration_ms"]
    failed = status is not None and status >= 500
    trace, method, endpoint = escape(r["trace_id"]), escape(r["method"]), escape(r["endpoint"])
    day, clock = escape(at[:10]), escape(at[11:])
    who = escape(emails.get(user_id) or user_id or "–")
    user_attr = f' data-user="{escape(user_id)}"' if user_id else ""
    return (
        f'\n<tr data-id="{escape(r["id"])}" class="relative hover:bg-base-200 focus-within:bg-base-200'
        f'{" bg-error/10" if failed else ""}">\n'
        f'  <td class="whitespace-nowrap font-mono text-xs">\n'
        f'    <a href="/logs/traces/{trace}"{FAILED_LINK if failed else ""}\n'
        f'       class="{LINK}{" link-error" if failed else ""}"\n'
        f'       aria-label="{day} {clock}: trace {trace}, {method} {endpoint}, {escape(status or "no status")}">'
        f'<span class="hidden sm:inline">{day} </span>{clock}</a></td>\n'
        f'  <td>{status_badge(status)}</td>\n'
        f'  <td class="text-xs hidden sm:table-cell">{method}</td>\n'
        f'  <td class="font-mono text-xs break-all min-w-32"><span class="sm:hidden font-sans">{method} </span>{endpoint}</td>\n'
        f'  <td class="text-right tabular-nums">{escape(duration) if duration is not None else "–"}</td>\n'
        f'  <td class="text-xs hidden md:table-cell"><span class="block max-w-48 truncate" title="{who}"{user_attr}>{who}</span></td>\n'
        f'  <td class="hidden lg:table-cell">\n'
        f'    <span class="flex items-center gap-1"><code class="font-mono text-xs whitespace-nowrap">{trace}</code>\n'
        f'    <button type="button" class="btn btn-ghost btn-xs relative z-10" data-copy="{trace}" aria-label="Copy trace id {trace}">Copy</button></span>\n'
        f'  </td>\n'
        f'</tr>\n'
    )


def request_rows(rows: Iterable[Mapping[str, Any]], emails: Mapping[Any, str]) -> Markup:
    """Table rows (<tr>) for api_logs rows (dicts with id, trace_id, response_status, method,
    endpoint, created_at, user_id, duration_ms), in the order given."""
    return Markup("".join([_row(r, emails) for r in rows]))
