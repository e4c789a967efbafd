"""scrypt password hashing: format, salting, verification that never raises."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.passwords import N, P, R, dummy_hash, hash_password, verify_password

# Cheap work factor for property tests; the default (2**14) is exercised by the fixed tests.
FAST_N = 2**4
# NUL is refused before hashing (see test_nul_never_hashes_or_matches), so not generated here.
passwords = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=64)


def test_hash_format_and_round_trip():
    stored = hash_password("correct horse battery")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", N, R, P)
    assert N >= 2**14 and R == 8
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(digest)) == 64
    assert "correct horse battery" not in stored
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("", stored)


def test_hashes_are_salted():
    assert hash_password("same", n=FAST_N) != hash_password("same", n=FAST_N)


def test_dummy_hash_is_a_real_hash_of_something_unguessable():
    stored = dummy_hash()
    assert dummy_hash() is stored  # computed once per process
    assert stored.startswith(f"scrypt${N}${R}${P}$")
    assert not verify_password("", stored)
    assert not verify_password("password", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plaintext",
        "scrypt$",
        "scrypt$16$8$1$c2FsdA==",  # too few parts
        "scrypt$16$8$1$c2FsdA==$ZGlnZXN0$extra",  # too many parts
        "bcrypt$16$8$1$c2FsdA==$ZGlnZXN0",
        "scrypt$abc$8$1$c2FsdA==$ZGlnZXN0",
        "scrypt$15$8$1$c2FsdA==$ZGlnZXN0",  # n not a power of two
        "scrypt$16$8$1$not base64!$ZGlnZXN0",
        "scrypt$16$8$1$c2FsdA==$",  # empty digest
        "scrypt$1073741824$8$1$c2FsdA==$ZGlnZXN0",  # would need far more than maxmem
    ],
)
def test_malformed_stored_hash_is_a_failed_login_not_an_error(stored: str):
    assert verify_password("anything", stored) is False


@settings(max_examples=50, deadline=None)
@given(password=passwords, other=passwords)
def test_round_trip_property(password: str, other: str):
    stored = hash_password(password, n=FAST_N)
    assert verify_password(password, stored)
    assert verify_password(other, stored) == (other == password)


@settings(max_examples=200, deadline=None)
@given(stored=st.text(max_size=80), password=passwords)
def test_verify_never_raises_on_arbitrary_stored_text(stored: str, password: str):
    assert verify_password(password, stored) is False


def test_nul_never_hashes_or_matches():
    # HMAC zero-pads short keys, so scrypt("pw") == scrypt("pw\0"): NUL must never get that far.
    stored = hash_password("", n=FAST_N)
    assert verify_password("", stored)
    assert not verify_password("\0", stored)
    assert not verify_password("pw\0", hash_password("pw", n=FAST_N))
    with pytest.raises(ValueError):
        hash_password("pw\0", n=FAST_N)
