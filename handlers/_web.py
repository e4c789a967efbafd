"""Small helpers every handler uses: render a page or its htmx fragment, redirects, auth."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from store.base import Session


def is_htmx(request: Request) -> bool:
    """A request that wants a fragment: htmx, but not boosted links nor a history restore
    (after Back with an empty history cache, htmx asks for the whole page)."""
    headers = request.headers
    return (
        headers.get("hx-request") == "true"
        and headers.get("hx-boosted") != "true"
        and headers.get("hx-history-restore-request") != "true"
    )


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    block: str | None = None,
    toast: str | None = None,
    partial: bool | None = None,
) -> Response:
    """The full page, or only `block` of it for htmx requests (same template, same data).
    `partial=True` always renders the block (fragments that are never a page of their own)."""
    state = request.state
    ctx = {
        "user": getattr(state, "user", None),
        "csrf_token": getattr(state, "csrf_token", ""),
        "trace_id": getattr(state, "trace_id", ""),
        "demo_mode": getattr(state, "demo_mode", False),
        "logs_per_instance": getattr(state, "logs_per_instance", False),
        **(context or {}),
    }
    headers = {"Vary": "HX-Request"}
    if toast:
        headers["HX-Trigger"] = json.dumps({"toast": toast})
    if partial is None:
        partial = is_htmx(request)
    kwargs = {"block_name": block} if block and partial else {}
    return state.templates.TemplateResponse(
        request, template, ctx, status_code=status, headers=headers, **kwargs
    )


def redirect(request: Request, url: str) -> Response:
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url, "Vary": "HX-Request"})
    return RedirectResponse(url, status_code=303, headers={"Vary": "HX-Request"})


def current_session(request: Request) -> Session | None:
    return getattr(request.state, "session", None)


def login_redirect(request: Request) -> Response:
    return redirect(request, "/login")


async def form_dict(request: Request) -> dict[str, str]:
    """Form fields as strings; files and repeated keys are not part of these forms."""
    form = await request.form()
    try:
        return {k: v for k, v in form.items() if isinstance(v, str)}
    finally:
        await form.close()
