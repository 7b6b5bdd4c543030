"""How a connection ended before (or by) opening a tunnel: one ``Outcome`` per connection.

The protocol core decides the outcomes it can see (the session's ``SessionClosed`` carries
one: a timer, the crypto binding, the HTTP request, an authentication failure); the I/O
layer decides the rest (refused at accept, TLS, PROXY header, passed to the web backend).
The daemon counts them in ``stats`` (``handshakes``) and the status app exports them as
``sstpd_handshakes_total{outcome=...}``: the values are part of that interface.
"""

from __future__ import annotations

import enum

__all__ = ["REFUSALS", "Outcome"]


@enum.unique
class Outcome(enum.StrEnum):
    """A ``str`` (its value): usable as a JSON key and a Prometheus label as is."""

    OPENED = "opened"  # binding verified and IPCP up
    AUTH_FAILED = "auth_failed"  # PAP/MS-CHAPv2 rejected the credentials
    BINDING_FAILED = "binding_failed"  # Call Connected did not verify (hash, MAC, nonce)
    TIMEOUT = "timeout"  # handshake_timeout or an SSTP negotiation timer expired
    HTTP_REJECTED = "http_rejected"  # not an SSTP_DUPLEX_POST to the SSTP URI
    REFUSED = "refused"  # draining, shutting down or max_sessions reached
    ABORTED = "aborted"  # the client went away or broke the protocol before the tunnel
    WEB = "web"  # not SSTP: passed to the configured web backend
    # closed before authentication by the pre-authentication budgets (limits.*):
    TIMEOUT_TLS = "timeout_tls"  # TLS handshake not finished within limits.setup_timeout
    TIMEOUT_HTTP = "timeout_http"  # no complete SSTP request within limits.setup_timeout
    TLS_FAILED = "tls_failed"  # the TLS handshake failed (bad ClientHello, reset, ...)
    PROXY_HEADER = "proxy_header"  # no valid PROXY header (server.proxy_protocol)
    LIMIT_PER_SOURCE = "limit_per_source"  # limits.pending_per_source of that address pending
    LIMIT_TOTAL = "limit_total"  # limits.pending_total connections pending
    LIMIT_FDS = "limit_fds"  # too few file descriptors left (RLIMIT_NOFILE)
    BLOCKED = "blocked"  # the source address is blocked for failed logins
    LIMIT_USER = "limit_user"  # auth.max_sessions_per_user reached, session_limit_action deny


#: Refused at accept, before TLS: logged as one summary line per interval.
REFUSALS = frozenset({Outcome.LIMIT_PER_SOURCE, Outcome.LIMIT_TOTAL, Outcome.LIMIT_FDS})
