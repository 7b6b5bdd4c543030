"""One client connection of the daemon: ``ServerProtocol``.

It wraps the stream protocol of ``aio.protocol`` (framing and the fast path) with what the
server does per connection: refuse at accept (draining, blocked source), the handshake
and setup deadlines, the web-backend diversion, the reaction to the session's events
(login results, address up, close) and the ``sessions`` row of ``describe``. The
registry it reports to is ``aio.server.Server``; IP packets from the slow path go to the
TUN through ``aio.datapath.TunPump``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from ipaddress import IPv4Address, IPv6Network
from typing import TYPE_CHECKING

from sstpd.aio.datapath import TunPump
from sstpd.aio.listener import Pending
from sstpd.aio.protocol import SstpStreamProtocol
from sstpd.aio.webproxy import WebProxy
from sstpd.errors import HttpError
from sstpd.proto import aaa, webfront
from sstpd.proto.outcome import Outcome
from sstpd.proto.session import (
    AuthFailed,
    AuthSucceeded,
    Counters,
    Event,
    IpReceived,
    Notice,
    ServerSession,
    Session4Opened,
    Session6Closed,
    Session6Opened,
    SessionClosed,
    SessionOpened,
)
from sstpd.proto.sstp.constants import HashProtocol
from sstpd.records import SessionRecord

if TYPE_CHECKING:
    from sstpd.aio.server import Server

log = logging.getLogger("sstpd")
_NOTICE_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class ServerProtocol(SstpStreamProtocol):
    session: ServerSession

    def __init__(
        self,
        server: Server,
        tun: TunPump,
        real_peer: tuple[str, int] | None,
        pending: Pending,
    ) -> None:
        super().__init__(server.loop, tun.fd, tun.vnet_hdr)
        self.moderator = server.moderator
        self.server = server
        self.tun = tun
        self.real_peer = real_peer  # from a PROXY header: the client behind the balancer
        self.pending = pending  # the pre-authentication budget slot, released at login
        self.web: WebProxy | None = None
        self._head: bytes | None = b""
        self.id = server.next_id()
        self.peer = "?"
        self.peer_host = ""
        self.peer_port = 0
        self.address: IPv4Address | None = None
        self.prefix6: IPv6Network | None = None  # the /64 routed here while IPv6 is open
        self.interface_id6: bytes | None = None  # the peer's IPV6CP identifier (accounting)
        self.iid: bytes | None = None  # the peer's IPV6CP identifier, while routed
        self.started = server.loop.time()  # TCP accept: the handshake latency counts from here
        self.opened_at: float | None = None  # loop time the tunnel opened
        self.opened_wall: float | None = None  # the same as Unix time, for `sessions`
        self.tls_version = ""
        self.tls_cipher = ""
        # taken at accept, just before the TLS object is made from the context: OpenSSL
        # fixes the certificate of a connection then, so a reload (an ACME renewal) during
        # the handshake must not change what this session's binding is checked against
        self.cert_hashes: dict[HashProtocol, bytes] = server.cert_hashes
        self.outcome: Outcome | None = None
        self.authenticated = False  # counts against max_sessions from now on
        self.refused = False
        self.forgotten = False
        self.accounted = Counters()  # the part of the counters already in Stats.closed
        self.grant: aaa.Grant | None = None  # authorization from a RADIUS Access-Accept
        self.acct_session_id = f"{server.boot_id}-{self.id:08x}"
        self.terminate_cause: int | None = None
        self.fail_delay = 0.0  # server.workers: what the supervisor said a failure earns
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
        if not why and srv.source_blocked(self.peer_host):
            why = "blocked"
        if why:
            log.warning("[%d] %s refused: %s", self.id, self.peer, why)
            self.refused = True
            srv.release(self.pending)
            srv.stats.outcome(Outcome.BLOCKED if why == "blocked" else Outcome.REFUSED)
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
            srv.settings.handshake_timeout, self._handshake_expired
        )
        self._setup = self.loop.call_at(self.pending.deadline, self._setup_expired)

    def _setup_expired(self) -> None:
        """``limits.setup_timeout`` after TCP accept: the SSTP request must be complete."""
        self._setup = None
        s = self.session
        if not s.http_done and not s.closed and self.web is None:
            log.info("[%d] %s no SSTP request in time, closing", self.id, self.peer)
            self._set_outcome(Outcome.TIMEOUT_HTTP)
            if self.transport is not None:
                self.transport.abort()

    def log_name(self) -> str:
        return f"[{self.id}] {self.peer}"

    def internal_error(self, exc: Exception) -> None:
        self.server.stats.internal_errors += 1
        super().internal_error(exc)

    def _set_outcome(self, outcome: Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.server.stats.outcome(outcome)

    def _handshake_expired(self) -> None:
        self._deadline = None
        if not self.session.is_open and not self.session.closed:
            log.info("[%d] %s handshake not finished in time, aborting", self.id, self.peer)
            self._set_outcome(Outcome.TIMEOUT)
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
        self._set_outcome(Outcome.WEB)
        proto = "https" if self.server.config.server.tls else "http"
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
            srv.opened(self, ev.peer)
            self._set_outcome(Outcome.OPENED)
            srv.stats.latency.observe(self.opened_at - self.started)
            hp = ev.hash_protocol.name if ev.hash_protocol is not None else "none"
            srv.aaa.session_opened(self)
            log.info(
                "[%d] %s user %r (%s) connected: address %s, crypto binding verified (%s)",
                self.id,
                self.peer,
                self.session.username,
                self.session.auth_method,
                ev.peer if ev.peer is not None else f"none (IPv6 only, {self.prefix6})",
                hp,
            )
        elif isinstance(ev, AuthSucceeded):
            log.info(
                "[%d] %s user %r authenticated (%s)", self.id, self.peer, ev.username, ev.method
            )
            srv.authenticated(self, ev.username)
        elif isinstance(ev, AuthFailed):
            srv.stats.auth_failures += 1
            log.warning(
                "[%d] %s user %r authentication failed (%s, %s%s)",
                self.id,
                self.peer,
                ev.username,
                ev.method,
                f"E={ev.code}: " if ev.code else "",
                ev.reason,
            )
            delay = srv.auth_failed(self.peer_host, ev.username, self.fail_delay)
            if delay > 0:
                self.hold_output(delay)
        elif isinstance(ev, IpReceived):
            self.tun.write(ev.packet)
        elif isinstance(ev, Session6Opened):
            self.prefix6 = ev.prefix
            srv.opened6(self, ev.prefix)
            self.interface_id6 = self.session.peer_iid
            log.info(
                "[%d] %s user %r IPv6: prefix %s, link-local %s",
                self.id,
                self.peer,
                self.session.username,
                ev.prefix,
                ev.peer_link_local or "?",
            )
        elif isinstance(ev, Session4Opened):
            self.address = ev.peer
            srv.opened4(self, ev.peer)
            srv.aaa.address_added(self)
            log.info(
                "[%d] %s user %r IPv4 opened after IPv6 only: address %s",
                self.id,
                self.peer,
                self.session.username,
                ev.peer,
            )
        elif isinstance(ev, Session6Closed):
            srv.closed6(self, ev.prefix)
            log.info("[%d] %s IPv6 closed (IPV6CP down)", self.id, self.peer)
        elif isinstance(ev, Notice):
            level = _NOTICE_LEVELS.get(ev.level, logging.INFO)
            log.log(level, "[%d] %s %s", self.id, self.peer, ev.message)
        elif isinstance(ev, SessionClosed):
            if self.opened_at is None:
                self._set_outcome(ev.outcome)
            c = self.session.counters
            log.info(
                "[%d] %s closed: %s (rx %d pkts/%d B, tx %d pkts/%d B, spoofed %d%s)",
                self.id,
                self.peer,
                ev.reason,
                c.rx_packets,
                c.rx_bytes,
                c.tx_packets,
                c.tx_bytes,
                c.dropped_spoofed,
                f"; IPv6 rx {c.rx6_packets}, tx {c.tx6_packets}, spoofed {c.dropped_spoofed6}"
                if self.prefix6 is not None
                else "",
            )
            srv.aaa.session_closed(self, ev.reason)
            srv.forget(self)

    def describe(self, now: float) -> SessionRecord:
        """This session as one entry of the ``sessions`` answer."""
        s = self.session
        c = s.counters
        hp = s.hash_protocol
        return SessionRecord(
            id=self.id,
            user=s.username,
            peer=self.peer,
            peer_host=self.peer_host,
            peer_port=self.peer_port,
            address=str(self.address) if self.address else "",
            ipv6_prefix=str(s.prefix6) if s.prefix6 is not None else "",
            connected_since=round(self.opened_wall or 0.0, 3),
            duration=round(now - (self.opened_at or now), 3),
            rx_bytes=c.rx_bytes,
            rx_packets=c.rx_packets,
            tx_bytes=c.tx_bytes,
            tx_packets=c.tx_packets,
            rx6_bytes=c.rx6_bytes,
            rx6_packets=c.rx6_packets,
            tx6_bytes=c.tx6_bytes,
            tx6_packets=c.tx6_packets,
            dropped=c.dropped_spoofed
            + c.dropped_overflow
            + c.dropped_spoofed6
            + c.dropped_invalid6
            + c.dropped_nd_invalid
            + c.dropped_dhcp,
            auth_method=s.auth_method,
            tls_version=self.tls_version,
            tls_cipher=self.tls_cipher,
            binding_hash=(hp.name or "") if hp is not None else "",
            cert_hash=self.cert_hashes[hp].hex() if hp in self.cert_hashes else "",
            worker=self.server.role.index if self.server.role is not None else 0,
        )

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None and not self.session.closed
