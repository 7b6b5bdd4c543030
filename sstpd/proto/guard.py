"""Budgets for unauthenticated connections and brute-force throttling, sans-I/O.

:class:`PendingBudget` counts connections that have not authenticated yet (TCP accepted,
TLS, HTTP, PPP up to a successful authentication), in total and per source address, and
says whether one more may start.

:class:`AuthThrottle` counts failed logins per source address and per user name in a
sliding window. Each failure earns a delay before its answer that doubles with every
failure in the window (``delay``, ``2*delay``, ... up to ``max_delay``); after
``block_after`` failures the source (or the user name) is blocked for ``block_time``
seconds: connections from a blocked source are closed right after TLS, and a blocked user
name is answered as if the password were wrong, without looking at the password. A
success clears the source's and the user's counters.

Time is always an argument (seconds, any monotonic clock).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sstpd.proto.outcome import Outcome

__all__ = ["AuthThrottle", "Failure", "PendingBudget", "ThrottleConfig"]


class PendingBudget:
    """Handshakes in progress, in total and per source address."""

    def __init__(self, total: int, per_source: int) -> None:
        self.total = total
        self.per_source = per_source
        self.count = 0
        self.by_source: dict[str, int] = {}

    def refusal(self, source: str) -> Outcome | None:
        """None if a new connection from ``source`` may start, else why it may not."""
        if self.by_source.get(source, 0) >= self.per_source:
            return Outcome.LIMIT_PER_SOURCE
        if self.count >= self.total:
            return Outcome.LIMIT_TOTAL
        return None

    def add(self, source: str) -> None:
        self.count += 1
        self.by_source[source] = self.by_source.get(source, 0) + 1

    def remove(self, source: str) -> None:
        n = self.by_source.get(source, 0)
        if n <= 0:
            return
        self.count -= 1
        if n == 1:
            del self.by_source[source]
        else:
            self.by_source[source] = n - 1


@dataclass(frozen=True)
class ThrottleConfig:
    delay: float = 1.0  # seconds before the first failure answer (0: no delay)
    max_delay: float = 8.0
    window: float = 600.0  # failures older than this are forgotten
    block_after: int = 10  # failures in the window that start a block (0: never block)
    block_time: float = 900.0


@dataclass(frozen=True)
class Failure:
    """What the I/O layer does with one failed login."""

    delay: float  # hold the failure answer this long
    blocked: tuple[str, ...]  # keys ("source 1.2.3.4", "user 'x'") blocked by this failure


@dataclass
class _Counter:
    times: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0


class AuthThrottle:
    MAX_KEYS = 100_000  # an attacker cycling names must not grow this without bound

    def __init__(self, config: ThrottleConfig | None = None) -> None:
        self.config = config or ThrottleConfig()
        self._sources: dict[str, _Counter] = {}
        self._users: dict[str, _Counter] = {}
        self.blocks = 0  # blocks started since the start (a metric)

    # ------------------------------------------------------------ queries
    def source_blocked(self, source: str, now: float) -> bool:
        c = self._sources.get(source)
        return c is not None and c.blocked_until > now

    def user_blocked(self, user: str, now: float) -> bool:
        c = self._users.get(user.lower())
        return c is not None and c.blocked_until > now

    def blocked_sources(self, now: float) -> dict[str, float]:
        """Each blocked source and the seconds its block has left."""
        return {k: c.blocked_until - now for k, c in self._sources.items() if c.blocked_until > now}

    def blocked_count(self, now: float) -> dict[str, int]:
        return {
            "sources": sum(1 for c in self._sources.values() if c.blocked_until > now),
            "users": sum(1 for c in self._users.values() if c.blocked_until > now),
        }

    # ------------------------------------------------------------ updates
    def failure(self, source: str, user: str, now: float) -> Failure:
        cfg = self.config
        blocked: list[str] = []
        worst = 0
        for table, key, label in (
            (self._sources, source, f"source {source}"),
            (self._users, user.lower(), f"user {user!r}"),
        ):
            if not key:
                continue
            c = table.get(key)
            if c is None:
                if len(table) >= self.MAX_KEYS:
                    self._expire(table, now)
                c = table.setdefault(key, _Counter())
            c.times.append(now)
            while c.times and c.times[0] <= now - cfg.window:
                c.times.popleft()
            n = len(c.times)
            worst = max(worst, n)
            if cfg.block_after and n >= cfg.block_after and c.blocked_until <= now:
                c.blocked_until = now + cfg.block_time
                c.times.clear()
                self.blocks += 1
                blocked.append(label)
        return Failure(self._delay(worst), tuple(blocked))

    def next_delay(self, source: str, user: str, now: float) -> float:
        """The delay a failure of ``user`` from ``source`` at ``now`` would earn (the
        ``server.workers`` supervisor answers it before the password is checked)."""
        worst = 0
        for table, key in ((self._sources, source), (self._users, user.lower())):
            c = table.get(key) if key else None
            n = sum(1 for t in c.times if t > now - self.config.window) if c is not None else 0
            worst = max(worst, n + 1 if key else 0)
        return self._delay(worst)

    def _delay(self, worst: int) -> float:
        cfg = self.config
        if cfg.delay > 0 and worst > 0:
            return float(min(cfg.delay * 2 ** min(worst - 1, 30), cfg.max_delay))
        return 0.0

    def success(self, source: str, user: str) -> None:
        self._sources.pop(source, None)
        self._users.pop(user.lower(), None)

    def expire(self, now: float) -> None:
        """Forget counters with nothing in the window and no block (call now and then)."""
        self._expire(self._sources, now)
        self._expire(self._users, now)

    def _expire(self, table: dict[str, _Counter], now: float) -> None:
        cutoff = now - self.config.window
        for key in [
            k
            for k, c in table.items()
            if c.blocked_until <= now and (not c.times or c.times[-1] <= cutoff)
        ]:
            del table[key]
        if len(table) >= self.MAX_KEYS:  # still full: drop the oldest unblocked entries
            for key in [k for k, c in table.items() if c.blocked_until <= now][
                : len(table) // 2
            ]:
                del table[key]
