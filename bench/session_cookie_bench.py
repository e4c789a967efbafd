"""Microbenchmark: µs per session-cookie sign / verify, ours vs itsdangerous, one core, in-process.

    python bench/session_cookie_bench.py [--number 20000] [--smoke]

Prints the best of 5 repeats (µs per call) for: signing the anonymous payload (every request
without a cookie), verifying a signed-in cookie (Supabase-sized tokens), and the session
middleware's `load()` on a returning cookie (the cache hit).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import timeit
from pathlib import Path

from itsdangerous import URLSafeTimedSerializer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from middleware.session import SessionMiddleware  # noqa: E402
from middleware.signed_cookie import SignedSerializer  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"
MAX_AGE = 14 * 24 * 3600


def best_us(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per repeat")
    parser.add_argument("--smoke", action="store_true", help="200 calls per repeat")
    args = parser.parse_args(argv)
    number = 200 if args.smoke else args.number

    theirs = URLSafeTimedSerializer(SECRET, salt="session")
    ours = SignedSerializer(SECRET, salt="session")
    anonymous = {"csrf": secrets.token_urlsafe(32), "s": None}
    signed_in = {
        "csrf": secrets.token_urlsafe(32),
        "s": {
            "user": {"id": "0b8e5a52-6a43-4a3e-9a1c-2f3c1e0d9b77", "email": "me@example.com", "is_admin": False},
            "tokens": {"access_token": "eyJ" + secrets.token_urlsafe(600), "refresh_token": "r3fr35hxyz"},
        },
    }
    cookie = theirs.dumps(signed_in)
    assert ours.loads(cookie, MAX_AGE) == theirs.loads(cookie, max_age=MAX_AGE) == signed_in

    async def app(scope, receive, send):  # never called: load() only
        raise AssertionError

    middleware = SessionMiddleware(app, secret_key=SECRET, max_age=MAX_AGE)
    scope = {"type": "http", "headers": [(b"cookie", f"session={cookie}".encode())]}
    assert middleware.load(scope) == signed_in

    rows = [
        ("dumps anonymous payload", lambda: theirs.dumps(anonymous), lambda: ours.dumps(anonymous)),
        ("dumps signed-in payload", lambda: theirs.dumps(signed_in), lambda: ours.dumps(signed_in)),
        (
            f"loads signed-in cookie ({len(cookie)} chars)",
            lambda: theirs.loads(cookie, max_age=MAX_AGE),
            lambda: ours.loads(cookie, MAX_AGE),
        ),
    ]
    print(f"{'µs per call':42} {'itsdangerous':>12} {'ours':>8} {'speed-up':>9}")
    for name, theirs_fn, ours_fn in rows:
        t, o = best_us(theirs_fn, number), best_us(ours_fn, number)
        print(f"{name:42} {t:12.2f} {o:8.2f} {t / o:8.1f}x")
    hit = best_us(lambda: middleware.load(scope), number)
    print(f"{'SessionMiddleware.load, cached cookie':42} {'':12} {hit:8.2f}")
    mint = best_us(lambda: ours.dumps({"csrf": secrets.token_urlsafe(32), "s": None}), number)
    print(f"{'first visit: token_urlsafe(32) + dumps':42} {'':12} {mint:8.2f}")


if __name__ == "__main__":
    main()
