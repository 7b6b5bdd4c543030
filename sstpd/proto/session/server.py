"""``ServerSession``: the server side of one connection, from the first byte of the HTTP
request on. IPv6 (``assign_prefix``): once IPV6CP is open and the binding verified, an
``ipv6.path.Ipv6Path`` sends the Router Advertisement and judges every IPv6 packet from
the peer. DHCP: a DHCPINFORM is answered here (``dhcp.answer_inform``), anything else to
UDP port 67 dropped and counted."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from sstpd.errors import ParseError
from sstpd.proto import dhcp
from sstpd.proto.ipv6.path import Ipv6Path
from sstpd.proto.outcome import Outcome
from sstpd.proto.ppp import link as ppp
from sstpd.proto.ppp.auth.common import Verdict, Verify, VerifyRequest
from sstpd.proto.ppp.link.events import AuthSucceeded, Notice
from sstpd.proto.session.base import PPP_IPV6, Session, SessionState
from sstpd.proto.session.events import (
    IpReceived,
    Session4Opened,
    Session6Closed,
    Session6Opened,
    SessionOpened,
)
from sstpd.proto.sstp import connection as sstp
from sstpd.proto.sstp.constants import HashProtocol

_DHCP_DROPS_LOGGED = 3  # per session; the counter keeps counting


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
        self._late4 = False  # opened IPv6-only: a later IPCP gets its own Session4Opened
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
    def is_open(self) -> bool:
        """Binding verified and IPCP up, or IPv6 only: IPV6CP open (its /64 routed here)
        while IPCP was given up (``ppp.PppServer.ipcp_given_up``)."""
        st = self._st
        if not st.call_connected or st.closed:
            return False
        return st.network is not None or (self._opened6 is not None and self._ppp.ipcp_given_up)

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
        if not st._opened_sent and st.network is None and self.is_open:
            st._opened_sent = True  # IPv6 only: no address; IPv4 frames fail the source check
            st.events.append(SessionOpened(None, None, (), st.hash_protocol))
            self._late4 = True
        elif self._late4 and n is not None and not st.closed:
            # the peer negotiated IPCP after all (from Stopped, RFC 1661): route it now
            self._late4 = False
            st.events.append(Session4Opened(n.local, n.peer, n.dns))

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
                self._conn.send_ppp(PPP_IPV6 + p)

    def _stop6(self) -> None:
        if self._path6 is not None:
            self._path6.stop()
            self._path6 = None
        if self._opened6 is not None:
            self._st.events.append(Session6Closed(self._opened6))
            self._opened6 = None
