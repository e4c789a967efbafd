"""Items: the signed-in user's list, search, create, view, edit in place, delete."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handlers._web import current_session, form_dict, is_htmx, login_redirect, redirect, render
from store.base import Item, Session
from store.validate import validate_item

PER_PAGE = 20
MAX_ID = 2**63 - 1  # both backends store 64-bit ids; a larger one cannot exist
COMMIT_STEP = "DB_Commit"
T = TypeVar("T")


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    # str.isdigit() is also true for "²" and "①", which int() refuses: check ASCII digits.
    if not re.fullmatch(r"[0-9]{1,6}", raw):
        return 1
    return int(raw) or 1


async def _committed(
    request: Request, task_name: str, fields: object, item_id: int | None, write: Awaitable[T]
) -> T:
    """Await the store's write and record it as ONE task row under the request's trace:
    SUCCESS with the item's id, FAILED when nothing matched or the store raised (the error
    still propagates to its handler)."""
    task = request.state.tracing.task(request.state.trace_id, task_name)
    try:
        result = await write
    except Exception as exc:
        task.record(COMMIT_STEP, "FAILED", input=fields, output={"id": item_id}, error=exc)
        raise
    if isinstance(result, Item):
        item_id = result.id
    if result:
        task.record(COMMIT_STEP, "SUCCESS", input=fields, output={"id": item_id})
    else:
        task.record(COMMIT_STEP, "FAILED", input=fields, output={"id": item_id}, error="not found: nothing changed")
    return result


async def _list_context(request: Request, session: Session, **extra) -> dict:
    q = request.query_params.get("q", "").strip()[:200]
    store = request.state.store
    page = await store.list_items(session, q, _page_number(request), PER_PAGE)
    if not page.items and page.page > page.pages:
        # Past the end (the last item of the last page was just deleted): the last page.
        page = await store.list_items(session, q, page.pages, PER_PAGE)
    return {"page": page, "q": q, "form": {}, "errors": {}, **extra}


async def list_items(request: Request) -> Response:
    session = current_session(request)
    if session is None:
        # An htmx search or page change without a session (it expired, or ended in another
        # tab) must not swap the landing page into the list: send the browser to /login.
        return login_redirect(request) if is_htmx(request) else render(request, "landing.html")
    context = await _list_context(request, session)
    return render(request, "items.html", context, block="item_list")


async def create_item(request: Request) -> Response:
    session = current_session(request)
    if session is None:
        return login_redirect(request)
    form = await form_dict(request)
    data, errors = validate_item(form)
    if data is None:
        context = await _list_context(request, session, form=form, errors=errors)
        return render(request, "items.html", context, status=422, block="items_panel")
    store = request.state.store
    item = await _committed(request, "Item_Create", data, None, store.create_item(session, data))
    if not is_htmx(request):
        return redirect(request, "/items")
    context = await _list_context(request, session, created_id=item.id)
    return render(request, "items.html", context, block="items_panel", toast=f"Created “{item.name}”.")


async def _owned_item(request: Request) -> tuple[Session | None, Item | None]:
    session = current_session(request)
    if session is None:
        return None, None
    item_id = request.path_params["item_id"]
    if item_id > MAX_ID:
        return session, None
    return session, await request.state.store.get_item(session, item_id)


GONE = "That item no longer exists: it was deleted, perhaps in another tab."
# After htmx has swapped (the card gone), the page's list re-reads itself: count and page refill.
ITEMS_CHANGED = {"HX-Trigger-After-Settle": "items-changed"}


def _not_found(request: Request) -> Response:
    response = render(request, "not_found.html", status=404, block="not_found")
    if is_htmx(request):
        # The card asked about an item that is gone: say so, and let the list catch up.
        response.headers.update({"HX-Trigger": json.dumps({"toast-error": GONE}), **ITEMS_CHANGED})
    return response


async def show_item(request: Request) -> Response:
    session, item = await _owned_item(request)
    if session is None:
        return login_redirect(request)
    if item is None:
        return _not_found(request)
    return render(request, "item.html", {"item": item, "editing": False, "form": {}, "errors": {}}, block="item_card")


async def edit_item(request: Request) -> Response:
    session, item = await _owned_item(request)
    if session is None:
        return login_redirect(request)
    if item is None:
        return _not_found(request)
    return render(request, "item.html", {"item": item, "editing": True, "form": {}, "errors": {}}, block="item_card")


async def update_item(request: Request) -> Response:
    session, item = await _owned_item(request)
    if session is None:
        return login_redirect(request)
    if item is None:
        return _not_found(request)
    form = await form_dict(request)
    data, errors = validate_item(form)
    if data is None:
        context = {"item": item, "editing": True, "form": form, "errors": errors}
        return render(request, "item.html", context, status=422, block="item_card")
    store = request.state.store
    updated = await _committed(request, "Item_Update", data, item.id, store.update_item(session, item.id, data))
    if updated is None:
        return _not_found(request)
    if not is_htmx(request):
        return redirect(request, f"/items/{item.id}")
    context = {"item": updated, "editing": False, "form": {}, "errors": {}}
    return render(request, "item.html", context, block="item_card", toast=f"Saved “{updated.name}”.")


async def delete_item(request: Request) -> Response:
    session = current_session(request)
    if session is None:
        return login_redirect(request)
    item_id = request.path_params["item_id"]
    deleted = item_id <= MAX_ID and await _committed(
        request, "Item_Delete", {"id": item_id}, item_id, request.state.store.delete_item(session, item_id)
    )
    if not deleted:
        return _not_found(request)
    if not is_htmx(request):
        return redirect(request, "/items")
    # An empty 200 lets htmx swap the card out (after the fade-out set by swap:500ms).
    return Response(
        b"", headers={"HX-Trigger": '{"toast": "Item deleted."}', **ITEMS_CHANGED, "Vary": "HX-Request"}
    )


routes = [
    Route("/", list_items, methods=["GET"]),
    Route("/items", list_items, methods=["GET"]),
    Route("/items", create_item, methods=["POST"]),
    Route("/items/{item_id:int}", show_item, methods=["GET"]),
    Route("/items/{item_id:int}", update_item, methods=["PUT", "PATCH"]),
    Route("/items/{item_id:int}", delete_item, methods=["DELETE"]),
    Route("/items/{item_id:int}/edit", edit_item, methods=["GET"]),
    # Plain HTML forms (no JavaScript) can only POST:
    Route("/items/{item_id:int}/edit", update_item, methods=["POST"]),
    Route("/items/{item_id:int}/delete", delete_item, methods=["POST"]),
]
