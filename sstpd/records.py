"""What the control socket answers to ``health``, ``sessions``, ``stats``, ``cert``,
``reload``, ``kick``, ``drain``/``undrain`` and ``renew``: one definition.

The daemon builds these records and sends ``to_json()`` (``sstpd.control`` frames it);
``sstpctl``, the status page and ``/metrics`` read the answer back with ``from_json()``
and use attributes, never the answer's keys. A record's fields are its JSON keys (the
``stats`` answer is flat: the ``health`` fields and the pre-authentication counters sit
beside the others, as the README documents).

A record is the answer without ``ok`` (the daemon sends ``{"ok": true, **to_json()}``;
a refusal is ``{"ok": false, "error": ...}`` and has no record). With ``server.workers``
the supervisor reads each worker's record and answers with the merged one.

Reading is tolerant in one direction only: keys the record does not know are ignored (a
newer daemon), keys with a default may be missing (an older daemon: ``stats`` without
the pre-authentication counters has ``admission`` None). A missing key without a default,
or a value of the wrong JSON type, raises ``RecordError`` naming the key. That reader
and writer, which every record shares, are ``sstpd.records_base``'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Self

from sstpd.records_base import Json, RecordError, _Record, _value

__all__ = [
    "AcmeRecord",
    "AdmissionRecord",
    "CertRecord",
    "CertificateRecord",
    "DrainRecord",
    "HealthRecord",
    "HistogramRecord",
    "KickRecord",
    "RecordError",
    "ReloadRecord",
    "RenewRecord",
    "SessionRecord",
    "StatsRecord",
    "WorkerCertRecord",
    "sessions_from_json",
    "sessions_to_json",
]


@dataclass(frozen=True, kw_only=True)
class HealthRecord(_Record):
    """The ``health`` answer (also part of ``stats`` and of the drain/undrain answers)."""

    status: str  # "ok" | "draining" | "full" | "pool_full" | "stopping"
    accepting: bool  # new sessions are accepted (status "ok")
    draining: bool = False
    pool_free: int | None = None  # addresses left in the pool (None: an older daemon)
    warnings: tuple[str, ...] = ()  # "address pool nearly full (230/253)", ...
    # the statuses, worst first (the supervisor answers with its workers' worst)
    STATUSES: ClassVar[tuple[str, ...]] = ("stopping", "draining", "full", "pool_full", "ok")


@dataclass(frozen=True, kw_only=True)
class SessionRecord(_Record):
    """One entry of the ``sessions`` answer, in table order."""

    id: int  # unique for the daemon's lifetime
    user: str  # as authenticated (without a DOMAIN\ prefix)
    peer: str  # "host:port" ("[v6]:port") of the client's TCP connection
    peer_host: str
    peer_port: int
    address: str  # the tunnel address assigned
    ipv6_prefix: str = ""  # the /64 routed to the session while IPV6CP is open
    connected_since: float  # Unix time the tunnel opened
    duration: float  # seconds since then
    rx_bytes: int  # IP bytes from the client, both families (without SSTP/PPP framing)
    rx_packets: int
    tx_bytes: int  # IP bytes to the client, both families
    tx_packets: int
    rx6_bytes: int = 0  # the IPv6 part of rx_bytes
    rx6_packets: int = 0
    tx6_bytes: int = 0  # the IPv6 part of tx_bytes
    tx6_packets: int = 0
    dropped: int  # spoofed source (either family), output queue overflow, invalid IPv6/ND,
    #   DHCP that is not the session's own DHCPINFORM
    auth_method: str  # "eap-mschapv2" | "mschapv2" | "pap"
    tls_version: str  # "TLSv1.3", ... ("" without TLS)
    tls_cipher: str
    binding_hash: str  # crypto-binding hash protocol: "SHA256" | "SHA1"
    cert_hash: str = ""  # hex of the certificate hash the binding was checked against
    worker: int = 0  # the worker process that holds it (server.workers; 0: one process)


def sessions_to_json(sessions: list[SessionRecord]) -> Json:
    """The ``sessions`` answer without ``ok``."""
    return {"sessions": [s.to_json() for s in sessions]}


def sessions_from_json(answer: object) -> list[SessionRecord]:
    rows = answer.get("sessions") if isinstance(answer, Mapping) else None
    if not isinstance(rows, list):
        raise RecordError('sessions: no "sessions" list')
    return [SessionRecord.from_json(r) for r in rows]


@dataclass(frozen=True, kw_only=True)
class HistogramRecord(_Record):
    """Cumulative buckets as Prometheus wants them; the last bound is +Inf."""

    buckets: tuple[tuple[float, int], ...]  # (upper bound, count of values <= bound)
    sum: float
    count: int
    NESTED: ClassVar[tuple[str, ...]] = ("buckets",)

    def to_json(self) -> Json:
        # JSON has no infinity: the last bound is the string "+Inf" (as in the exposition)
        buckets = [[b if math.isfinite(b) else "+Inf", n] for b, n in self.buckets]
        return {"buckets": buckets, **self._write()}

    @classmethod
    def from_json(cls, obj: object) -> Self:
        raw = obj.get("buckets") if isinstance(obj, Mapping) else None
        if not isinstance(raw, list):
            raise RecordError('handshake_latency: no "buckets" list')
        buckets = []
        for item in raw:
            if not (isinstance(item, list | tuple) and len(item) == 2):
                raise RecordError(f"handshake_latency: bucket {item!r:.40} is not [le, count]")
            bound = math.inf if item[0] == "+Inf" else item[0]
            le = _value("handshake_latency.le", float, bound)
            n = _value("handshake_latency.count", int, item[1])
            buckets.append((le, n))
        return cls._read(obj, buckets=tuple(buckets))

    def __add__(self, other: HistogramRecord) -> HistogramRecord:
        """Both histograms' observations (the same bounds: the workers run one code)."""
        if [b for b, _ in self.buckets] != [b for b, _ in other.buckets]:
            raise ValueError("histograms with different bounds")
        pairs = zip(self.buckets, other.buckets, strict=True)
        buckets = tuple((b, n + m) for (b, n), (_, m) in pairs)
        total = round(self.sum + other.sum, 6)
        return HistogramRecord(buckets=buckets, sum=total, count=self.count + other.count)


@dataclass(frozen=True, kw_only=True)
class AdmissionRecord(_Record):
    """The pre-authentication budgets and the brute-force throttle (in ``stats`` since
    those limits exist; an older daemon's ``stats`` has none of them)."""

    authenticated: int  # connections past a login: what max_sessions counts
    pending: int  # connections not authenticated yet
    pending_sources: int
    pending_total_limit: int  # limits.pending_total
    pending_per_source_limit: int  # limits.pending_per_source
    auth_delayed: int  # failure answers held back by the throttle
    auth_blocks: int  # blocks started
    auth_blocked: dict[str, int]  # blocked now: {"sources": n, "users": n}
    accept_errors: int  # accept() failures (EMFILE)
    internal_errors: int  # sessions ended by an unexpected exception (a bug)
    open_files_limit: int  # RLIMIT_NOFILE in force


@dataclass(frozen=True, kw_only=True)
class StatsRecord(_Record):
    """The ``stats`` answer: counters since start, closed sessions included."""

    health: HealthRecord  # flat in the JSON
    started_at: float  # Unix time
    uptime: float  # seconds
    sessions: int  # open (tunnel up)
    handshakes_in_progress: int
    max_sessions: int
    handshakes: dict[str, int]  # sstpd.proto.outcome.Outcome value -> finished handshakes
    auth_failures: int
    crypto_binding_failures: int
    rx_bytes: int  # IP (both families) through the tunnels, closed sessions included
    rx_packets: int
    tx_bytes: int
    tx_packets: int
    dropped_spoofed: int
    dropped_overflow: int
    tun_no_route: int
    rx6_bytes: int = 0  # the IPv6 part of rx_bytes, tx_bytes, ...
    rx6_packets: int = 0
    tx6_bytes: int = 0
    tx6_packets: int = 0
    dropped_spoofed6: int = 0  # IPv6 source outside the session's /64 and link-local
    dropped_invalid6: int = 0  # not a whole IPv6 packet
    dropped_nd_invalid: int = 0  # Neighbor Discovery failing RFC 4861's checks
    nd_rate_limited: int = 0  # Router Solicitations beyond one answer per 3 s
    dropped_dhcp: int = 0  # to UDP port 67 but not the session's DHCPINFORM
    dhcp_answered: int = 0  # DHCPINFORMs answered with a DHCPACK
    pool6_size: int = 0  # /64s in tunnel.ipv6_pool (0: IPv4 only)
    pool6_in_use: int = 0
    handshake_latency: HistogramRecord  # TCP accept -> tunnel open, seconds
    pool_size: int
    pool_in_use: int
    reloads: int
    reload_failures: int
    version: str = ""
    admission: AdmissionRecord | None = None  # flat in the JSON; None: an older daemon
    certificate_not_after: float | None = None  # Unix time; None: no certificate read
    acme_renewals: int = 0
    acme_renewal_failures: int = 0
    dropped_not_open: int = 0  # data before the binding is verified or the NCP is up
    tun_offload: bool = False  # [tunnel] offload: the TUN has IFF_VNET_HDR
    rx_gso_writes: int = 0  # TUN writes that carried coalesced TCP segments
    rx_gso_packets: int = 0  # of rx_packets, those that went in such writes
    read_moderations: int = 0  # times a streaming connection's reads were moderated
    # server.workers (the supervisor's merged answer; one process: 1, 1, 0, {})
    workers: int = 1  # worker processes configured
    workers_running: int = 1  # ... that answered
    worker_restarts: int = 0  # workers restarted after they died
    worker_sessions: dict[str, int] = field(default_factory=dict)  # "0" -> open sessions
    worker_pids: dict[str, int] = field(default_factory=dict)  # "0" -> pid (running ones)
    NESTED: ClassVar[tuple[str, ...]] = ("health", "handshake_latency", "admission")

    def to_json(self) -> Json:
        # "version" first, then the health fields, as the daemon has always sent them
        out: Json = {"version": self.version, **self.health.to_json(), **self._write()}
        out["handshake_latency"] = self.handshake_latency.to_json()
        if self.admission is not None:
            out.update(self.admission.to_json())
        return out

    @classmethod
    def from_json(cls, obj: object) -> Self:
        if not isinstance(obj, Mapping):
            raise RecordError("stats: not a JSON object")
        if "handshake_latency" not in obj:
            raise RecordError("StatsRecord: no 'handshake_latency'")
        return cls._read(
            obj,
            health=HealthRecord.from_json(obj),
            handshake_latency=HistogramRecord.from_json(obj["handshake_latency"]),
            admission=AdmissionRecord.from_json(obj) if "pending" in obj else None,
        )

    @property
    def failed_handshakes(self) -> int:
        """Every finished handshake that did not open a tunnel."""
        return sum(n for k, n in self.handshakes.items() if k != "opened")


@dataclass(frozen=True, kw_only=True)
class CertificateRecord(_Record):
    """The served leaf certificate (``sstpd.certs.certificate_summary``)."""

    names: tuple[str, ...]  # SAN DNS names, then addresses
    subject: str  # RFC 4514
    issuer: str
    not_before: float  # Unix time
    not_after: float
    sha256: str  # hex fingerprint of the DER
    self_signed: bool


@dataclass(frozen=True, kw_only=True)
class AcmeRecord(_Record):
    """The ACME manager's state (``sstpd.aio.acme.AcmeManager.status``)."""

    names: tuple[str, ...]  # [acme] names
    directory: str
    challenge: str  # "tls-alpn-01" | "http-01"
    next_renewal: float | None  # Unix time; None: not scheduled yet
    last_attempt: float | None
    last_success: float | None
    last_error: str  # "" after a success
    in_progress: bool
    renewals: int
    renewal_failures: int
    ari_suggestion: float | None = None  # the CA's suggested renewal time (ARI)
    pending_challenges: tuple[str, ...] = ()  # TLS-ALPN-01 answers being served


@dataclass(frozen=True, kw_only=True)
class WorkerCertRecord(_Record):
    """One worker in the supervisor's ``cert`` answer (server.workers)."""

    worker: int
    running: bool  # answered; False: restarting (the other fields are then empty)
    sha256: str = ""  # the certificate it serves ("" none)
    challenge_handshakes: int = 0  # TLS-ALPN-01 validations its router answered


@dataclass(frozen=True, kw_only=True)
class CertRecord(_Record):
    """The ``cert`` answer: the served certificate and the ACME state. One process (or
    a worker, to its supervisor) answers for itself; the supervisor's merged answer has
    ``workers``, what each one serves, and the validations all of them answered."""

    certificate: CertificateRecord | None  # None: no TLS here and no ACME, or unreadable
    path: str  # the certificate file ("" without a certificate)
    acme: AcmeRecord | None  # None: no [acme]
    worker: int = 0  # the worker answering (0: one process, or the supervisor)
    challenge_handshakes: int = 0  # TLS-ALPN-01 validations answered (all workers')
    workers: tuple[WorkerCertRecord, ...] = ()  # server.workers > 1: per worker


@dataclass(frozen=True, kw_only=True)
class ReloadRecord(_Record):
    """The ``reload`` answer when the reload was applied (a rejected one is an error)."""

    changed: tuple[str, ...]  # dotted keys applied, "certificate", "users"
    needs_restart: tuple[str, ...]  # "tunnel.pool: 10.77.0.0/24 -> 10.78.0.0/24", ...
    users: int  # entries in the users file
    cert_sha256: str  # of the certificate now served ("" without TLS)
    workers: int = 1  # worker processes that reloaded (one process: 1)


@dataclass(frozen=True, kw_only=True)
class KickRecord(_Record):
    """The ``kick`` answer: the sessions told to disconnect (none is an error)."""

    kicked: tuple[int, ...]  # session ids, ascending


@dataclass(frozen=True, kw_only=True)
class DrainRecord(_Record):
    """The ``drain`` and ``undrain`` answer: the health after the change (flat in the
    JSON, as the daemon has always sent it) and the open sessions, which continue."""

    health: HealthRecord  # flat in the JSON
    sessions: int | None = None  # open sessions (all workers'), which a drain does not
    #   end; None: a daemon from before this record
    NESTED: ClassVar[tuple[str, ...]] = ("health",)

    def to_json(self) -> Json:
        return {**self.health.to_json(), **self._write()}

    @classmethod
    def from_json(cls, obj: object) -> Self:
        try:
            health = HealthRecord.from_json(obj)
        except RecordError as exc:  # the health part is flat: say whose it is
            raise RecordError(f"{cls.__name__}: {exc}") from None
        return cls._read(obj, health=health)


@dataclass(frozen=True, kw_only=True)
class RenewRecord(_Record):
    """The ``renew`` answer: whether this command started an ACME renewal (not when one
    is already in progress); the result shows later in ``cert``'s ``acme``."""

    started: bool
    message: str  # "renewal started" | "a renewal is in progress"
