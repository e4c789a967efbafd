"""Login attempt limits per IP and per account: a sliding window of failures.

In-process memory: with several instances each counts its own attempts, which still bounds
guessing to (instances × limit) per window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class FailureLimiter:
    def __init__(self, *, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        now = self.clock()
        q = self.failures.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self.failures[key]
        return q

    def blocked_for(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it may try now."""
        q = self._recent(key)
        if len(q) < self.limit:
            return 0.0
        return q[0] + self.window - self.clock()

    def fail(self, key: str) -> None:
        self._recent(key)
        self.failures.setdefault(key, deque()).append(self.clock())
        if len(self.failures) > 100_000:  # bound memory under a spray of keys
            oldest = next(iter(self.failures))
            del self.failures[oldest]

    def succeed(self, key: str) -> None:
        self.failures.pop(key, None)


class LoginLimits:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.per_ip = FailureLimiter(limit=20, window=300, clock=clock)
        self.per_account = FailureLimiter(limit=5, window=900, clock=clock)

    def wait_seconds(self, ip: str, email: str) -> float:
        return max(self.per_ip.blocked_for(ip), self.per_account.blocked_for(email))

    def failed(self, ip: str, email: str) -> None:
        self.per_ip.fail(ip)
        self.per_account.fail(email)

    def succeeded(self, email: str) -> None:
        self.per_account.succeed(email)
