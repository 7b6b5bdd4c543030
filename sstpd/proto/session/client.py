"""``ClientSession``: the client side (``sstpd connect``, tests, benchmarks). Sends the
HTTP request, runs PPP as the peer, sends Call Connected once both the Call Connect Ack
and the HLAK are there; with ``PppClientConfig.ipv6`` solicits a Router Advertisement
(``Ipv6Configured``); ``send_inform`` asks for the split-tunnel routes
(``RoutesReceived``)."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

from sstpd.errors import ParseError
from sstpd.proto import dhcp
from sstpd.proto.ipv6.autoconf import Ipv6Config, RouterSolicitor
from sstpd.proto.ppp import link as ppp
from sstpd.proto.ppp.link.events import AuthSucceeded, Notice
from sstpd.proto.session.base import PPP_IPV6, Session, SessionState
from sstpd.proto.session.events import IpReceived, Ipv6Configured, RoutesReceived
from sstpd.proto.sstp import connection as sstp
from sstpd.proto.sstp.constants import HashProtocol


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
            self._conn.send_ppp(PPP_IPV6 + p)

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
