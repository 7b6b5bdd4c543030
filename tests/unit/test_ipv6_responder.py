"""The per-link IPv6 responder: RAs on start and timer, answers to RS and NS, floods."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.proto.ipv6 import nd
from sstpd.proto.ipv6.packet import Ipv6Header, encode_ipv6
from sstpd.proto.ipv6.responder import LinkResponder

SERVER_IID = bytes.fromhex("0000000000000001")
SERVER_LL = IPv6Address("fe80::1")
SERVER_GLOBAL = IPv6Address("2001:db8::1")
CLIENT_LL = IPv6Address("fe80::a8bb:ccdd:eeff:11")
PREFIX = IPv6Network("2001:db8:0:7::/64")
DNS = (IPv6Address("2001:db8::53"),)


def responder() -> LinkResponder:
    return LinkResponder(
        server_iid=SERVER_IID, prefix=PREFIX, server_address=SERVER_GLOBAL, mtu=1400, dns=DNS
    )


def ra_of(packet: bytes) -> tuple[Ipv6Header, nd.RouterAdvertisement]:
    header, kind, message = nd.unwrap(packet)
    assert kind == 134
    return header, nd.decode_ra(header, message)


def rs(src: IPv6Address = CLIENT_LL) -> bytes:
    return nd.wrap(src, nd.ALL_ROUTERS, nd.encode_rs(nd.RouterSolicitation()))


def test_start_sends_an_ra_with_the_sessions_prefix_mtu_and_dns() -> None:
    r = responder()
    [packet] = r.start(10.0)
    header, ra = ra_of(packet)
    assert header.src == SERVER_LL and header.dst == nd.ALL_NODES and header.hop_limit == 255
    assert [p.prefix for p in ra.prefixes] == [PREFIX]
    assert ra.prefixes[0].on_link and ra.prefixes[0].autonomous
    assert ra.mtu == 1400 and ra.dns == DNS and not ra.managed and not ra.other
    assert r.get_timer() == 13.0
    assert r.handle_timer(12.0) == []
    assert len(r.handle_timer(13.0)) == 1 and r.counters.advertisements == 2


def test_rs_is_answered_unicast_and_a_flood_is_rate_limited() -> None:
    r = responder()
    r.start(0.0)
    assert r.receive(rs(), 1.0) == []  # within 3 s of the first RA
    [answer] = r.receive(rs(), 3.5)
    header, _ = ra_of(answer)
    assert header.dst == CLIENT_LL
    for i in range(100):
        r.receive(rs(), 4.0 + i * 0.01)
    assert r.counters.solicitations == 102 and r.counters.rate_limited == 101
    [from_unspecified] = r.receive(rs(IPv6Address("::")), 10.0)
    assert ra_of(from_unspecified)[0].dst == nd.ALL_NODES


def test_no_ra_before_start_or_after_stop() -> None:
    r = responder()
    assert r.receive(rs(), 0.0) == [] and r.get_timer() is None
    r.start(0.0)
    r.stop()
    assert r.receive(rs(), 100.0) == [] and r.handle_timer(100.0) == []


def test_neighbor_solicitation_for_our_address_gets_an_advertisement() -> None:
    r = responder()
    ns = nd.wrap(CLIENT_LL, SERVER_LL, nd.encode_ns(nd.NeighborSolicitation(SERVER_LL)))
    [answer] = r.receive(ns, 0.0)
    header, kind, message = nd.unwrap(answer)
    assert kind == 136 and header.src == SERVER_LL and header.dst == CLIENT_LL
    assert nd.decode_na(header, message) == nd.NeighborAdvertisement(SERVER_LL)
    ns = nd.wrap(CLIENT_LL, SERVER_GLOBAL, nd.encode_ns(nd.NeighborSolicitation(SERVER_GLOBAL)))
    assert len(r.receive(ns, 0.0)) == 1 and r.counters.neighbor_advertisements == 2


def test_dad_and_foreign_targets_are_not_answered() -> None:
    r = responder()
    tentative = IPv6Address("2001:db8:0:7:1c2d:3e4f:5a6b:7c8d")
    group = IPv6Address("ff02::1:ff6b:7c8d")
    dad = nd.wrap(IPv6Address("::"), group, nd.encode_ns(nd.NeighborSolicitation(tentative)))
    assert r.receive(dad, 0.0) == []
    # a DAD probe for the server's own address must not be defended either: no answer
    own = nd.wrap(
        IPv6Address("::"),
        IPv6Address("ff02::1:ff00:1"),
        nd.encode_ns(nd.NeighborSolicitation(SERVER_LL)),
    )
    assert r.receive(own, 0.0) == []
    other = nd.wrap(CLIENT_LL, tentative, nd.encode_ns(nd.NeighborSolicitation(tentative)))
    assert r.receive(other, 0.0) == []
    assert r.counters.ignored == 3 and r.counters.neighbor_advertisements == 0


def test_invalid_and_other_local_packets_are_counted() -> None:
    r = responder()
    r.start(0.0)
    bad_hop = rs()[:7] + b"\x40" + rs()[8:]
    bad_sum = rs()[:42] + b"\x00\x00" + rs()[44:]
    mld = encode_ipv6(Ipv6Header(CLIENT_LL, IPv6Address("ff02::16"), 0, 1), bytes(8))
    dhcpv6 = encode_ipv6(Ipv6Header(CLIENT_LL, IPv6Address("ff02::1:2"), 17, 1), bytes(8))
    for packet in (bad_hop, bad_sum, b"\x60", b""):
        assert r.receive(packet, 10.0) == []
    assert r.counters.invalid == 4
    assert r.receive(mld, 10.0) == [] and r.receive(dhcpv6, 10.0) == []
    assert r.counters.ignored == 2
    ra = nd.wrap(CLIENT_LL, nd.ALL_NODES, nd.encode_ra(nd.RouterAdvertisement()))
    na = nd.wrap(
        CLIENT_LL, nd.ALL_NODES, nd.encode_na(nd.NeighborAdvertisement(CLIENT_LL, solicited=False))
    )
    assert r.receive(ra, 10.0) == [] and r.receive(na, 10.0) == []
    assert r.counters.ignored == 4 and r.counters.invalid == 4


@settings(max_examples=300, deadline=None)
@given(kind=st.integers(128, 140), body=st.binary(max_size=80), raw=st.binary(max_size=80))
def test_responder_never_raises(kind: int, body: bytes, raw: bytes) -> None:
    r = responder()
    r.start(0.0)
    for packet in (raw, nd.wrap(CLIENT_LL, SERVER_LL, bytes([kind, 0, 0, 0]) + body)):
        for answer in r.receive(packet, 100.0):
            header, found, _ = nd.unwrap(answer)  # whatever we send is valid ND
            assert found in (134, 136) and header.src in (SERVER_LL, SERVER_GLOBAL)
