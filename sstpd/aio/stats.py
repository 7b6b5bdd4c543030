"""Daemon-wide counters for ``stats`` and the status app's /metrics.

Per-session traffic lives in each session's ``Counters``; when a session ends, its numbers
are added to ``Stats.closed`` so the totals never go backwards. Every handshake (one TCP
connection from the TLS handshake on) ends with exactly one outcome, see ``OUTCOMES``.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field, fields
from typing import Any

from sstpd.proto.session import Counters

log = logging.getLogger("sstpd")

# How a connection ended before (or by) opening a tunnel.
OUTCOMES = (
    "opened",  # binding verified and IPCP up
    "auth_failed",  # PAP/MS-CHAPv2 rejected the credentials
    "binding_failed",  # Call Connected did not verify (certificate hash, MAC, nonce)
    "timeout",  # handshake_timeout or an SSTP negotiation timer expired
    "http_rejected",  # not an SSTP_DUPLEX_POST to the SSTP URI
    "refused",  # draining, shutting down or max_sessions reached
    "aborted",  # the client went away or broke the protocol before the tunnel opened
    "web",  # not SSTP: passed to the configured web backend
    # closed before authentication by the pre-authentication budgets (limits.*):
    "timeout_tls",  # TLS handshake not finished within limits.setup_timeout
    "timeout_http",  # no complete SSTP request within limits.setup_timeout
    "tls_failed",  # the TLS handshake failed (bad ClientHello, reset, ...)
    "proxy_header",  # no valid PROXY header (server.proxy_protocol)
    "limit_per_source",  # limits.pending_per_source connections of that address pending
    "limit_total",  # limits.pending_total connections pending
    "limit_fds",  # too few file descriptors left (RLIMIT_NOFILE)
    "blocked",  # the source address is blocked for failed logins
    "limit_user",  # auth.max_sessions_per_user reached with session_limit_action = deny
)

REFUSALS = ("limit_per_source", "limit_total", "limit_fds")
REFUSAL_LOG_INTERVAL = 10.0  # one summary line per interval, not one per connection

# Upper bounds (seconds) of the handshake latency histogram: TCP accept -> tunnel open.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def classify_close(reason: str, auth_failed: bool) -> str:
    """The outcome of a connection that closed before its tunnel opened."""
    text = reason.lower()
    if auth_failed:
        return "auth_failed"
    if "timed out" in text:  # "HTTP phase timed out", "negotiation timed out in ..."
        return "timeout"
    if "crypto binding" in text:
        return "binding_failed"
    if text.startswith("http"):  # "HTTP 404 ..." from the request parser
        return "http_rejected"
    return "aborted"


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

    def snapshot(self) -> dict[str, Any]:
        """Cumulative buckets as Prometheus wants them: [[le, count], ...], +Inf as "+Inf"."""
        out: list[list[Any]] = []
        running = 0
        for bound, n in zip((*self.bounds, "+Inf"), self.counts, strict=True):
            running += n
            out.append([bound, running])
        return {"buckets": out, "sum": round(self.total, 6), "count": running}


@dataclass
class Stats:
    handshakes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    auth_failures: int = 0  # every rejected attempt (a connection may retry)
    crypto_binding_failures: int = 0
    closed: Counters = field(default_factory=Counters)  # traffic of sessions that ended
    latency: Histogram = field(default_factory=Histogram)
    tun_no_route: int = 0
    internal_errors: int = 0  # sessions ended by an unexpected exception (a bug)
    auth_delayed: int = 0  # failure answers held back by the brute-force throttle
    _refused_since: dict[str, int] = field(default_factory=dict)
    _refusal_logged: float = -REFUSAL_LOG_INTERVAL
    reloads: int = 0
    reload_failures: int = 0

    def outcome(self, name: str) -> None:
        self.handshakes[name] += 1
        if name == "binding_failed":
            self.crypto_binding_failures += 1

    def note_refusal(self, outcome: str, source: str, now: float) -> None:
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
