"""Attempt limits for log-in and sign-up, in process memory.

Log-in failures are counted three ways:
- per (account, IP), with backoff: a few free failures, then a wait that doubles with each
  further one, up to 15 minutes. This is what stops one address guessing one password.
- per IP, a sliding window over all accounts (a spray of guesses over many accounts).
- per account, a sliding window over all IPs, far above what one IP can reach under its own
  backoff (ACCOUNT_LIMIT is about 8 times that): a distributed guess is still bounded, and no
  single attacker can lock the owner out from another address.
Sign-up attempts are counted per IP and per process overall.

With several processes or instances each counts its own attempts, which still bounds guessing
to (processes × limit) per window.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable

MAX_KEYS = 100_000  # bound memory under a spray of keys: past it the oldest key goes

# Log-in: per (account, IP) 5 free failures, then 30 s, 60 s, ... up to 15 min between tries;
# forgotten after an hour without a failure. One IP thus reaches at most 12 failures on one
# account per hour (5 + 5 while the wait grows to 8 min + 2 at 15 min).
PAIR_FREE, PAIR_BASE, PAIR_CAP, PAIR_FORGET = 5, 30.0, 900.0, 3600.0
IP_LIMIT, IP_WINDOW = 20, 300.0
ACCOUNT_LIMIT, ACCOUNT_WINDOW = 100, 3600.0
# Sign-up attempts (each costs a password hash, and on the embedded default answers whether an
# address has an account): per IP, and per process for all IPs together, in this window. The
# limits themselves are settings (SIGNUP_LIMIT_PER_IP, SIGNUP_LIMIT_PER_HOUR).
SIGNUP_WINDOW = 3600.0


class FailureLimiter:
    """A sliding window of events per key: blocked once `limit` events fall in `window`."""

    def __init__(self, *, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.failures: dict[Hashable, deque[float]] = {}

    def _recent(self, key: Hashable) -> deque[float]:
        now = self.clock()
        q = self.failures.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self.failures[key]
        return q

    def blocked_for(self, key: Hashable) -> float:
        """Seconds until `key` may try again; 0 when it may try now."""
        q = self._recent(key)
        if len(q) < self.limit:
            return 0.0
        return q[0] + self.window - self.clock()

    def fail(self, key: Hashable) -> None:
        self._recent(key)
        self.failures.setdefault(key, deque()).append(self.clock())
        if len(self.failures) > MAX_KEYS:
            oldest = next(iter(self.failures))
            del self.failures[oldest]

    def succeed(self, key: Hashable) -> None:
        self.failures.pop(key, None)


class Backoff:
    """Failures per key: `free` of them cost nothing, then each further one makes the key wait
    base, 2 × base, 4 × base, ... (at most `cap`) after it; `forget` seconds without a failure,
    or a success, start the key over."""

    def __init__(
        self, *, free: int, base: float, cap: float, forget: float, clock: Callable[[], float]
    ) -> None:
        self.free, self.base, self.cap, self.forget = free, base, cap, forget
        self.clock = clock
        self.state: dict[Hashable, tuple[int, float]] = {}  # key -> (failures, last failure)

    def delay(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        # min() first: 2 ** a large exponent would overflow a float.
        return min(self.cap, self.base * 2 ** min(failures - self.free, 64))

    def blocked_for(self, key: Hashable) -> float:
        found = self.state.get(key)
        if found is None:
            return 0.0
        failures, last = found
        now = self.clock()
        if now - last >= self.forget:
            del self.state[key]
            return 0.0
        return max(0.0, last + self.delay(failures) - now)

    def fail(self, key: Hashable) -> None:
        self.blocked_for(key)  # forgets a stale count first
        failures, _ = self.state.pop(key, (0, 0.0))
        self.state[key] = (failures + 1, self.clock())  # re-inserted: the dict stays oldest-first
        if len(self.state) > MAX_KEYS:
            del self.state[next(iter(self.state))]

    def succeed(self, key: Hashable) -> None:
        self.state.pop(key, None)


class LoginLimits:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.per_pair = Backoff(free=PAIR_FREE, base=PAIR_BASE, cap=PAIR_CAP, forget=PAIR_FORGET, clock=clock)
        self.per_ip = FailureLimiter(limit=IP_LIMIT, window=IP_WINDOW, clock=clock)
        self.per_account = FailureLimiter(limit=ACCOUNT_LIMIT, window=ACCOUNT_WINDOW, clock=clock)

    def wait_seconds(self, ip: str, email: str) -> float:
        account = email.lower()
        return max(
            self.per_pair.blocked_for((account, ip)),
            self.per_ip.blocked_for(ip),
            self.per_account.blocked_for(account),
        )

    def failed(self, ip: str, email: str) -> None:
        account = email.lower()
        self.per_pair.fail((account, ip))
        self.per_ip.fail(ip)
        self.per_account.fail(account)

    def succeeded(self, ip: str, email: str) -> None:
        # Only this address's count starts over: the owner logging in says nothing about
        # failures from elsewhere.
        self.per_pair.succeed((email.lower(), ip))


class SignupLimits:
    """Sign-up attempts per IP and per instance (all IPs together), in a sliding window."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        per_ip: int,
        total: int,
        window: float = SIGNUP_WINDOW,
    ) -> None:
        self.per_ip = FailureLimiter(limit=per_ip, window=window, clock=clock)
        self.total = FailureLimiter(limit=total, window=window, clock=clock)

    def wait_seconds(self, ip: str) -> float:
        return max(self.per_ip.blocked_for(ip), self.total.blocked_for(None))

    def attempted(self, ip: str) -> None:
        self.per_ip.fail(ip)
        self.total.fail(None)


def minutes(seconds: float) -> int:
    """A wait as whole minutes for a message, at least 1."""
    return max(1, math.ceil(seconds / 60))
