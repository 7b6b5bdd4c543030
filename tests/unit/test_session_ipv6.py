"""ServerSession with IPv6: IPV6CP through the whole SSTP + PPP stack in memory, the RA on
open, RS -> RA, forwarding inside the /64, spoofed and invalid packets dropped and
counted, the RA timer, and an IPv4-only or exhausted server unchanged."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.proto.datapath import Family, data_prefix
from sstpd.proto.ipv6 import nd
from sstpd.proto.ipv6.packet import NEXT_HEADER_UDP, Ipv6Header, encode_ipv6
from sstpd.proto.mschap import nt_password_hash
from sstpd.proto.pool6 import PrefixPool
from sstpd.proto.ppp import link as ppp
from sstpd.proto.ppp.frame import Code, Protocol
from sstpd.proto.ppp.ipcp import IpcpClientHandler
from sstpd.proto.ppp.ipv6cp import link_local
from sstpd.proto.ppp.link import PppServerConfig
from sstpd.proto.session import (
    IpReceived,
    Ipv6Settings,
    ServerSession,
    Session4Opened,
    Session6Closed,
    Session6Opened,
    SessionOpened,
)
from tests.unit.test_session import HASHES, SERVER_IP, Pair, _random

POOL = IPv6Network("2001:db8:77::/56")
SERVER6 = IPv6Address("2001:db8:77::1")
DNS6 = (IPv6Address("2001:db8::53"),)


class Pair6(Pair):
    """A client whose PPP link runs IPV6CP (as ``PppClientConfig.ipv6`` does) against a
    server with a prefix pool; the client's IPv6 packets are collected raw."""

    def __init__(self, *, ipv6: bool = True, exhausted: bool = False) -> None:
        super().__init__()
        self.pool6 = PrefixPool(POOL, exclude=[SERVER6])
        self.server = ServerSession(
            ppp_config=PppServerConfig(local_address=SERVER_IP, dns=(IPv4Address("10.77.0.53"),)),
            cert_hashes=HASHES,
            hash_protocols=3,
            lookup=lambda n: nt_password_hash("pw") if n == "alice" else None,
            assign_address=lambda n: self.pool.allocate(),
            assign_prefix=(lambda n: None if exhausted else self.pool6.allocate())
            if ipv6
            else None,
            ipv6=Ipv6Settings(address=SERVER6, dns=DNS6, mtu=1400),
            random=_random(),  # type: ignore[arg-type]
            now=0.0,
        )
        self.received6: list[bytes] = []
        self.up6: list[ppp.Network6Up] = []
        link = self.client.link
        link.ipv6_enabled = True
        start_network = link._start_network

        def start(now: float) -> None:
            start_network(now)
            link._open_ipv6cp(now)

        link._start_network = start  # type: ignore[method-assign]
        on_ppp_event = self.client._on_ppp_event

        def record(ev: object, now: float) -> None:
            if isinstance(ev, ppp.Network6Up):
                self.up6.append(ev)
            on_ppp_event(ev, now)

        def take6(packet: bytes, now: float) -> bool:
            self.received6.append(packet)
            return True

        self.client._on_ppp_event = record  # type: ignore[method-assign]
        self.client._ip6_from_peer = take6  # type: ignore[method-assign]

    @property
    def client_ll(self) -> IPv6Address:
        return link_local(self.up6[0].local_iid)

    def send6(self, packet: bytes) -> None:
        self.client.connection.send_ppp(b"\xff\x03\x00\x57" + packet)
        self.run()

    def ras(self) -> list[tuple[nd.Ipv6Header, nd.RouterAdvertisement]]:
        out = []
        for p in self.received6:
            header, kind, message = nd.unwrap(p)
            if kind == nd.TYPE_RA:
                out.append((header, nd.decode_ra(header, message)))
        return out


def udp6(src: IPv6Address | str, dst: IPv6Address | str = "2001:db8:ff::2") -> bytes:
    header = Ipv6Header(IPv6Address(src), IPv6Address(dst), NEXT_HEADER_UDP)
    return encode_ipv6(header, b"\x04\x00\x00\x35\x00\x0c\x00\x00data")


def opened(p: Pair6) -> Session6Opened:
    [ev] = [e for e in p.server_events if isinstance(e, Session6Opened)]
    return ev


def test_ipv6cp_opens_and_the_ra_carries_the_sessions_prefix() -> None:
    p = Pair6()
    p.run()
    assert p.server.is_open and any(isinstance(e, SessionOpened) for e in p.server_events)
    ev = opened(p)
    assert ev.prefix.subnet_of(POOL) and ev.prefix.prefixlen == 64 and SERVER6 not in ev.prefix
    assert ev.peer_link_local == p.client_ll and p.server.prefix6 == ev.prefix
    assert p.server.allocated_prefix == ev.prefix
    [(header, ra)] = p.ras()
    assert header.dst == nd.ALL_NODES and header.hop_limit == 255
    assert header.src == link_local(p.up6[0].peer_iid or b"")
    assert [x.prefix for x in ra.prefixes] == [ev.prefix]
    assert ra.prefixes[0].on_link and ra.prefixes[0].autonomous
    assert ra.mtu == 1400 and ra.dns == DNS6 and ra.router_lifetime > 0


def test_rs_answered_with_a_unicast_ra_and_a_flood_counted() -> None:
    p = Pair6()
    p.run()
    p.received6.clear()
    p.now = 5.0
    # (the client session's own RS at IPV6CP-up may already have met the rate limit)
    before = p.server.counters.nd_rate_limited
    rs = nd.wrap(p.client_ll, nd.ALL_ROUTERS, nd.encode_rs(nd.RouterSolicitation()))
    p.send6(rs)
    [(header, _)] = p.ras()
    assert header.dst == p.client_ll
    for _ in range(200):
        p.send6(rs)
    assert len(p.ras()) == 1
    assert p.server.counters.nd_rate_limited == before + 200 and p.server.is_open


def test_packets_inside_the_64_are_forwarded_and_counted() -> None:
    p = Pair6()
    p.run()
    prefix = opened(p).prefix
    src = prefix.network_address + 0x1234_5678_9ABC
    pkt = udp6(src)
    assert p.server.forwardable6(pkt)
    p.send6(pkt)
    got = [e.packet for e in p.server_events if isinstance(e, IpReceived)]
    assert got == [pkt]
    c = p.server.counters
    assert (c.rx6_packets, c.rx6_bytes, c.rx_packets, c.rx_bytes) == (1, len(pkt), 1, len(pkt))


def test_spoofed_sources_dropped_and_counted_never_forwarded() -> None:
    p = Pair6()
    p.run()
    prefix = opened(p).prefix
    other = IPv6Network((int(prefix.network_address) + (1 << 64), 64))
    for src in (other.network_address + 1, SERVER6, IPv6Address("fe80::bad"), "2001:db8:ff::9"):
        pkt = udp6(src)
        assert not p.server.forwardable6(pkt)
        p.send6(pkt)
    assert not [e for e in p.server_events if isinstance(e, IpReceived)]
    assert p.server.counters.dropped_spoofed6 == 4 and p.server.counters.rx6_packets == 0


def test_nd_with_bad_checksum_or_hop_limit_counted_link_traffic_never_forwarded() -> None:
    p = Pair6()
    p.run()
    p.received6.clear()
    p.now = 5.0
    rs = nd.wrap(p.client_ll, nd.ALL_ROUTERS, nd.encode_rs(nd.RouterSolicitation()))
    p.send6(rs[:42] + bytes([rs[42] ^ 1]) + rs[43:])  # checksum
    p.send6(rs[:7] + b"\x40" + rs[8:])  # hop limit 64
    p.send6(udp6(p.client_ll, "ff02::1:2"))  # DHCPv6 Solicit to the link: stays local
    assert p.server.counters.dropped_nd_invalid == 2 and p.ras() == []
    assert not [e for e in p.server_events if isinstance(e, IpReceived)]
    p.send6(rs[:30])  # truncated
    assert p.server.counters.dropped_invalid6 == 1 and p.server.is_open


def test_ns_for_the_server_address_answered() -> None:
    p = Pair6()
    p.run()
    p.received6.clear()
    p.send6(nd.wrap(p.client_ll, SERVER6, nd.encode_ns(nd.NeighborSolicitation(SERVER6))))
    [na] = p.received6
    header, kind, message = nd.unwrap(na)
    assert kind == nd.TYPE_NA and nd.decode_na(header, message).target == SERVER6


def test_unsolicited_ras_follow_the_timer() -> None:
    p = Pair6()
    p.run()
    p.received6.clear()
    deadline = p.server.get_timer()
    assert deadline is not None and deadline <= 3.0
    p.now = 3.0
    p.server.handle_timer(3.0)
    p.run()
    assert len(p.ras()) == 1


def test_tun_to_session_prefix_frames_ipv6() -> None:
    raw = data_prefix(60, Family.IPV6)
    assert raw == bytes.fromhex("1000 0044 ff030057")


def test_ipv4_only_server_rejects_ipv6cp_session_stays_ipv4() -> None:
    p = Pair6(ipv6=False)
    p.run()
    assert p.server.is_open and p.server.prefix6 is None
    assert not [e for e in p.server_events if isinstance(e, Session6Opened)]
    assert p.up6 == [] and p.server.allocated_prefix is None


def test_exhausted_prefix_pool_keeps_ipv4() -> None:
    p = Pair6(exhausted=True)
    p.run()
    assert p.server.is_open and p.server.prefix6 is None and p.up6 == []


def test_disconnect_closes_ipv6_and_reports_the_prefix_down() -> None:
    p = Pair6()
    p.run()
    prefix = opened(p).prefix
    p.client.link.close("bye", 1.0)  # LCP Terminate-Request: IPV6CP goes down with LCP
    p.client._pump(1.0)
    p.run()
    assert [e for e in p.server_events if isinstance(e, Session6Closed)] == [Session6Closed(prefix)]
    assert p.server.prefix6 is None and not p.server.forwardable6(udp6(prefix[1]))
    p.server.abort_connection("connection lost", 2.0)
    assert p.server.closed and p.server.get_timer() is None
    assert p.server.allocated_prefix == prefix  # still held: the I/O layer releases it


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=80), max_size=6))
def test_fuzz_ipv6_frames_never_raise(packets: list[bytes]) -> None:
    p = Pair6()
    p.run()
    for raw in packets:
        p.send6(b"\x60" + raw)
    assert p.server.is_open


# ---------------------------------------------------------------- IPv6-only sessions


class Ipv6OnlyPair(Pair6):
    """A client that runs IPV6CP alone and answers the server's IPCP with an LCP
    Protocol-Reject (``reject``) or not at all (a silent IPCP)."""

    def __init__(self, *, reject: bool) -> None:
        super().__init__()
        link = self.client.link

        def start(now: float) -> None:
            link.phase = ppp.Phase.NETWORK
            link._open_ipv6cp(now)

        link._start_network = start  # type: ignore[method-assign]
        receive = link.receive_payload

        def no_ipcp(protocol: int, payload: bytes, now: float) -> None:
            if protocol != Protocol.IPCP:
                receive(protocol, payload, now)
            elif reject:
                link.lcp.send_packet(Code.PROTOCOL_REJECT, struct.pack("!H", protocol) + payload)

        link.receive_payload = no_ipcp  # type: ignore[method-assign]
        self._receive = receive

    def open_ipcp_late(self) -> None:
        """The client changes its mind: answers IPCP from now on and asks for it itself
        (as a client whose IPv4 is turned back on renegotiates)."""
        link = self.client.link
        link.receive_payload = self._receive  # type: ignore[method-assign]
        handler = IpcpClientHandler(request_dns=link.config.request_dns, listener=link)
        link._ipcp_handler = handler
        link._open_ipcp(handler, self.now)
        self.client._pump(self.now)
        self.run()


def test_ipcp_protocol_rejected_ipv6cp_open_counts_as_open() -> None:
    p = Ipv6OnlyPair(reject=True)
    p.run()
    six = opened(p)
    assert p.server.is_open and p.server.prefix6 == six.prefix
    [open_ev] = [e for e in p.server_events if isinstance(e, SessionOpened)]
    assert open_ev.peer is None and open_ev.local is None  # IPv6 only
    types = [type(e) for e in p.server_events]
    assert types.index(Session6Opened) < types.index(SessionOpened)  # the /64 first
    # IPv6 inside the /64 is forwarded; IPv4 from the peer fails the source check
    before = p.server.counters.rx_packets
    p.send6(udp6(six.prefix[7]))
    assert p.server.counters.rx_packets == before + 1
    assert p.server.forwardable6(udp6(six.prefix[7]))
    ipv4 = bytes.fromhex("45000020000000004011 0000 0a4d0002 0a4d0001".replace(" ", "")) + bytes(12)
    p.client.connection.send_ppp(b"\xff\x03\x00\x21" + ipv4)
    p.run()
    assert p.server.counters.dropped_spoofed == 1 and not p.server.check_ip_source(ipv4)
    # and the downlink: IPv6 to the session goes out, counted
    p.server.send_ip(udp6("2001:db8:ff::2", six.prefix[7]))
    assert p.server.counters.tx_packets >= 1 and p.server.counters.dropped_not_open == 0


def test_silent_ipcp_opens_ipv6_only_once_the_server_gives_ipcp_up() -> None:
    p = Ipv6OnlyPair(reject=False)
    p.run()
    assert opened(p) and not p.server.is_open  # IPCP still trying: not open yet
    assert not [e for e in p.server_events if isinstance(e, SessionOpened)]
    t = 0.0
    while not p.server.is_open and t < 60.0:  # the restart timer runs out (RFC 1661 §4.6)
        t += 1.0
        p.now = t
        p.server.handle_timer(t)
        p.run()
    assert p.server.is_open and 0 < t < 60.0  # before the default handshake_timeout
    [open_ev] = [e for e in p.server_events if isinstance(e, SessionOpened)]
    assert open_ev.peer is None and not p.server.closed


def test_ipv6_only_session_ends_when_ipv6cp_closes_too() -> None:
    p = Ipv6OnlyPair(reject=True)
    p.run()
    assert p.server.is_open
    p.client.link.ipv6cp.close(1.0)  # type: ignore[union-attr]
    p.client._pump(1.0)
    p.run()
    assert not p.server.is_open and p.server.prefix6 is None  # IPv6 down: nothing open
    assert [e for e in p.server_events if isinstance(e, Session6Closed)]
    t = 1.0
    while not p.server.closed and t < 30.0:  # IPV6CP's Stopping state times out
        t += 1.0
        p.now = t
        p.server.handle_timer(t)
        p.run()
    # no NCP left: the server's link ends the session (RFC 1661, as pppd and RRAS do)
    assert p.server.closed and t < 30.0


def ipv4_from(src: IPv4Address) -> bytes:
    return (
        bytes.fromhex("4500002000000000401100 00".replace(" ", ""))
        + src.packed
        + (IPv4Address("10.9.9.9").packed + bytes(12))
    )


def test_ipcp_opening_after_an_ipv6_only_open_is_announced_once_with_its_address() -> None:
    p = Ipv6OnlyPair(reject=True)
    p.run()
    _late_ipcp_routes_the_held_address(p)


def test_ipcp_opening_after_a_silent_ipcp_gave_up_is_announced_too() -> None:
    p = Ipv6OnlyPair(reject=False)
    p.run()
    t = 0.0
    while not p.server.is_open and t < 60.0:  # the server's IPCP gives up (Stopped)
        t += 1.0
        p.now = t
        p.server.handle_timer(t)
        p.run()
    _late_ipcp_routes_the_held_address(p)


def _late_ipcp_routes_the_held_address(p: Ipv6OnlyPair) -> None:
    assert p.server.is_open and p.server.peer_address is None
    held = p.server.allocated_address
    assert held is not None and p.pool.in_use == 1  # allocated at authentication
    assert not p.server.check_ip_source(ipv4_from(held))  # not yet: IPCP is down
    p.open_ipcp_late()
    late = [e for e in p.server_events if isinstance(e, Session4Opened)]
    assert late == [Session4Opened(SERVER_IP, held, (IPv4Address("10.77.0.53"),))]
    types = [type(e) for e in p.server_events]
    assert types.index(SessionOpened) < types.index(Session4Opened)
    assert types.count(SessionOpened) == 1  # the session opened once (one Start)
    assert p.server.is_open and p.server.peer_address == held and p.pool.in_use == 1
    assert p.server.prefix6 is not None  # IPv6 stays as it was
    # IPv4 both ways now: the peer's address passes the source check, the downlink flows
    assert p.server.check_ip_source(ipv4_from(held))
    before = p.server.counters.rx_packets
    p.client.connection.send_ppp(b"\xff\x03\x00\x21" + ipv4_from(held))
    p.run()
    assert p.server.counters.rx_packets == before + 1 and p.server.counters.dropped_spoofed == 0
    p.server.send_ip(ipv4_from(IPv4Address("10.9.9.9"))[:12] + b"\x0a\x09\x09\x09" + held.packed)
    assert p.server.counters.dropped_not_open == 0
    # a later IPCP renegotiation does not announce the address again
    p.open_ipcp_late()
    assert len([e for e in p.server_events if isinstance(e, Session4Opened)]) == 1


def test_dual_stack_and_silent_ipcp_sessions_never_announce_a_late_address() -> None:
    p = Pair6()
    p.run()
    assert p.server.is_open and p.server.peer_address is not None
    assert not [e for e in p.server_events if isinstance(e, Session4Opened)]
    q = Ipv6OnlyPair(reject=True)
    q.run()
    q.server.disconnect(1.0, "bye")
    q.run()
    assert q.server.closed
    assert not [e for e in q.server_events if isinstance(e, Session4Opened)]
