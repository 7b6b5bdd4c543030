"""The daemon: TLS (or plain HTTP) listeners, one TUN device, the session registry.

One process, one event loop. Each TCP connection gets a ``ServerProtocol`` with its own
sans-I/O ``ServerSession``. The TUN reader drains up to ``TUN_BATCH`` packets per wake-up,
groups them by destination session and writes each session's share with one
``transport.write`` (one TLS record per batch instead of one per packet).

Operations (``sstpd.control``): the control socket answers ``sessions``, ``stats``,
``health``, ``kick``, ``reload`` (also SIGHUP), ``drain`` and ``undrain``. A reload
validates everything (configuration file, users file, certificate and key) before it
changes anything; new sessions get the new settings, existing ones keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import ssl
import tempfile
import time
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from sstpd import __version__, certs, users
from sstpd.aio.aaa import Aaa
from sstpd.aio.control import ControlServer
from sstpd.aio.control import error as control_error
from sstpd.aio.dae import DaeServer
from sstpd.aio.heap import HeapTrimmer
from sstpd.aio.listener import Listener, Pending
from sstpd.aio.notify import sd_notify
from sstpd.aio.protocol import SstpStreamProtocol
from sstpd.aio.reload import live_config
from sstpd.aio.stats import Stats, classify_close
from sstpd.aio.tlsroute import TlsRouter
from sstpd.aio.tun import TunDevice
from sstpd.aio.webproxy import WebProxy
from sstpd.config import DEFAULT_CIPHERS, Config, load_config
from sstpd.errors import HttpError, SstpdError
from sstpd.files import check_secret_mode
from sstpd.proto import aaa, radius, webfront
from sstpd.proto.dhcp import InformSettings
from sstpd.proto.guard import AuthThrottle, PendingBudget, ThrottleConfig
from sstpd.proto.pool import AddressPool
from sstpd.proto.ppp.auth import Verdict, Verify, VerifyRequest, local_verifier
from sstpd.proto.ppp.link import PppServerConfig
from sstpd.proto.session import (
    Authenticated,
    AuthenticationFailed,
    Counters,
    Event,
    IpReceived,
    Notice,
    ServerSession,
    SessionClosed,
    SessionOpened,
    ip_prefix,
)
from sstpd.proto.sstp.binding import cert_hashes as hashes_of
from sstpd.proto.sstp.connection import Timeouts
from sstpd.proto.sstp.constants import HashProtocol

if TYPE_CHECKING:
    from sstpd.aio.acme import AcmeManager

log = logging.getLogger("sstpd")
_NOTICE_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}

TUN_BATCH = 64
TUN_READ_SIZE = 65536
_REFUSE = local_verifier(lambda name: None)  # the answer to a blocked user name
FD_RESERVE = 64  # file descriptors kept free for the TUN, the control socket, reloads
POOL_LOW = 0.9  # health warns when this share of the pool is in use


def make_ssl_context(config: Config) -> ssl.SSLContext:
    """TLS >= 1.2 server context with the configured certificate, key and chain.

    Cipher choice (TLS 1.2): ECDHE with AES-GCM first (what Windows 10/11 negotiate), then
    the RSA-key-exchange AES suites MikroTik RouterOS uses with pfs=no. TLS 1.3 suites are
    OpenSSL's defaults (Windows 11 uses TLS 1.3)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    configure_tls(ctx, config)
    return ctx


def configure_tls(ctx: ssl.SSLContext, config: Config) -> None:
    """Minimum version, ciphers and certificate: what a reload changes on the live context
    (handshakes after this call use the new values, established connections keep theirs)."""
    sc = config.server
    ctx.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if sc.tls_min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    ctx.set_ciphers(sc.ciphers or DEFAULT_CIPHERS)
    load_certificate(ctx, config)


def load_certificate(ctx: ssl.SSLContext, config: Config) -> None:
    sc = config.server
    check_secret_mode(sc.key)  # the private key: 0600 (or 0640 with our group) only
    if not sc.chain:
        ctx.load_cert_chain(str(sc.certificate), str(sc.key))
        return
    # the chain lives in its own file: OpenSSL wants leaf + chain in one
    with open(sc.certificate, "rb") as f:
        pem = f.read()
    with open(sc.chain, "rb") as f:
        pem += b"\n" + f.read()
    with tempfile.NamedTemporaryFile(prefix="sstpd-chain-") as tmp:
        tmp.write(pem)
        tmp.flush()
        ctx.load_cert_chain(tmp.name, str(sc.key))


def binding_hashes(config: Config) -> dict[HashProtocol, bytes]:
    """The certificate hashes the crypto binding is checked against.

    Configured hashes win (TLS offload: the offloader's certificate); otherwise the hashes
    of the leaf certificate we present."""
    sc = config.server
    out: dict[HashProtocol, bytes] = {}
    if sc.tls:
        out.update(hashes_of(certs.load_certificate_der(str(sc.certificate))))
    if sc.cert_hash_sha1:
        out[HashProtocol.SHA1] = sc.cert_hash_sha1
    if sc.cert_hash_sha256:
        out[HashProtocol.SHA256] = sc.cert_hash_sha256
    return out


def hash_mask(config: Config, hashes: dict[HashProtocol, bytes]) -> int:
    mask = 0
    for name in config.server.hash_protocols:
        proto = HashProtocol.SHA256 if name == "sha256" else HashProtocol.SHA1
        if proto in hashes:
            mask |= proto
    return mask


def ppp_server_config(config: Config) -> PppServerConfig:
    tc = config.tunnel
    return PppServerConfig(
        local_address=tc.address,
        auth_methods=tuple(config.auth.methods),
        dns=tuple(tc.dns),
        nbns=tuple(tc.nbns),
        mru=tc.mtu,
        auth_retries=config.auth.retries,
    )


def dhcp_settings(config: Config) -> InformSettings:
    """What a session answers a DHCPINFORM with (``[tunnel] routes, domain, dns``)."""
    tc = config.tunnel
    return InformSettings(domain=tc.domain, dns=tuple(tc.dns), routes=tuple(tc.routes))


def throttle_config(config: Config) -> ThrottleConfig:
    lc = config.limits
    return ThrottleConfig(
        delay=lc.auth_fail_delay,
        max_delay=lc.auth_fail_max_delay,
        window=lc.auth_fail_window,
        block_after=lc.auth_fail_block_after,
        block_time=lc.auth_fail_block_time,
    )


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def read_users(path: str) -> dict[str, users.User]:
    return users.load_users(path) if os.path.exists(path) else {}


def cert_summary(config: Config) -> dict[str, Any] | None:
    """``certs.certificate_summary`` of the served certificate (None: unreadable, or no TLS
    here and no ACME). Behind a TLS offloader with ACME (http-01) it is the certificate
    obtained for the offloader: its expiry drives the renewals."""
    if not config.server.tls and not config.acme.enabled:
        return None
    try:
        return certs.certificate_summary(config.server.certificate)
    except certs.CertificateError:
        return None


def _acme_manager(server: Server) -> AcmeManager:
    """Imported only with [acme] names: the ``acme`` package is an optional extra."""
    try:
        from sstpd.aio.acme import AcmeManager
    except ImportError as exc:
        raise SstpdError(
            f"[acme] needs the acme and josepy packages ({exc}): "
            "pip install 'sstpd[acme]'"
        ) from None
    return AcmeManager(server)


def _reason(exc: Exception) -> str:
    """A one-line reason for a failed reload, for the log and the ctl caller."""
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


class ServerProtocol(SstpStreamProtocol):
    session: ServerSession

    def __init__(
        self, server: Server, real_peer: tuple[str, int] | None, pending: Pending
    ) -> None:
        super().__init__(server.loop, server.tun.fd)
        self.server = server
        self.real_peer = real_peer  # from a PROXY header: the client behind the balancer
        self.pending = pending  # the pre-authentication budget slot, released at login
        self.web: WebProxy | None = None
        self._head: bytes | None = b""
        self.id = server.next_id()
        self.peer = "?"
        self.peer_host = ""
        self.peer_port = 0
        self.address: IPv4Address | None = None
        self.started = server.loop.time()  # TCP accept: the handshake latency counts from here
        self.opened_at: float | None = None  # loop time the tunnel opened
        self.opened_wall: float | None = None  # the same as Unix time, for `sessions`
        self.tls_version = ""
        self.tls_cipher = ""
        # taken at accept, just before the TLS object is made from the context: OpenSSL
        # fixes the certificate of a connection then, so a reload (an ACME renewal) during
        # the handshake must not change what this session's binding is checked against
        self.cert_hashes: dict[HashProtocol, bytes] = server.cert_hashes
        self.outcome: str | None = None
        self.auth_failed = False
        self.authenticated = False  # counts against max_sessions from now on
        self.refused = False
        self.forgotten = False
        self.accounted = Counters()  # the part of the counters already in Stats.closed
        self.grant: aaa.Grant | None = None  # authorization from a RADIUS Access-Accept
        self.acct_session_id = f"{server.boot_id}-{self.id:08x}"
        self.terminate_cause: int | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._setup: asyncio.TimerHandle | None = None
        self.on_event = self._on_event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's: no subclass
        self.transport = tr
        peer = self.real_peer or transport.get_extra_info("peername")
        if peer:
            self.peer_host, self.peer_port = str(peer[0]), int(peer[1])
            host = f"[{peer[0]}]" if ":" in self.peer_host else self.peer_host
            self.peer = f"{host}:{peer[1]}"
        srv = self.server
        why = srv.refusal()
        if not why and srv.throttle.source_blocked(self.peer_host, srv.loop.time()):
            why = "blocked"
        if why:
            log.warning("[%d] %s refused: %s", self.id, self.peer, why)
            self.refused = True
            srv.release(self.pending)
            srv.stats.outcome("blocked" if why == "blocked" else "refused")
            tr.abort()
            return
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.tls_version = sslobj.version() or ""
            cipher = sslobj.cipher()
            self.tls_cipher = cipher[0] if cipher else ""
        # created now, after the TLS handshake: a reload in between takes effect for its
        # settings, while the certificate hashes are those of the handshake (see __init__)
        self.session = srv.new_session(self.cert_hashes, self)
        srv.connections.add(self)
        log.debug("[%d] connection from %s", self.id, self.peer)
        self._deadline = self.loop.call_later(
            srv.config.server.handshake_timeout, self._handshake_expired
        )
        self._setup = self.loop.call_at(self.pending.deadline, self._setup_expired)

    def _setup_expired(self) -> None:
        """``limits.setup_timeout`` after TCP accept: the SSTP request must be complete."""
        self._setup = None
        s = self.session
        if not s.http_done and not s.closed and self.web is None:
            log.info("[%d] %s no SSTP request in time, closing", self.id, self.peer)
            self._set_outcome("timeout_http")
            if self.transport is not None:
                self.transport.abort()

    def log_name(self) -> str:
        return f"[{self.id}] {self.peer}"

    def internal_error(self, exc: Exception) -> None:
        self.server.stats.internal_errors += 1
        super().internal_error(exc)

    def _set_outcome(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.server.stats.outcome(outcome)

    def _handshake_expired(self) -> None:
        self._deadline = None
        if not self.session.is_open and not self.session.closed:
            log.info("[%d] %s handshake not finished in time, aborting", self.id, self.peer)
            self._set_outcome("timeout")
            if self.transport is not None:
                self.transport.abort()

    def http_phase_data(self, data: bytes, now: float) -> None:
        """With a web backend configured, requests other than the SSTP upgrade go there."""
        backend = self.server.config.server.web_backend
        if self.web is not None:
            self.web.from_client(data)
            return
        if backend is None or self._head is None:
            super().http_phase_data(data, now)
            return
        head = self._head + data
        try:
            kind = webfront.classify(head)
            length = webfront.head_length(head) if kind == webfront.WEB else None
        except HttpError:
            kind, length = webfront.SSTP, None  # let the SSTP parser answer 431
        if kind == webfront.SSTP:
            self._head = None
            super().http_phase_data(head, now)
            return
        if length is None:
            self._head = head
            return
        self._head = None
        self._divert_to_web(backend, head, length)

    def _divert_to_web(self, backend: tuple[str, int], head: bytes, length: int) -> None:
        assert self.transport is not None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.server.release(self.pending)
        self.server.connections.discard(self)
        self._set_outcome("web")
        proto = "https" if self.server.ssl is not None else "http"
        first = webfront.rewrite_head(head[:length], self.peer_host, proto) + head[length:]
        log.debug("[%d] %s web request passed to %s:%d", self.id, self.peer, *backend)
        self.web = WebProxy(self.transport, *backend)
        self.loop.create_task(self.web.open(first))

    def pause_writing(self) -> None:
        if self.web is not None:
            self.web.client_pause_writing()

    def resume_writing(self) -> None:
        if self.web is not None:
            self.web.client_resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.web is not None:
            self.web.client_closed()
            self.transport = None
            self.server.forget(self)
            return
        if self.refused:
            self.transport = None
            return
        super().connection_lost(exc)
        if self._deadline is not None:
            self._deadline.cancel()
        if self._setup is not None:
            self._setup.cancel()
        self.server.forget(self)

    def disconnect(self, reason: str) -> None:
        """Graceful teardown (LCP Terminate, Call Disconnect) initiated by the server."""
        self.session.disconnect(self.loop.time(), reason)
        self._after_input()

    def _on_event(self, ev: Event) -> None:
        srv = self.server
        if isinstance(ev, SessionOpened):
            self.address = ev.peer
            self.opened_at = self.loop.time()
            self.opened_wall = time.time()
            srv.by_ip[ev.peer.packed] = self
            self._set_outcome("opened")
            srv.stats.latency.observe(self.opened_at - self.started)
            hp = ev.hash_protocol.name if ev.hash_protocol is not None else "none"
            srv.aaa.session_opened(self)
            log.info(
                "[%d] %s user %r (%s) connected: address %s, crypto binding verified (%s)",
                self.id,
                self.peer,
                self.session.username,
                self.session.auth_method,
                ev.peer,
                hp,
            )
        elif isinstance(ev, Authenticated):
            log.info(
                "[%d] %s user %r authenticated (%s)", self.id, self.peer, ev.username, ev.method
            )
            srv.authenticated(self, ev.username)
        elif isinstance(ev, AuthenticationFailed):
            srv.stats.auth_failures += 1
            self.auth_failed = True
            log.warning(
                "[%d] %s user %r authentication failed (%s, %s%s)",
                self.id,
                self.peer,
                ev.username,
                ev.method,
                f"E={ev.code}: " if ev.code else "",
                ev.reason,
            )
            delay = srv.auth_failed(self.peer_host, ev.username)
            if delay > 0:
                self.hold_output(delay)
        elif isinstance(ev, IpReceived):
            srv.write_tun(ev.packet)
        elif isinstance(ev, Notice):
            level = _NOTICE_LEVELS.get(ev.level, logging.INFO)
            log.log(level, "[%d] %s %s", self.id, self.peer, ev.message)
        elif isinstance(ev, SessionClosed):
            if self.opened_at is None:
                self._set_outcome(classify_close(ev.reason, self.auth_failed))
            c = self.session.counters
            log.info(
                "[%d] %s closed: %s (rx %d pkts/%d B, tx %d pkts/%d B, spoofed %d)",
                self.id,
                self.peer,
                ev.reason,
                c.rx_packets,
                c.rx_bytes,
                c.tx_packets,
                c.tx_bytes,
                c.dropped_spoofed,
            )
            srv.aaa.session_closed(self, ev.reason)
            srv.forget(self)

    def describe(self, now: float) -> dict[str, Any]:
        """This session as one entry of the ``sessions`` answer (``control.SESSION_FIELDS``)."""
        s = self.session
        c = s.counters
        hp = s.hash_protocol
        return {
            "id": self.id,
            "user": s.username,
            "peer": self.peer,
            "peer_host": self.peer_host,
            "peer_port": self.peer_port,
            "address": str(self.address) if self.address else "",
            "connected_since": round(self.opened_wall or 0.0, 3),
            "duration": round(now - (self.opened_at or now), 3),
            "rx_bytes": c.rx_bytes,
            "rx_packets": c.rx_packets,
            "tx_bytes": c.tx_bytes,
            "tx_packets": c.tx_packets,
            "dropped": c.dropped_spoofed + c.dropped_overflow + c.dropped_dhcp,
            "auth_method": s.auth_method,
            "tls_version": self.tls_version,
            "tls_cipher": self.tls_cipher,
            "binding_hash": hp.name if hp is not None else "",
            "cert_hash": self.cert_hashes[hp].hex() if hp in self.cert_hashes else "",
        }

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None and not self.session.closed


class Server:
    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.loop = asyncio.get_running_loop()
        self.started_at = self.loop.time()
        self.started_wall = time.time()
        tc = config.tunnel
        self.tun = TunDevice(tc.interface)
        self.tun.configure(address=tc.address, mtu=tc.mtu, routes=[tc.pool])
        self.pool = AddressPool(tc.pool, exclude=[tc.address])
        lc = config.limits
        self.budget = PendingBudget(lc.pending_total, lc.pending_per_source)
        self.heap = HeapTrimmer.for_this_process()  # RSS back to baseline after a flood
        self._heap_timer: asyncio.TimerHandle | None = None
        self.throttle = AuthThrottle(throttle_config(config))
        self.nofile = raise_nofile_limit()
        self.authenticated_count = 0
        self.users: dict[str, users.User] = {}
        self.load_users()
        self.boot_id = f"{int(self.started_wall):x}"
        self.aaa = Aaa(config, self.lookup, self.boot_id)
        self.dae: DaeServer | None = None
        self.cert_hashes = binding_hashes(config)
        self.hash_mask = hash_mask(config, self.cert_hashes)
        self.ssl = make_ssl_context(config) if config.server.tls else None
        # ACME (sstpd.aio.acme): the router answers TLS-ALPN-01 on the listener
        self.router = TlsRouter()
        self.cert_summary = cert_summary(config)
        self.acme: AcmeManager | None = _acme_manager(self) if config.acme.enabled else None
        self.ppp_config = ppp_server_config(config)
        self.timeouts = Timeouts(
            http=config.server.handshake_timeout, hello=config.server.hello_interval
        )
        self.connections: set[ServerProtocol] = set()
        self.by_ip: dict[bytes, ServerProtocol] = {}
        self.listeners: list[Listener] = []
        self.stopping = False
        self.draining = False
        self._ids = 0
        self.stats = Stats()
        self.control = ControlServer(
            config.server.control_socket, self.handle_control, config.server.control_group
        )
        self._stopped = asyncio.Event()

    # ------------------------------------------------------------ sessions
    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def load_users(self) -> None:
        self.users = read_users(str(self.config.auth.users_file))
        self.pool.set_reserved(u.address for u in self.users.values() if u.address)

    def lookup(self, name: str) -> bytes | None:
        u = self.users.get(name)
        return u.nt_hash if u is not None else None

    # ------------------------------------------------------------ admission (listener.Gate)
    @property
    def setup_timeout(self) -> float:
        return self.config.limits.setup_timeout

    def admit(self, source: str) -> str | None:
        if self.budget.count + self.authenticated_count + FD_RESERVE >= self.nofile:
            return "limit_fds"
        return self.budget.refusal(source)

    def hold(self, source: str, deadline: float) -> Pending:
        self.budget.add(source)
        self.heap.update(self.budget.count, self.loop.time())
        return Pending(source, deadline)

    def release(self, pending: Pending) -> None:
        if not pending.released:
            pending.released = True
            self.budget.remove(pending.source)
            self._trim_heap()

    def _trim_heap(self) -> None:
        """Return freed heap to the OS once a flood of pending connections has ended."""
        again = self.heap.update(self.budget.count, self.loop.time())
        if again is not None and self._heap_timer is None and not self.stopping:
            self._heap_timer = self.loop.call_at(again, self._heap_timer_due)

    def _heap_timer_due(self) -> None:
        self._heap_timer = None
        self._trim_heap()

    def count_outcome(self, outcome: str, source: str) -> None:
        self.stats.outcome(outcome)
        self.stats.note_refusal(outcome, source, self.loop.time())

    # ------------------------------------------------------------ authentication results
    def auth_failed(self, source: str, user: str) -> float:
        """Count a failed login; return how long to hold the failure answer."""
        res = self.throttle.failure(source, user, self.loop.time())
        for what in res.blocked:
            log.warning(
                "blocked %s for %g s after %d failed logins in %g s",
                what,
                self.throttle.config.block_time,
                self.throttle.config.block_after,
                self.throttle.config.window,
            )
        if res.delay > 0:
            self.stats.auth_delayed += 1
        return res.delay

    def authenticated(self, proto: ServerProtocol, user: str) -> None:
        """A login succeeded: the connection leaves the pre-authentication budget and
        counts against max_sessions and the per-user limit from now on."""
        self.release(proto.pending)
        self.throttle.success(proto.peer_host, user)
        if proto.authenticated:
            return  # re-authentication (LCP renegotiation): counted already
        proto.authenticated = True
        self.authenticated_count += 1
        ac = self.config.auth
        why = ""
        if self.authenticated_count > self.config.server.max_sessions:
            why, outcome = "max_sessions reached", "refused"
        elif ac.max_sessions_per_user:
            mine = sorted(
                (
                    p
                    for p in self.connections
                    if p is not proto
                    and p.authenticated
                    and not p.session.closed
                    and p.session.username == user
                ),
                key=lambda p: p.id,
            )
            excess = len(mine) + 1 - ac.max_sessions_per_user
            if excess > 0 and ac.session_limit_action == "deny":
                why, outcome = f"user {user!r} already has {len(mine)} sessions", "limit_user"
            elif excess > 0:
                for old in mine[:excess]:
                    log.info(
                        "[%d] %s user %r replaced by session %d",
                        old.id,
                        old.peer,
                        user,
                        proto.id,
                    )
                    self.loop.call_soon(old.disconnect, "replaced by a newer session")
        if why:
            log.warning("[%d] %s refused: %s", proto.id, proto.peer, why)
            proto._set_outcome(outcome)
            self.loop.call_soon(proto.disconnect, why)

    def _unless_blocked(self, verify: Verify) -> Verify:
        """A user name blocked for failed logins is answered like a wrong password,
        without asking the users file or RADIUS."""

        def checked(req: VerifyRequest) -> Verdict | None:
            if self.throttle.user_blocked(req.user, self.loop.time()):
                return _REFUSE(req)
            return verify(req)

        return checked

    def assign_address(self, name: str, wanted: IPv4Address | None = None) -> IPv4Address | None:
        """``wanted``: Framed-IP-Address from RADIUS (else the users file, else the pool)."""
        u = self.users.get(name)
        if wanted is None and u is not None:
            wanted = u.address
        return self.pool.allocate(wanted)

    def new_session(
        self,
        hashes: dict[HashProtocol, bytes] | None = None,
        proto: ServerProtocol | None = None,
    ) -> ServerSession:
        if hashes is None or hashes is self.cert_hashes:
            hashes, mask = self.cert_hashes, self.hash_mask
        else:
            mask = hash_mask(self.config, hashes)

        def assign(name: str) -> IPv4Address | None:
            grant = proto.grant if proto is not None else None
            framed = grant.framed_ip if grant is not None else None
            if framed is not None and framed not in self.config.tunnel.pool:
                log.warning("Framed-IP-Address %s for %r is outside tunnel.pool", framed, name)
                return None
            return self.assign_address(name, framed)

        verify = self.aaa.verifier(proto) if proto is not None else None
        if verify is not None:
            verify = self._unless_blocked(verify)
        return ServerSession(
            ppp_config=self.ppp_config,
            cert_hashes=hashes,
            hash_protocols=mask,
            verify=verify,
            lookup=self.lookup if proto is None else None,
            assign_address=assign,
            random=os.urandom,
            now=self.loop.time(),
            timeouts=self.timeouts,
            dhcp_settings=dhcp_settings(self.config),
        )

    def refusal(self) -> str:
        """Why a new connection is turned away right after the TLS handshake ("" = it isn't)."""
        if self.stopping:
            return "shutting down"
        if self.draining:
            return "draining"
        if self.authenticated_count >= self.config.server.max_sessions:
            return "max_sessions reached"  # connections still in handshake do not count
        return ""

    def forget(self, proto: ServerProtocol) -> None:
        # called at SessionClosed and again at connection_lost: the second call only adds
        # the traffic counted in between
        c = proto.session.counters
        self.stats.add_closed(c, proto.accounted)
        proto.accounted = dataclasses.replace(c)
        if proto.forgotten:
            return
        proto.forgotten = True
        self.connections.discard(proto)
        self.release(proto.pending)
        if proto.authenticated:
            self.authenticated_count -= 1
        addr = proto.session.peer_address
        if addr is not None and self.by_ip.get(addr.packed) is proto:
            del self.by_ip[addr.packed]
        held = proto.session.allocated_address  # from authentication on, IPCP up or not
        if held is not None:
            self.pool.release(held)
        if self.stopping and not self.connections:
            self._stopped.set()

    # ------------------------------------------------------------ TUN
    def write_tun(self, packet: bytes) -> None:
        try:
            os.write(self.tun.fd, packet)
        except OSError:
            self.stats.tun_no_route += 1

    def _tun_readable(self) -> None:
        fd = self.tun.fd
        by_ip = self.by_ip
        pending: dict[ServerProtocol, list[bytes]] = {}
        for _ in range(TUN_BATCH):
            try:
                pkt = os.read(fd, TUN_READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                break
            proto = by_ip.get(pkt[16:20]) if pkt[0] >> 4 == 4 else None
            if proto is None:
                self.stats.tun_no_route += 1
                continue
            lst = pending.get(proto)
            if lst is None:
                lst = pending[proto] = []
            lst.append(ip_prefix(len(pkt)))
            lst.append(pkt)
        limit = self.config.limits.session_buffer
        for proto, parts in pending.items():
            tr = proto.transport
            c = proto.session.counters
            n = len(parts) // 2
            if tr is None or tr.get_write_buffer_size() > limit:
                c.dropped_overflow += n
                continue
            data = b"".join(parts)
            tr.write(data)
            c.tx_packets += n
            c.tx_bytes += len(data) - 8 * n

    # ------------------------------------------------------------ control
    def handle_control(self, req: dict[str, Any]) -> dict[str, Any]:
        """One control request (already checked to be a known command) -> its answer."""
        cmd = req["cmd"]
        if cmd == "health":
            return {"ok": True, **self.health()}
        if cmd == "sessions":
            now = self.loop.time()
            rows = [p.describe(now) for p in self.connections if p.is_open]
            return {"ok": True, "sessions": sorted(rows, key=lambda r: int(r["id"]))}
        if cmd == "stats":
            return {"ok": True, **self.snapshot()}
        if cmd == "kick":
            return self.kick(req.get("id"), req.get("user"))
        if cmd == "reload":
            return self.reload()
        if cmd in ("drain", "undrain"):
            return self.set_draining(cmd == "drain")
        if cmd == "cert":
            return {"ok": True, **self.cert_status()}
        if cmd == "renew":
            if self.acme is None:
                return control_error("ACME is not configured (no [acme] names)")
            return self.acme.renew_now()
        return control_error(f"unknown command {cmd!r}")

    def cert_status(self) -> dict[str, Any]:
        """The ``cert`` answer: the served certificate and the ACME manager's state."""
        return {
            "certificate": self.cert_summary,
            "path": self.config.server.certificate if self.cert_summary is not None else "",
            "acme": self.acme.status() if self.acme is not None else None,
        }

    def health(self) -> dict[str, Any]:
        why = self.refusal()
        status = {"": "ok", "draining": "draining", "shutting down": "stopping"}.get(why, "full")
        pool = self.pool
        free = pool.size - pool.in_use
        warnings = []
        if free <= 0:
            warnings.append(f"address pool full ({pool.in_use}/{pool.size})")
            if status == "ok":
                status = "pool_full"
        elif pool.in_use >= POOL_LOW * pool.size:
            warnings.append(f"address pool nearly full ({pool.in_use}/{pool.size})")
        return {
            "status": status,
            "accepting": status == "ok",
            "draining": self.draining,
            "pool_free": free,
            "warnings": warnings,
        }

    def snapshot(self) -> dict[str, Any]:
        """The ``stats`` answer: counters since start, closed sessions included."""
        st = self.stats
        live = [p.session.counters for p in self.connections]

        def total(name: str) -> int:
            return int(getattr(st.closed, name)) + sum(int(getattr(c, name)) for c in live)

        sessions = sum(1 for p in self.connections if p.is_open)
        return {
            "version": __version__,
            **self.health(),
            "started_at": round(self.started_wall, 3),
            "uptime": round(self.loop.time() - self.started_at, 3),
            "sessions": sessions,
            "handshakes_in_progress": len(self.connections) - sessions,
            "max_sessions": self.config.server.max_sessions,
            "handshakes": dict(st.handshakes),
            "auth_failures": st.auth_failures,
            "crypto_binding_failures": st.crypto_binding_failures,
            "rx_bytes": total("rx_bytes"),
            "rx_packets": total("rx_packets"),
            "tx_bytes": total("tx_bytes"),
            "tx_packets": total("tx_packets"),
            "dropped_spoofed": total("dropped_spoofed"),
            "dropped_overflow": total("dropped_overflow"),
            "dropped_dhcp": total("dropped_dhcp"),
            "dhcp_answered": total("dhcp_answered"),
            "tun_no_route": st.tun_no_route,
            "internal_errors": st.internal_errors,
            "authenticated": self.authenticated_count,  # what max_sessions counts
            "pending": self.budget.count,
            "pending_sources": len(self.budget.by_source),
            "pending_total_limit": self.budget.total,
            "pending_per_source_limit": self.budget.per_source,
            "auth_delayed": st.auth_delayed,
            "auth_blocks": self.throttle.blocks,
            "auth_blocked": self.throttle.blocked_count(self.loop.time()),
            "accept_errors": sum(getattr(x, "accept_errors", 0) for x in self.listeners),
            "open_files_limit": self.nofile,
            "handshake_latency": st.latency.snapshot(),
            "pool_size": self.pool.size,
            "pool_in_use": self.pool.in_use,
            "reloads": st.reloads,
            "reload_failures": st.reload_failures,
            "certificate_not_after": (self.cert_summary or {}).get("not_after"),
            "acme_renewals": self.acme.renewals if self.acme else 0,
            "acme_renewal_failures": self.acme.renewal_failures if self.acme else 0,
        }

    def kick(self, sid: object, user: object) -> dict[str, Any]:
        """Graceful Call Disconnect of session ``sid`` or of every session of ``user``."""
        if (sid is None) == (user is None):
            return control_error('kick needs either "id" or "user"')
        if sid is not None and (not isinstance(sid, int) or isinstance(sid, bool)):
            return control_error('"id" must be an integer')
        if user is not None and (not isinstance(user, str) or not user):
            return control_error('"user" must be a non-empty string')
        targets = [
            p
            for p in self.connections
            if p.is_open and (p.id == sid if sid is not None else p.session.username == user)
        ]
        if not targets:
            what = f"session {sid}" if sid is not None else f"session of user {user!r}"
            return control_error(f"no open {what}")
        for p in sorted(targets, key=lambda p: p.id):
            log.info("[%d] %s user %r kicked", p.id, p.peer, p.session.username)
            p.terminate_cause = radius.TERMINATE_ADMIN_RESET
            p.disconnect("disconnected by the administrator")
        return {"ok": True, "kicked": sorted(p.id for p in targets)}

    def dae_disconnect(self, criteria: aaa.DisconnectCriteria) -> int:
        """End the open sessions a Disconnect-Request names; how many there were."""
        targets = [
            p
            for p in self.connections
            if p.is_open
            and criteria.matches(p.session.username, p.acct_session_id, p.session.peer_address)
        ]
        for p in targets:
            log.info("[%d] %s user %r disconnected by RADIUS", p.id, p.peer, p.session.username)
            p.terminate_cause = radius.TERMINATE_ADMIN_RESET
            p.disconnect("disconnected by RADIUS (Disconnect-Request)")
        return len(targets)

    def set_draining(self, on: bool) -> dict[str, Any]:
        if self.stopping:
            return control_error("shutting down")
        if on != self.draining:
            self.draining = on
            sessions = sum(1 for p in self.connections if p.is_open)
            if on:
                log.info("draining: refusing new sessions, %d sessions continue", sessions)
                sd_notify(f"STATUS=draining, {sessions} sessions")
            else:
                log.info("accepting new sessions again")
                sd_notify("STATUS=accepting sessions")
        return {"ok": True, **self.health()}

    def reload(self) -> dict[str, Any]:
        """SIGHUP and ``reload``: re-read the configuration file, the users file, the
        certificate and key. Everything is checked first; on any problem nothing changes
        and the reason is returned. New sessions get the new settings; established
        sessions keep theirs. Settings that need a restart are reported, not applied."""
        old = self.config
        try:
            new = load_config(self.config_path) if self.config_path else old
            config, changed, needs_restart = live_config(old, new)
            user_map = read_users(config.auth.users_file)
            if config.server.tls:
                certs.verify_key_pair(config.server.certificate, config.server.key)
                make_ssl_context(config)  # chain and ciphers load: checked on a spare context
            hashes = binding_hashes(config)
            if self.ssl is not None:
                configure_tls(self.ssl, config)
        except (SstpdError, OSError, ssl.SSLError, ValueError) as exc:
            self.stats.reload_failures += 1
            reason = _reason(exc)
            log.error("reload rejected, keeping the running configuration: %s", reason)
            if self.ssl is not None:
                with contextlib.suppress(SstpdError, OSError, ssl.SSLError, ValueError):
                    configure_tls(self.ssl, old)  # in case the live context took a part
            return control_error(reason)
        if hashes != self.cert_hashes:
            changed.append("certificate")
        if user_map != self.users:
            changed.append("users")
        self.config = config
        self.users = user_map
        self.aaa.reconfigure(config)
        if self.dae is not None:
            self.dae.config = config.radius  # clients and secrets; the address needs a restart
        self.pool.set_reserved(u.address for u in user_map.values() if u.address)
        self.cert_hashes = hashes
        self.cert_summary = cert_summary(config)
        self.hash_mask = hash_mask(config, hashes)
        self.ppp_config = ppp_server_config(config)
        self.timeouts = Timeouts(
            http=config.server.handshake_timeout, hello=config.server.hello_interval
        )
        self.budget.total = config.limits.pending_total
        self.budget.per_source = config.limits.pending_per_source
        self.throttle.config = throttle_config(config)
        logging.getLogger().setLevel(config.log.level.upper())
        self.stats.reloads += 1
        sha256 = hashes.get(HashProtocol.SHA256, b"").hex()
        log.info(
            "reloaded %s: %d users, certificate sha256 %s, changed: %s",
            self.config_path or "the built-in configuration",
            len(user_map),
            sha256 or "-",
            ", ".join(changed) or "nothing",
        )
        for item in needs_restart:
            log.warning("reload: %s needs a restart to take effect", item)
        return {
            "ok": True,
            "changed": changed,
            "needs_restart": needs_restart,
            "users": len(user_map),
            "cert_sha256": sha256,
        }

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        sc = self.config.server
        # TLS-ALPN-01 needs the ClientHello before TLS starts: the listener's own accept loop
        tls_alpn = self.acme is not None and self.config.acme.challenge == "tls-alpn-01"
        for addr in sc.listen:
            self.listeners.append(
                Listener(
                    str(addr),
                    sc.port,
                    lambda src, pending: ServerProtocol(self, src, pending),
                    self.ssl,
                    self,
                    proxy_protocol=sc.proxy_protocol,
                    router=self.router if tls_alpn else None,
                )
            )
        await self.control.start()
        await self.aaa.open()
        if self.config.radius.dae_listen is not None:
            self.dae = DaeServer(self.config.radius, self.dae_disconnect)
            await self.dae.open()
        self.loop.add_reader(self.tun.fd, self._tun_readable)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.request_stop)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        where = ", ".join(f"{a}:{sc.port}" for a in sc.listen)
        hashes = " ".join(f"{p.name}={h.hex()}" for p, h in sorted(self.cert_hashes.items()))
        log.info(
            "listening on %s (%s%s), tunnel %s %s pool %s, %d users; binding hashes %s",
            where,
            "TLS" if self.ssl else "plain HTTP",
            ", PROXY protocol" if sc.proxy_protocol else "",
            self.tun.name,
            self.config.tunnel.address,
            self.config.tunnel.pool,
            len(self.users),
            hashes,
        )
        if self.acme is not None:
            await self.acme.start()
        sd_notify(f"READY=1\nSTATUS=listening on {where}")

    def request_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        sd_notify("STOPPING=1")
        if self._heap_timer is not None:
            self._heap_timer.cancel()
        if self.acme is not None:
            self.acme.close()
        log.info("stopping: disconnecting %d sessions", len(self.connections))
        for srv in self.listeners:
            srv.close()
        for proto in list(self.connections):
            proto.terminate_cause = radius.TERMINATE_NAS_REBOOT
            proto.disconnect("server shutting down")
        if not self.connections:
            self._stopped.set()

    async def run(self) -> None:
        await self.start()
        await self._stopped.wait()
        # give Call Disconnect a moment to be acknowledged, then drop whatever is left
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drain(), 2.0)
        for proto in list(self.connections):
            if proto.transport is not None:
                proto.transport.abort()
        await self.aaa.drain(5.0)  # the accounting Stops of the sessions just ended
        self.aaa.nas_status(aaa.ACCT_OFF)
        await self.aaa.drain(5.0)
        self.aaa.close()
        if self.dae is not None:
            self.dae.close()
        self.control.close()
        self.loop.remove_reader(self.tun.fd)
        self.tun.close()
        log.info("stopped")

    async def _drain(self) -> None:
        while self.connections:
            await asyncio.sleep(0.05)


def run(config: Config, config_path: str | None = None, **_: Any) -> int:
    logging.basicConfig(
        level=getattr(logging, config.log.level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    try:
        import uvloop  # type: ignore[import-not-found]

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def main() -> None:
        server = Server(config, config_path)
        await server.run()

    runner(main())
    return 0
