"""Password hashing with scrypt (memory-hard, in the standard library)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

# n=2**14, r=8 → 16 MiB per hash: OWASP's scrypt baseline.
N, R, P = 2**14, 8, 1


def hash_password(password: str, *, n: int = N) -> str:
    # scrypt keys HMAC-SHA256 with the password, and HMAC zero-pads short keys: "pw" and
    # "pw\0" would hash alike. NUL is never part of a real password; callers validate first.
    if "\0" in password:
        raise ValueError("password contains a NUL character")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=R, p=P, maxmem=64 * 1024 * 1024)
    return f"scrypt${n}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    if "\0" in password:  # see hash_password: would match the same password without its NULs
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 * 1024 * 1024,
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def dummy_hash() -> str:
    """Verified against when the account does not exist, so a login for an unknown email
    costs the same time as a wrong password (no account enumeration by timing)."""
    return hash_password(secrets.token_urlsafe(16))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
