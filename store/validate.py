"""Pure input validation for items and accounts: form values in, (value, errors) out."""

from __future__ import annotations

import re
from collections.abc import Mapping

from store.base import ItemInput

NAME_MAX = 200
DESCRIPTION_MAX = 2000
QUANTITY_MAX = 2**31 - 1  # fits PostgreSQL's integer column on the Supabase backend
PASSWORD_MIN = 8
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# [0-9], not \d: \d (and int()) also take other scripts' digits ("٣" would be 3).
QUANTITY_RE = re.compile(r"[+-]?[0-9]{1,12}")


def validate_item(form: Mapping[str, str]) -> tuple[ItemInput | None, dict[str, str]]:
    errors: dict[str, str] = {}
    name = (form.get("name") or "").strip()
    description = (form.get("description") or "").strip()
    raw_quantity = (form.get("quantity") or "0").strip()
    # NUL: SQLite's length() stops at it (a CHECK failure, so a 500) and PostgreSQL text
    # refuses it; no one types it, so it is an input error like any other.
    if not name:
        errors["name"] = "Name is required."
    elif len(name) > NAME_MAX:
        errors["name"] = f"Name must be at most {NAME_MAX} characters (got {len(name)})."
    elif "\x00" in name:
        errors["name"] = "Name cannot contain NUL characters."
    if len(description) > DESCRIPTION_MAX:
        errors["description"] = (
            f"Description must be at most {DESCRIPTION_MAX} characters (got {len(description)})."
        )
    elif "\x00" in description:
        errors["description"] = "Description cannot contain NUL characters."
    quantity = 0
    if not QUANTITY_RE.fullmatch(raw_quantity):
        errors["quantity"] = "Quantity must be a whole number."
    else:
        quantity = int(raw_quantity)
        if quantity < 0:
            errors["quantity"] = "Quantity cannot be negative."
        elif quantity > QUANTITY_MAX:
            errors["quantity"] = f"Quantity must be at most {QUANTITY_MAX}."
    if errors:
        return None, errors
    return ItemInput(name=name, description=description, quantity=quantity), {}


def validate_credentials(form: Mapping[str, str], *, signing_up: bool) -> tuple[str, str, dict[str, str]]:
    email = (form.get("email") or "").strip().lower()
    password = form.get("password") or ""
    errors: dict[str, str] = {}
    if not EMAIL_RE.match(email) or len(email) > 254:
        errors["email"] = "Enter a valid email address."
    if signing_up and len(password) < PASSWORD_MIN:
        errors["password"] = f"Password must be at least {PASSWORD_MIN} characters."
    elif signing_up and len(password) > 1024:
        errors["password"] = "Password must be at most 1024 characters."
    elif not password:
        errors["password"] = "Enter your password."
    elif "\0" in password:  # store/passwords.py: NUL would make two passwords hash alike
        errors["password"] = "Password must not contain NUL characters."
    return email, password, errors
