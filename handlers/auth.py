"""Sign up, confirm the email address (Supabase backend), log in, log out (here or everywhere)."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from log import client_ip
from handlers._web import current_session, form_dict, is_htmx, redirect, render
from handlers.next_url import safe_next
from handlers.ratelimit import minutes
from middleware.session import set_session
from store.base import AuthError, RateLimited
from store.validate import validate_credentials


def _client_ip(request: Request) -> str:
    # The same rule as the request log: behind a trusted proxy only the entry it appended
    # to X-Forwarded-For counts (the client can forge everything to its left).
    trusted = request.state.settings.trusted_proxy
    return client_ip(request.client, request.headers.items(), trusted) or "unknown"


def _form_page(request: Request, mode: str, *, email: str = "", errors=None, status=200, next_url=None) -> Response:
    context = {"mode": mode, "email": email, "errors": errors or {}, "next_url": next_url}
    return render(request, "auth.html", context, status=status, block="auth_form")


def _too_many(request: Request, mode: str, email: str, what: str, wait: float, next_url: str | None = None) -> Response:
    """The form again with a 429 and a message saying how long to wait (Retry-After too)."""
    n = minutes(wait)
    message = f"Too many {what}. Try again in {n} minute{'s' * (n > 1)}."
    response = _form_page(request, mode, email=email, errors={"form": message}, status=429, next_url=next_url)
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


async def signup_page(request: Request) -> Response:
    if current_session(request):
        return redirect(request, "/")
    return _form_page(request, "signup")


async def signup(request: Request) -> Response:
    email, password, errors = validate_credentials(await form_dict(request), signing_up=True)
    if errors:
        return _form_page(request, "signup", email=email, errors=errors, status=422)
    # Every attempt that reaches the store counts, accepted or not: each costs a password hash,
    # and on the embedded default answers whether the address has an account.
    limits, ip = request.state.signup_limits, _client_ip(request)
    wait = limits.wait_seconds(ip)
    if wait > 0:
        return _too_many(request, "signup", email, "sign-up attempts", wait)
    limits.attempted(ip)
    try:
        session = await request.state.store.sign_up(email, password)
    except RateLimited as err:
        return _form_page(request, "signup", email=email, errors={"form": str(err)}, status=429)
    except AuthError as err:
        return _form_page(request, "signup", email=email, errors={"form": str(err)}, status=422)
    if session is None:  # the backend wants the email confirmed first
        response = render(request, "check_email.html", {"email": email}, block="check_email")
        if is_htmx(request):
            # The form asked to swap only itself; the message takes the whole page instead.
            response.headers["HX-Retarget"] = "main"
            response.headers["HX-Reswap"] = "innerHTML"
        return response
    set_session(request, session)
    return redirect(request, "/")


async def login_page(request: Request) -> Response:
    # `next`: the page that sent a signed-out visitor here (a 404 page's "Log in" link);
    # only a path on this site is kept (handlers/next_url.py).
    next_url = safe_next(request.query_params.get("next"))
    if current_session(request):
        return redirect(request, next_url or "/")
    return _form_page(request, "login", next_url=next_url)


async def login(request: Request) -> Response:
    form = await form_dict(request)
    next_url = safe_next(form.get("next"))
    email, password, errors = validate_credentials(form, signing_up=False)
    if errors:
        return _form_page(request, "login", email=email, errors=errors, status=422, next_url=next_url)
    limits, ip = request.state.login_limits, _client_ip(request)
    wait = limits.wait_seconds(ip, email)
    if wait > 0:
        return _too_many(request, "login", email, "failed attempts", wait, next_url=next_url)
    try:
        session = await request.state.store.log_in(email, password)
    except RateLimited as err:
        # The auth service's own limit: not a wrong password, so not counted as a failure here.
        return _form_page(request, "login", email=email, errors={"form": str(err)}, status=429, next_url=next_url)
    except AuthError as err:
        limits.failed(ip, email)
        return _form_page(request, "login", email=email, errors={"form": str(err)}, status=401, next_url=next_url)
    limits.succeeded(ip, email)
    set_session(request, session)
    return redirect(request, next_url or "/")


async def confirm_email(request: Request) -> Response:
    """The link in Supabase's "Confirm signup" email (template: {{ .SiteURL }}/auth/confirm?
    token_hash={{ .TokenHash }}&type=email). Verifying it signs the user in. Only a store that
    confirms addresses has verify_email; on the embedded store the route does not exist."""
    verify = getattr(request.state.store, "verify_email", None)
    if verify is None:
        return render(request, "not_found.html", status=404, block="not_found")
    token_hash = request.query_params.get("token_hash", "")
    kind = request.query_params.get("type", "")
    try:
        session = await verify(token_hash, kind)  # StoreUnavailable: the app's 503 page
    except AuthError as err:
        return render(request, "error.html", {"message": str(err)}, status=400, block="error")
    set_session(request, session)
    return redirect(request, "/")


async def _end_session(request: Request, end: str) -> Response:
    """Log out through the store's `end` method; the cookie goes even if the backend cannot be reached."""
    session = current_session(request)
    try:
        if session:
            await getattr(request.state.store, end)(session)
    finally:
        set_session(request, None)
    return redirect(request, "/")


async def logout(request: Request) -> Response:
    return await _end_session(request, "log_out")


async def logout_everywhere(request: Request) -> Response:
    """"Log out of all devices": every session of the user ends, this one included."""
    return await _end_session(request, "log_out_everywhere")


routes = [
    Route("/signup", signup_page, methods=["GET"]),
    Route("/signup", signup, methods=["POST"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/logout/all", logout_everywhere, methods=["POST"]),
    Route("/auth/confirm", confirm_email, methods=["GET"]),
]
