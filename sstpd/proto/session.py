"""One VPN session: the SSTP connection and the PPP link glued together, still sans-I/O.

Theory of operation
-------------------
The SSTP connection (``sstp.connection``) owns the byte stream: the HTTP upgrade, SSTP
framing, the SSTP state machine and its timers. PPP frames it receives are handed to the
PPP link (``ppp.link``), whose outgoing frames go back into SSTP data packets. The glue
enforces the two cross-layer rules of MS-SSTP:

* the HLAK comes from PPP authentication (MS-CHAPv2 master keys, or zeros for PAP) and is
  handed to SSTP, which verifies the client's Call Connected with it (§3.3.5.2.3, the
  Call Connected may arrive before or after authentication finished);
* before the crypto binding is verified only PPP *control* frames pass (protocol numbers
  >= 0x4000: LCP, authentication, NCPs); data frames are dropped (§3.3.1.1.1, note <17>).

IPv4 traffic flows once both the binding is verified and IPCP is up (``is_open``). Packets
from the client must carry its assigned source address; others are dropped and counted.
Each PPP frame from the peer is decoded once, here: an IP frame (any ACFC/PFC encoding,
``proto.datapath``) is the data path's and never reaches the PPP link; every other frame
goes to the link already decoded. The I/O layer has a fast path for full-form IPv4 data
packets that uses the same ``proto.datapath`` constants and the ``counters`` directly;
everything else goes through ``receive_packet``/``receive_data``.

Events for the I/O layer: the link's ``AuthSucceeded``, ``AuthFailed`` and ``Notice`` as
the link made them, and this module's ``SessionOpened``, ``IpReceived``, ``SessionClosed``,
``Session6Opened`` and ``Session6Closed``.

IPv6 (server): with ``assign_prefix`` the link runs IPV6CP too (``ppp.link``). Once it
is open and the binding verified, an ``ipv6.path.Ipv6Path`` sends the Router
Advertisement with the session's /64 and judges every IPv6 packet from the peer: inside
the /64 -> ``IpReceived`` (the I/O layer writes it to the same TUN; its fast path asks
``forwardable6``), link-local and Neighbor Discovery -> answered here, never forwarded,
anything else dropped and counted (``dropped_spoofed6``, ``dropped_invalid6``,
``dropped_nd_invalid``). ``Session6Opened``/``Session6Closed`` tell the I/O layer when to
route the /64 here. ``rx_*``/``tx_*`` count both families, ``rx6_*``/``tx6_*`` IPv6 alone.

DHCP over the tunnel (issue 12): the server answers a client's DHCPINFORM itself with the
split-tunnel routes, domain and DNS (``dhcp.answer_inform``); anything else sent to UDP
port 67 is dropped and counted in ``dropped_dhcp``, never handed on. The I/O layer's fast
path sends UDP packets to port 67 (68 on the client) here instead of to the TUN. The
client sends its DHCPINFORM with ``ClientSession.send_inform`` and gets ``RoutesReceived``.
With ``PppClientConfig.ipv6`` the client also runs IPV6CP, solicits a Router
Advertisement and reports the address it forms as ``Ipv6Configured``.

Both sides of a tunnel use this module: ``ServerSession`` and ``ClientSession``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from sstpd.errors import ParseError
from sstpd.proto import dhcp
from sstpd.proto.datapath import FAMILY_OF, PPP_HEADER, Counters, Family
from sstpd.proto.ipv6.autoconf import Ipv6Config, RouterSolicitor
from sstpd.proto.ipv6.path import Ipv6Path
from sstpd.proto.outcome import Outcome
from sstpd.proto.ppp import link as ppp
from sstpd.proto.ppp.auth import Verdict, Verify, VerifyRequest
from sstpd.proto.ppp.frame import decode_frame
from sstpd.proto.ppp.link import AuthFailed, AuthSucceeded, Notice
from sstpd.proto.sstp import connection as sstp
from sstpd.proto.sstp.constants import HashProtocol

__all__ = [
    "AuthFailed",
    "AuthSucceeded",
    "ClientSession",
    "Counters",
    "Event",
    "IpReceived",
    "Ipv6Settings",
    "Notice",
    "ServerSession",
    "Session",
    "Session6Closed",
    "Session6Opened",
    "SessionClosed",
    "SessionOpened",
    "SessionState",
]

ZERO_HLAK = bytes(32)
_DHCP_DROPS_LOGGED = 3  # per session; the counter keeps counting
_PPP_IPV4 = PPP_HEADER[Family.IPV4]
_PPP_IPV6 = PPP_HEADER[Family.IPV6]


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """Binding verified and IPCP up: IPv4 may flow. The I/O layer routes ``peer`` here."""

    local: IPv4Address
    peer: IPv4Address
    dns: tuple[IPv4Address, ...]
    hash_protocol: HashProtocol | None


@dataclass(frozen=True, slots=True)
class IpReceived:
    """An IPv4 or IPv6 packet that arrived through the slow path (already source-checked)."""

    packet: bytes


@dataclass(frozen=True, slots=True)
class Session6Opened:
    """Binding verified and IPV6CP up: the I/O layer routes ``prefix`` here."""

    prefix: IPv6Network
    peer_link_local: IPv6Address | None


@dataclass(frozen=True, slots=True)
class Session6Closed:
    """IPV6CP went down on an open session: stop routing ``prefix`` here."""

    prefix: IPv6Network


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """Terminal. ``outcome`` is what the close means for a session that never opened (the
    I/O layer counts it): AUTH_FAILED once any login failed, else the winning reason's."""

    reason: str
    outcome: Outcome = Outcome.ABORTED


@dataclass(frozen=True, slots=True)
class RoutesReceived:
    """Client: the DHCPACK answering ``ClientSession.send_inform``."""

    info: dhcp.AckInfo


@dataclass(frozen=True, slots=True)
class Ipv6Configured:
    """Client: a Router Advertisement gave (or changed) the IPv6 address to configure."""

    config: Ipv6Config


Event = (
    AuthSucceeded
    | AuthFailed
    | SessionOpened
    | IpReceived
    | SessionClosed
    | Notice
    | RoutesReceived
    | Ipv6Configured
    | Session6Opened
    | Session6Closed
)


# ---------------------------------------------------------------- common glue


@dataclass
class SessionState:
    """What a session knows beyond its two layers (``Session._st``)."""

    events: list[Event] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    call_connected: bool = False
    network: ppp.NetworkUp | None = None
    hash_protocol: HashProtocol | None = None
    closed: bool = False
    close_reason: str = ""
    close_outcome: Outcome = Outcome.ABORTED  # goes with close_reason
    auth_failed: bool = False  # a login failed (the peer may have retried)
    username: str = ""
    auth_method: str = ""
    _opened_sent: bool = False


class Session:
    """What server and client sessions share: the pump between the SSTP connection and
    the PPP link, the data path's slow half, the driver API. Subclasses set ``_st``,
    ``_conn`` and ``_ppp``."""

    _st: SessionState
    _conn: sstp.SstpServerConnection | sstp.SstpClientConnection
    _ppp: ppp.PppServer | ppp.PppClient

    # -- properties the I/O layer reads on the hot path
    @property
    def is_open(self) -> bool:
        st = self._st
        return st.call_connected and st.network is not None and not st.closed

    @property
    def closed(self) -> bool:
        return self._st.closed

    @property
    def counters(self) -> Counters:
        return self._st.counters

    @property
    def http_done(self) -> bool:
        return self._conn.http_done

    @property
    def connection(self) -> sstp.SstpServerConnection | sstp.SstpClientConnection:
        return self._conn

    @property
    def link(self) -> ppp.PppServer | ppp.PppClient:
        return self._ppp

    # -- driver API
    def receive_data(self, data: bytes, now: float) -> None:
        self._conn.receive_data(data, now)
        self._pump(now)

    def receive_packet(self, is_control: bool, payload: bytes, now: float) -> None:
        self._conn.receive_packet(is_control, payload, now)
        self._pump(now)

    def touch(self, now: float) -> None:
        self._conn.touch(now)

    def send_ip(self, packet: bytes) -> None:
        """Queue one IP packet (slow path; the I/O layer batches: ``aio.datapath``).
        IPv6 (version nibble 6) goes as PPP protocol 0x0057 and needs IPV6CP open."""
        ipv6 = len(packet) > 0 and packet[0] >> 4 == 6
        if not self.is_open or (ipv6 and not self._ppp.is_network6_up):
            self._st.counters.dropped_not_open += 1
            return
        self._conn.send_ppp((_PPP_IPV6 if ipv6 else _PPP_IPV4) + packet)
        self._st.counters.tx_packets += 1
        self._st.counters.tx_bytes += len(packet)

    def data_to_send(self) -> bytes:
        return self._conn.data_to_send()

    def pop_events(self) -> list[Event]:
        ev, self._st.events = self._st.events, []
        return ev

    def get_timer(self) -> float | None:
        if self._st.closed:
            return None
        t1 = self._conn.get_timer()
        t2 = self._ppp.get_timer()
        if t1 is None:
            return t2
        if t2 is None:
            return t1
        return min(t1, t2)

    def handle_timer(self, now: float) -> None:
        if self._st.closed:
            return
        t = self._conn.get_timer()
        if t is not None and t <= now:
            self._conn.handle_timer(now)
        t = self._ppp.get_timer()
        if t is not None and t <= now:
            self._ppp.handle_timer(now)
        self._pump(now)

    def disconnect(self, now: float, reason: str = "administrative disconnect") -> None:
        """Graceful teardown: LCP Terminate, then SSTP Call Disconnect."""
        if self._st.closed:
            return
        self._st.close_reason = reason
        self._conn.disconnect(now)
        self._pump(now)

    def abort_connection(self, reason: str, now: float = 0.0) -> None:
        """The transport is gone: no more bytes either way (MS-SSTP §3.1.7.2).

        The SSTP connection knows why it was tearing down (a Call Disconnect or an abort
        for a failed binding); that reason wins over ``reason``."""
        if self._st.closed:
            return
        if self._ppp.phase is ppp.Phase.TERMINATE and not self._st.close_reason:
            # PPP was terminated (LCP Terminate) and the peer closed the transport right after
            self._st.close_reason = "PPP terminated"
        self._conn.connection_lost()
        self._pump(now)
        self._ppp.lower_down(now)
        self._finish(reason)

    def check_ip_source(self, packet: bytes | memoryview) -> bool:
        """True if ``packet`` (IPv4) carries the peer's assigned source address."""
        raise NotImplementedError

    # -- internals
    def _finish(self, reason: str, outcome: Outcome = Outcome.ABORTED) -> None:
        st = self._st
        if st.closed:
            return
        st.closed = True
        if not st.close_reason:  # a reason set before (disconnect, PPP) wins, with its outcome
            st.close_reason, st.close_outcome = reason, outcome
        final = Outcome.AUTH_FAILED if st.auth_failed else st.close_outcome
        st.events.append(SessionClosed(st.close_reason, final))

    def _frame_from_peer(self, frame: bytes, now: float) -> None:
        st = self._st
        try:
            protocol, off = decode_frame(frame)
        except ParseError:
            self._ppp.receive_malformed(now)  # counted where malformed control frames are
            return
        if FAMILY_OF.get(protocol) is Family.IPV4:
            pkt = frame[off:]
            if not self.is_open:
                st.counters.dropped_not_open += 1
            elif not self.check_ip_source(pkt):
                st.counters.dropped_spoofed += 1
            elif pkt[9] == 17 and self._intercept_udp(bytes(pkt), now):
                pass  # DHCP, answered or dropped here, never handed on
            else:
                st.counters.rx_packets += 1
                st.counters.rx_bytes += len(pkt)
                st.events.append(IpReceived(bytes(pkt)))
            return
        if FAMILY_OF.get(protocol) is Family.IPV6 and self._ip6_from_peer(bytes(frame[off:]), now):
            return
        if protocol < 0x4000 and not st.call_connected:
            # MS-SSTP §3.3.1.1.1: only control frames before the crypto binding
            st.counters.dropped_not_open += 1
            return
        self._ppp.receive_payload(protocol, frame[off:], now)

    def _pump(self, now: float) -> None:
        """Move frames and events between the layers until nothing changes."""
        st = self._st
        conn, link = self._conn, self._ppp
        for _ in range(64):
            progressed = False
            for cev in conn.pop_events():
                progressed = True
                self._on_sstp_event(cev, now)
            for frame in link.frames_to_send():
                progressed = True
                if not conn.closed:
                    conn.send_ppp(frame)
            for pev in link.pop_events():
                progressed = True
                self._on_ppp_event(pev, now)
            if not progressed:
                break
        if self.is_open and not st._opened_sent and st.network is not None:
            st._opened_sent = True
            st.events.append(
                SessionOpened(st.network.local, st.network.peer, st.network.dns, st.hash_protocol)
            )

    def _on_sstp_event(self, ev: object, now: float) -> None:
        st = self._st
        if isinstance(ev, sstp.PppFrameReceived):
            self._frame_from_peer(ev.frame, now)
        elif isinstance(ev, sstp.CallConnected):
            st.call_connected = True
            st.hash_protocol = ev.hash_protocol
        elif isinstance(ev, sstp.ConnectionClosed):
            self._ppp.lower_down(now)
            self._finish(ev.reason, ev.outcome)
        else:
            self._on_other_sstp_event(ev, now)

    def _on_ppp_event(self, ev: object, now: float) -> None:
        st = self._st
        if isinstance(ev, AuthSucceeded):
            st.username, st.auth_method = ev.username, ev.method
            st.events.append(ev)
            self._on_authenticated(ev, now)
        elif isinstance(ev, AuthFailed):
            st.username, st.auth_method = ev.username, ev.method
            st.auth_failed = True
            st.events.append(ev)
        elif isinstance(ev, ppp.NetworkUp):
            st.network = ev
        elif isinstance(ev, Notice):
            st.events.append(ev)
        elif isinstance(ev, ppp.LinkDown):
            st.close_reason = st.close_reason or ev.reason
            if not self._conn.closed:
                self._conn.disconnect(now)

    def _on_other_sstp_event(self, ev: object, now: float) -> None:
        pass

    def _ip6_from_peer(self, packet: bytes, now: float) -> bool:
        """An IPv6 packet from the peer: True if the session's IPv6 data path took it;
        False hands the frame to the link (dropped there, or Protocol-Rejected when the
        link has no IPv6)."""
        return False

    def _intercept_udp(self, packet: bytes, now: float) -> bool:
        """A source-checked IPv4 UDP packet from the peer: True if consumed here."""
        return False

    def _on_authenticated(self, ev: AuthSucceeded, now: float) -> None:
        pass


# ---------------------------------------------------------------- server


@dataclass(frozen=True)
class Ipv6Settings:
    """What the server says on an IPv6 link: ``address`` is its own IPv6 tunnel address
    (a Neighbor Solicitation for it is answered), ``dns`` go into the RA's RDNSS option,
    ``mtu`` into its MTU option."""

    address: IPv6Address | None = None
    dns: tuple[IPv6Address, ...] = ()
    mtu: int | None = None


class ServerSession(Session):
    """Server side of one connection, from the first byte of the HTTP request on."""

    def __init__(
        self,
        *,
        ppp_config: ppp.PppServerConfig,
        cert_hashes: dict[HashProtocol, bytes],
        hash_protocols: int,
        assign_address: Callable[[str], IPv4Address | None],
        random: Callable[[int], bytes],
        now: float,
        lookup: Callable[[str], bytes | None] | None = None,
        verify: Verify | None = None,
        timeouts: sstp.Timeouts | None = None,
        assign_prefix: Callable[[str], IPv6Network | None] | None = None,
        iid_in_use: Callable[[bytes], bool] | None = None,
        ipv6: Ipv6Settings | None = None,
        dhcp_settings: dhcp.InformSettings | None = None,
    ) -> None:
        """``assign_prefix`` (user -> /64, None when exhausted) turns IPv6 on; without it
        IPV6CP is Protocol-Rejected as by an IPv4-only server. ``dhcp_settings``: what a
        DHCPINFORM is answered with (routes, domain, DNS; DNS defaults to the IPCP
        servers)."""
        self._st = SessionState()
        self._dhcp = dhcp_settings or dhcp.InformSettings()
        self._ipv6 = ipv6 or Ipv6Settings()
        self._path6: Ipv6Path | None = None
        self._opened6: IPv6Network | None = None
        self._conn = sstp.SstpServerConnection(
            cert_hashes=cert_hashes,
            hash_protocols=hash_protocols,
            random=random,
            now=now,
            timeouts=timeouts or sstp.Timeouts(),
        )
        self._ppp = ppp.PppServer(
            ppp_config,
            lookup=lookup,
            verify=verify,
            assign_address=assign_address,
            assign_prefix=assign_prefix,
            iid_in_use=iid_in_use,
            random=random,
            now=now,
        )
        self._peer_src = b""
        self.correlation_id: str | None = None

    @property
    def peer_address(self) -> IPv4Address | None:
        n = self._st.network
        return n.peer if n is not None else None

    @property
    def allocated_address(self) -> IPv4Address | None:
        """The pool address this session holds: from authentication on, before IPCP opens.

        The I/O layer releases it when the session ends (not ``peer_address``, which is
        only known once IPCP is up)."""
        assert isinstance(self._ppp, ppp.PppServer)
        return self._ppp.peer_address

    @property
    def username(self) -> str:
        return self._st.username

    @property
    def auth_method(self) -> str:
        return self._st.auth_method

    @property
    def hash_protocol(self) -> HashProtocol | None:
        return self._st.hash_protocol

    @property
    def allocated_prefix(self) -> IPv6Network | None:
        """The /64 this session holds, from the Network phase on (released by the owner)."""
        assert isinstance(self._ppp, ppp.PppServer)
        return self._ppp.prefix

    @property
    def prefix6(self) -> IPv6Network | None:
        """The /64 routed to this session while IPv6 is open (``Session6Opened``)."""
        return None if self._st.closed else self._opened6

    @property
    def peer_iid(self) -> bytes | None:
        """The peer's IPV6CP interface identifier while IPv6 is open."""
        h = self._ppp.ipv6cp_handler
        return h.peer_iid if h is not None and self.prefix6 is not None else None

    def forwardable6(self, packet: bytes | memoryview) -> bool:
        """True if the IPv6 ``packet`` from the peer goes to the TUN as it is (the fast
        path's test; False sends it through ``receive_packet``, which counts drops)."""
        path = self._path6
        return path is not None and self.prefix6 is not None and path.forwardable(packet)

    def get_timer(self) -> float | None:
        t = super().get_timer()
        path = self._path6
        t6 = path.get_timer() if path is not None and self.prefix6 is not None else None
        if t6 is None:
            return t
        return t6 if t is None else min(t, t6)

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        path = self._path6
        if path is not None and self.prefix6 is not None:
            deadline = path.get_timer()
            if deadline is not None and deadline <= now:
                self._send6(path.handle_timer(now))

    def check_ip_source(self, packet: bytes | memoryview) -> bool:
        # the version nibble first: an IPv6 packet (or anything else) in an IPv4 frame
        # would reach the kernel as what its first nibble says, past this check
        return len(packet) >= 20 and packet[0] >> 4 == 4 and packet[12:16] == self._peer_src

    def _intercept_udp(self, packet: bytes, now: float) -> bool:
        if not dhcp.is_dhcp_request(packet):
            return False
        st, n = self._st, self._st.network
        assert n is not None  # the session is open
        settings = self._dhcp
        if not settings.dns and n.dns:
            settings = dataclasses.replace(settings, dns=n.dns)
        try:
            reply = dhcp.answer_inform(packet, session=n.peer, server=n.local, settings=settings)
        except ParseError as exc:
            st.counters.dropped_dhcp += 1
            if st.counters.dropped_dhcp <= _DHCP_DROPS_LOGGED:
                st.events.append(Notice("info", f"DHCP packet dropped: {exc}"))
            return True
        st.counters.dhcp_answered += 1
        st.events.append(Notice("debug", f"DHCPINFORM answered ({len(settings.routes)} routes)"))
        self.send_ip(reply)
        return True

    def complete_verification(self, request: VerifyRequest, verdict: Verdict, now: float) -> None:
        """Deliver the answer of a ``verify`` call that returned None (e.g. RADIUS)."""
        assert isinstance(self._ppp, ppp.PppServer)
        self._ppp.complete_verification(request, verdict, now)
        self._pump(now)

    def _on_other_sstp_event(self, ev: object, now: float) -> None:
        if isinstance(ev, sstp.RequestAccepted):
            self.correlation_id = ev.correlation_id
        elif isinstance(ev, sstp.RequestRejected):
            self._finish(f"HTTP {ev.status} {ev.reason}", Outcome.HTTP_REJECTED)
        elif isinstance(ev, sstp.CallConnectRequested):
            self._ppp.lower_up(now)

    def _on_authenticated(self, ev: AuthSucceeded, now: float) -> None:
        assert isinstance(self._conn, sstp.SstpServerConnection)
        self._conn.set_hlak(ev.hlak, now)

    def _pump(self, now: float) -> None:
        super()._pump(now)
        st = self._st
        n = st.network
        if n is not None and not self._peer_src:
            self._peer_src = n.peer.packed
        path = self._path6
        if path is not None and self._opened6 is None and st.call_connected and not st.closed:
            # RAs are data (0x0057): they wait for the crypto binding like IPv4 does
            self._opened6 = path.prefix
            st.events.append(Session6Opened(path.prefix, path.peer_link_local))
            self._send6(path.start(now))

    # -- IPv6
    def _on_ppp_event(self, ev: object, now: float) -> None:
        if isinstance(ev, ppp.Network6Up):
            if ev.prefix is not None:
                ip6 = self._ipv6
                self._path6 = Ipv6Path(
                    server_iid=ev.local_iid,
                    peer_iid=ev.peer_iid,
                    prefix=ev.prefix,
                    counters=self._st.counters,
                    server_address=ip6.address,
                    mtu=ip6.mtu,
                    dns=ip6.dns,
                )
        elif isinstance(ev, ppp.Network6Down):
            self._stop6()
        else:
            super()._on_ppp_event(ev, now)

    def _ip6_from_peer(self, packet: bytes, now: float) -> bool:
        st = self._st
        path = self._path6
        if path is None or self._opened6 is None or st.closed:
            return False
        out, replies = path.receive(packet, now)
        if out is not None:
            st.counters.rx_packets += 1
            st.counters.rx_bytes += len(out)
            st.events.append(IpReceived(out))
        self._send6(replies)
        return True

    def _send6(self, packets: list[bytes]) -> None:
        """Link traffic of our own (RA, NA): not counted as tunnel data."""
        if not self._conn.closed:
            for p in packets:
                self._conn.send_ppp(_PPP_IPV6 + p)

    def _stop6(self) -> None:
        if self._path6 is not None:
            self._path6.stop()
            self._path6 = None
        if self._opened6 is not None:
            self._st.events.append(Session6Closed(self._opened6))
            self._opened6 = None


# ---------------------------------------------------------------- client


class ClientSession(Session):
    """Client side: sends the HTTP request, runs PPP as the peer, sends Call Connected.

    ``cert_hashes`` are the hashes of the certificate the server presented (the I/O layer
    computes them from the TLS connection); ``hlak_override`` lets tests present a wrong
    compound MAC on purpose.
    """

    def __init__(
        self,
        *,
        host: str,
        ppp_config: ppp.PppClientConfig,
        cert_hashes: dict[HashProtocol, bytes],
        random: Callable[[int], bytes],
        now: float,
        hlak_override: bytes | None = None,
        timeouts: sstp.Timeouts | None = None,
    ) -> None:
        self._st = SessionState()
        self._conn = sstp.SstpClientConnection(
            host=host, random=random, now=now, timeouts=timeouts or sstp.Timeouts()
        )
        self._ppp = ppp.PppClient(ppp_config, random=random, now=now)
        self._cert_hashes = cert_hashes
        self._hlak_override = hlak_override
        self._hlak: bytes | None = None
        self._acked = False
        self._server_src = b""
        self._random = random
        self._dhcp_xid: int | None = None
        self._solicitor: RouterSolicitor | None = None

    def start(self, now: float) -> None:
        assert isinstance(self._conn, sstp.SstpClientConnection)
        self._conn.start(now)

    @property
    def local_address(self) -> IPv4Address | None:
        n = self._st.network
        return n.local if n is not None else None

    @property
    def peer_address(self) -> IPv4Address | None:
        n = self._st.network
        return n.peer if n is not None else None

    @property
    def dns(self) -> tuple[IPv4Address, ...]:
        n = self._st.network
        return n.dns if n is not None else ()

    @property
    def ipv6(self) -> Ipv6Config | None:
        """The address the server's Router Advertisement gave, once it came."""
        return self._solicitor.config if self._solicitor is not None else None

    def check_ip_source(self, packet: bytes | memoryview) -> bool:
        # the server may route any source to us, but it must be IPv4
        return len(packet) >= 20 and packet[0] >> 4 == 4

    def send_inform(self, now: float) -> bool:
        """Send a DHCPINFORM for the split-tunnel routes (again, with the same transaction
        id, while unanswered); the answer comes as ``RoutesReceived``. False: not open."""
        local = self.local_address
        if not self.is_open or local is None:
            return False
        if self._dhcp_xid is None:
            self._dhcp_xid = int.from_bytes(self._random(4), "big")
        self.send_ip(dhcp.build_inform(local, self._dhcp_xid))
        return True

    def _intercept_udp(self, packet: bytes, now: float) -> bool:
        xid, local = self._dhcp_xid, self.local_address
        if xid is None or local is None or not dhcp.is_dhcp_reply(packet):
            return False
        st = self._st
        try:
            info = dhcp.parse_ack(packet, local, xid)
        except ParseError as exc:
            st.counters.dropped_dhcp += 1
            st.events.append(Notice("info", f"DHCP answer dropped: {exc}"))
            return True
        self._dhcp_xid = None
        st.events.append(RoutesReceived(info))
        return True

    # -- IPv6: IPV6CP (in the link), then RS/RA here
    def get_timer(self) -> float | None:
        t = super().get_timer()
        s = self._solicitor.get_timer() if self._solicitor is not None else None
        if s is None or self._st.closed:
            return t
        return s if t is None else min(t, s)

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        if self._solicitor is not None and not self._st.closed:
            self._send_link_ipv6(self._solicitor.handle_timer(now))

    def _send_link_ipv6(self, packets: list[bytes]) -> None:
        """RS packets: link control traffic, sent once the crypto binding allows data."""
        if not self._st.call_connected or self._conn.closed:
            return  # the next RS (or the server's unsolicited RA) will do
        for p in packets:
            self._conn.send_ppp(_PPP_IPV6 + p)

    def _ensure_solicitor(self) -> RouterSolicitor | None:
        """The link's IPV6CP is open: the solicitor for its identifier. Made here when the
        server's first RA arrives in the same read as the Configure-Ack that opened
        IPV6CP, before the link's ``Network6Up`` event is seen."""
        handler = self._ppp.ipv6cp_handler
        if self._solicitor is None and self._ppp.is_network6_up and handler is not None:
            self._solicitor = RouterSolicitor(handler.local_iid)
        return self._solicitor

    def _ip6_from_peer(self, packet: bytes, now: float) -> bool:
        solicitor = self._ensure_solicitor()
        if solicitor is None:
            return False  # no IPV6CP: the link drops it (or Protocol-Rejects IPv6)
        st = self._st
        if len(packet) < 40 or packet[0] >> 4 != 6:
            st.counters.dropped_invalid6 += 1
        elif _link_scoped(packet[8:24]) or _link_scoped(packet[24:40]):
            # RA, NS, MLD...: for us, never for the TUN
            config = solicitor.receive(packet)
            if config is not None:
                st.events.append(Ipv6Configured(config))
        elif not self.is_open:
            st.counters.dropped_not_open += 1
        else:
            st.counters.rx_packets += 1
            st.counters.rx_bytes += len(packet)
            st.counters.rx6_packets += 1
            st.counters.rx6_bytes += len(packet)
            st.events.append(IpReceived(packet))
        return True

    def _on_ppp_event(self, ev: object, now: float) -> None:
        if isinstance(ev, ppp.Network6Up):
            solicitor = self._ensure_solicitor()
            if solicitor is not None and solicitor.config is None:  # no RA yet: ask for one
                self._send_link_ipv6(solicitor.start(now))
        elif isinstance(ev, ppp.Network6Down):
            if self._solicitor is not None:
                self._solicitor.stop()
            self._solicitor = None
        else:
            super()._on_ppp_event(ev, now)

    def _on_other_sstp_event(self, ev: object, now: float) -> None:
        if isinstance(ev, sstp.CallConnectAcked):
            self._acked = True
            self._ppp.lower_up(now)
            self._maybe_send_call_connected(now)

    def _on_authenticated(self, ev: AuthSucceeded, now: float) -> None:
        self._hlak = ev.hlak if self._hlak_override is None else self._hlak_override
        self._maybe_send_call_connected(now)

    def _maybe_send_call_connected(self, now: float) -> None:
        if self._acked and self._hlak is not None and not self._st.call_connected:
            assert isinstance(self._conn, sstp.SstpClientConnection)
            self._conn.send_call_connected(self._hlak, self._cert_hashes, now)


def _link_scoped(address: bytes) -> bool:
    """fe80::/10, or multicast of interface/link scope."""
    if address[0] == 0xFE:
        return address[1] & 0xC0 == 0x80
    return address[0] == 0xFF and address[1] & 0x0F <= 2
