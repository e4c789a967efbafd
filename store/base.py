"""The data/auth interface handlers talk to. Two implementations: store/sqlite.py (embedded
default) and store/supabase.py (production). Handlers never import an implementation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec


class User(msgspec.Struct, frozen=True):
    id: str  # str on both backends: SQLite integer ids as text, Supabase UUIDs
    email: str
    is_admin: bool = False


class Item(msgspec.Struct, frozen=True):
    id: int
    name: str
    description: str
    quantity: int
    created_at: str
    updated_at: str


class ItemInput(msgspec.Struct, frozen=True):
    name: str
    description: str
    quantity: int


class ItemPage(msgspec.Struct, frozen=True):
    items: list[Item]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


class AuthError(Exception):
    """A user-facing auth failure; str(err) is safe to show."""


class RateLimited(AuthError):
    """The auth service refuses attempts for a while (an HTTP 429, not a wrong password)."""


class StoreUnavailable(Exception):
    """The backing service cannot be reached (rendered as a friendly 503)."""


class Session(msgspec.Struct, frozen=True):
    """What goes into the signed session cookie after login. Backend-specific data in `tokens`."""

    user: User
    tokens: dict[str, str] = {}


class Store(Protocol):
    async def sign_up(self, email: str, password: str) -> Session | None:
        """Create an account. Returns a Session when the user may log in at once, None when the
        backend wants email confirmation first. Raises AuthError."""

    async def log_in(self, email: str, password: str) -> Session:
        """Raises AuthError with one generic message for any bad credential."""

    async def resume(self, session: Session) -> Session | None:
        """Re-validate a session from the cookie (may refresh tokens). None = signed out."""

    async def log_out(self, session: Session) -> None:
        """End this session: a copy of its cookie no longer signs anyone in."""

    async def log_out_everywhere(self, session: Session) -> None:
        """End every session of the session's user, on every device."""

    async def list_items(self, session: Session, q: str, page: int, per_page: int) -> ItemPage: ...

    async def get_item(self, session: Session, item_id: int) -> Item | None: ...

    async def create_item(self, session: Session, data: ItemInput) -> Item: ...

    async def create_items(
        self, session: Session, rows: list[ItemInput], progress: Callable[[int], None] | None = None
    ) -> int:
        """Bulk import: all rows in one transaction (all or nothing); progress(rows_done)."""

    async def update_item(self, session: Session, item_id: int, data: ItemInput) -> Item | None: ...

    async def delete_item(self, session: Session, item_id: int) -> bool: ...

    async def close(self) -> None: ...
