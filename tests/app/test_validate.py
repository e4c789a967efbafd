"""Pure validation of item and account forms, with properties checked by hypothesis."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.base import ItemInput
from store.migrate import migrate
from store.validate import (
    DESCRIPTION_MAX,
    NAME_MAX,
    PASSWORD_MIN,
    QUANTITY_MAX,
    validate_credentials,
    validate_item,
)

FIELDS = {"name", "description", "quantity"}
text = st.text(max_size=300)
long_text = st.one_of(text, st.text(min_size=190, max_size=2100))
forms = st.dictionaries(
    st.sampled_from(["name", "description", "quantity", "other", "csrf_token"]),
    st.one_of(long_text, st.integers().map(str), st.just("")),
)
nice_chars = st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))
good_names = st.text(alphabet=nice_chars, min_size=1, max_size=NAME_MAX)


def form(**kw: str) -> dict[str, str]:
    return {"name": "Widget", "description": "", "quantity": "1", **kw}


@given(forms)
def test_validate_item_never_raises_and_is_all_or_nothing(f: dict[str, str]):
    data, errors = validate_item(f)
    if data is None:
        assert errors and set(errors) <= FIELDS
        assert all(isinstance(m, str) and m for m in errors.values())
    else:
        assert errors == {}
        assert isinstance(data, ItemInput)
        assert 1 <= len(data.name) <= NAME_MAX and data.name == data.name.strip()
        assert len(data.description) <= DESCRIPTION_MAX
        assert 0 <= data.quantity <= QUANTITY_MAX
        # what the SQLite CHECK constraints and PostgreSQL text columns also accept
        assert "\x00" not in data.name and "\x00" not in data.description


@given(name=good_names, quantity=st.integers(0, QUANTITY_MAX), description=st.text(alphabet=nice_chars, max_size=DESCRIPTION_MAX))
def test_valid_input_is_accepted_unchanged(name: str, quantity: int, description: str):
    data, errors = validate_item({"name": name, "description": description, "quantity": str(quantity)})
    assert errors == {}
    assert data == ItemInput(name=name, description=description, quantity=quantity)


@given(st.integers(max_value=-1))
def test_negative_quantity_rejected(n: int):
    _, errors = validate_item(form(quantity=str(n)))
    assert set(errors) == {"quantity"}


@given(st.integers(min_value=QUANTITY_MAX + 1))
def test_too_large_quantity_rejected(n: int):
    _, errors = validate_item(form(quantity=str(n)))
    assert set(errors) == {"quantity"}


@given(st.text(min_size=NAME_MAX + 1, max_size=NAME_MAX + 50, alphabet=nice_chars))
def test_long_name_rejected(name: str):
    _, errors = validate_item(form(name=name))
    assert set(errors) == {"name"}


@pytest.mark.parametrize("quantity", ["abc", "-1", "1.5", "1e3", "0x10", "1 000", " ", "--1", "+"])
def test_bad_quantities_rejected_with_a_quantity_message(quantity: str):
    data, errors = validate_item(form(quantity=quantity))
    assert data is None
    assert set(errors) == {"quantity"}
    assert "Quantity" in errors["quantity"]


@pytest.mark.parametrize("quantity", ["٣", "۷", "３", "1٣", "߁", "𝟙"])
def test_digits_outside_ascii_are_refused_with_the_quantity_message(quantity: str):
    data, errors = validate_item(form(quantity=quantity))
    assert data is None
    assert errors["quantity"] == "Quantity must be a whole number."


@pytest.mark.parametrize("quantity", ["0", "7", " 7 ", "+7", "007", str(QUANTITY_MAX)])
def test_good_quantities(quantity: str):
    data, errors = validate_item(form(quantity=quantity))
    assert errors == {} and data is not None and data.quantity == int(quantity)


def test_missing_quantity_means_zero():
    data, _ = validate_item({"name": "x"})
    assert data == ItemInput(name="x", description="", quantity=0)


def test_ten_thousand_char_name_rejected():
    data, errors = validate_item(form(name="n" * 10_000))
    assert data is None and set(errors) == {"name"}
    assert "200" in errors["name"] and "10000" in errors["name"]


@pytest.mark.parametrize("name", ["", "   ", "\n\t"])
def test_blank_name_rejected(name: str):
    _, errors = validate_item(form(name=name))
    assert errors == {"name": "Name is required."}


def test_name_is_stripped_and_limits_are_inclusive():
    data, _ = validate_item(form(name="  " + "n" * NAME_MAX + "  ", description="d" * DESCRIPTION_MAX))
    assert data is not None and data.name == "n" * NAME_MAX
    _, errors = validate_item(form(description="d" * (DESCRIPTION_MAX + 1)))
    assert set(errors) == {"description"} and str(DESCRIPTION_MAX) in errors["description"]


def test_every_field_reports_its_own_error():
    data, errors = validate_item({"name": "", "description": "d" * 3000, "quantity": "-1"})
    assert data is None and set(errors) == FIELDS


@pytest.mark.parametrize("field", ["name", "description"])
def test_nul_character_rejected(field: str):
    data, errors = validate_item(form(**{field: "ab\x00c"}))
    assert data is None and set(errors) == {field}


# credentials ---------------------------------------------------------------------------------


@given(st.dictionaries(st.sampled_from(["email", "password", "x"]), st.text(max_size=1100)), st.booleans())
def test_validate_credentials_never_raises(f: dict[str, str], signing_up: bool):
    email, password, errors = validate_credentials(f, signing_up=signing_up)
    assert set(errors) <= {"email", "password"}
    assert email == email.strip().lower()
    assert password == (f.get("password") or "")


def test_credentials_normalise_email():
    email, password, errors = validate_credentials(
        {"email": "  Me@Example.COM ", "password": " spaces kept "}, signing_up=True
    )
    assert (email, password, errors) == ("me@example.com", " spaces kept ", {})


@pytest.mark.parametrize("email", ["", "me", "me@", "@example.com", "me@example", "a b@example.com", "x" * 250 + "@e.com"])
def test_bad_emails(email: str):
    _, _, errors = validate_credentials({"email": email, "password": "long enough"}, signing_up=False)
    assert set(errors) == {"email"}


def test_password_rules_differ_between_signup_and_login():
    short = {"email": "a@example.com", "password": "x" * (PASSWORD_MIN - 1)}
    assert set(validate_credentials(short, signing_up=True)[2]) == {"password"}
    assert validate_credentials(short, signing_up=False)[2] == {}
    too_long = {"email": "a@example.com", "password": "x" * 1025}
    assert set(validate_credentials(too_long, signing_up=True)[2]) == {"password"}
    empty = {"email": "a@example.com", "password": ""}
    assert validate_credentials(empty, signing_up=False)[2] == {"password": "Enter your password."}
    exact = {"email": "a@example.com", "password": "x" * PASSWORD_MIN}
    assert validate_credentials(exact, signing_up=True)[2] == {}


# accepted input must also be storable -------------------------------------------------------

@pytest.fixture(scope="module")
def db():
    conn = sqlite3.connect(":memory:")
    migrate(conn)
    conn.execute("INSERT INTO users (email, password_hash) VALUES ('v@example.com', 'x')")
    yield conn
    conn.close()


@given(f=forms)
def test_accepted_items_satisfy_the_database_constraints(db: sqlite3.Connection, f: dict[str, str]):
    data, _ = validate_item(f)
    if data is not None:
        with db:  # a CHECK constraint violation raises here
            cur = db.execute(
                "INSERT INTO items (user_id, name, description, quantity) VALUES (1, ?, ?, ?)",
                (data.name, data.description, data.quantity),
            )
        assert cur.rowcount == 1


@pytest.mark.parametrize("name", ["\x00", "\x00abc", "a\x00"])
def test_nul_names_never_reach_the_database(name: str):
    data, errors = validate_item(form(name=name))
    assert data is None and "name" in errors


@pytest.mark.parametrize("signing_up", [True, False])
def test_nul_in_a_password_is_a_clear_error(signing_up: bool):
    _, _, errors = validate_credentials({"email": "a@example.com", "password": "correct horse\x00"}, signing_up=signing_up)
    assert errors == {"password": "Password must not contain NUL characters."}
