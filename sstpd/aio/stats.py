"""Daemon-wide counters for ``stats`` and the status app's /metrics.

Per-session traffic lives in each session's ``Counters``; when a session ends, its numbers
are added to ``Stats.closed`` so the totals never go backwards. Every handshake (one TCP
connection from the TLS handshake on) ends with exactly one ``Outcome``.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass, field, fields

from sstpd.proto.outcome import REFUSALS, Outcome
from sstpd.proto.session import Counters
from sstpd.records import HistogramRecord

log = logging.getLogger("sstpd")

#: Every outcome, in the order ``stats`` lists them (see ``sstpd.proto.outcome``).
OUTCOMES = tuple(Outcome)
REFUSAL_LOG_INTERVAL = 10.0  # one summary line per interval, not one per connection

# Upper bounds (seconds) of the handshake latency histogram: TCP accept -> tunnel open.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)  # per bucket, +Inf last; not cumulative
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def record(self) -> HistogramRecord:
        """Cumulative buckets, +Inf last, as the ``stats`` answer and Prometheus want them."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return HistogramRecord(buckets=tuple(out), sum=round(self.total, 6), count=running)


@dataclass
class Stats:
    handshakes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    auth_failures: int = 0  # every rejected attempt (a connection may retry)
    crypto_binding_failures: int = 0
    closed: Counters = field(default_factory=Counters)  # traffic of sessions that ended
    latency: Histogram = field(default_factory=Histogram)
    tun_no_route: int = 0
    internal_errors: int = 0  # sessions ended by an unexpected exception (a bug)
    auth_delayed: int = 0  # failure answers held back by the brute-force throttle
    _refused_since: dict[Outcome, int] = field(default_factory=dict)
    _refusal_logged: float = -REFUSAL_LOG_INTERVAL
    reloads: int = 0
    reload_failures: int = 0

    def outcome(self, outcome: Outcome) -> None:
        self.handshakes[outcome] += 1
        if outcome is Outcome.BINDING_FAILED:
            self.crypto_binding_failures += 1

    def note_refusal(self, outcome: Outcome, source: str, now: float) -> None:
        """Connections refused at accept are logged as one line per interval."""
        if outcome not in REFUSALS:
            return
        self._refused_since[outcome] = self._refused_since.get(outcome, 0) + 1
        if now - self._refusal_logged < REFUSAL_LOG_INTERVAL:
            return
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self._refused_since.items()))
        log.warning("refusing connections: %s (last from %s)", counts, source)
        self._refused_since.clear()
        self._refusal_logged = now

    def add_closed(self, c: Counters, already: Counters) -> None:
        """Add what ``c`` counted beyond ``already`` (the part added before)."""
        for f in fields(Counters):
            name = f.name
            setattr(
                self.closed,
                name,
                getattr(self.closed, name) + getattr(c, name) - getattr(already, name),
            )
