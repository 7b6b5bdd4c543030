"""Ipv6Path: one session's IPv6 after IPV6CP: forward, answer, drop and count."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.proto.ipv6 import nd
from sstpd.proto.ipv6.packet import NEXT_HEADER_UDP, Ipv6Header, encode_ipv6
from sstpd.proto.ipv6.path import Ipv6Path

SERVER_IID = bytes.fromhex("0a00000000000001")
PEER_IID = bytes.fromhex("5c4a1ef0937b22d1")
PEER_LL = IPv6Address("fe80::5c4a:1ef0:937b:22d1")
PREFIX = IPv6Network("2001:db8:0:7::/64")
SERVER = IPv6Address("2001:db8::1")


@dataclass
class C:
    rx6_packets: int = 0
    rx6_bytes: int = 0
    dropped_spoofed6: int = 0
    dropped_invalid6: int = 0
    dropped_nd_invalid: int = 0
    nd_rate_limited: int = 0


def path() -> tuple[Ipv6Path, C]:
    c = C()
    p = Ipv6Path(
        server_iid=SERVER_IID,
        peer_iid=PEER_IID,
        prefix=PREFIX,
        counters=c,
        server_address=SERVER,
        mtu=1400,
        dns=(IPv6Address("2001:db8::53"),),
    )
    return p, c


def udp(src: str, dst: str = "2001:db8:ffff::1") -> bytes:
    header = Ipv6Header(IPv6Address(src), IPv6Address(dst), NEXT_HEADER_UDP)
    return encode_ipv6(header, b"\x04\x00\x00\x35\x00\x0c\x00\x00data")


def rs(src: IPv6Address = PEER_LL) -> bytes:
    return nd.wrap(src, nd.ALL_ROUTERS, nd.encode_rs(nd.RouterSolicitation()))


def test_start_advertises_the_prefix_from_the_link_local_address() -> None:
    p, _ = path()
    [ra] = p.start(0.0)
    header, kind, message = nd.unwrap(ra)
    assert kind == nd.TYPE_RA and header.src == IPv6Address("fe80::a00:0:0:1")
    assert nd.decode_ra(header, message).prefixes[0].prefix == PREFIX
    assert p.get_timer() == 3.0 and len(p.handle_timer(3.0)) == 1


def test_any_source_in_the_64_is_forwarded_and_counted() -> None:
    p, c = path()
    for src in ("2001:db8:0:7::1", "2001:db8:0:7:dead:beef:1:2"):
        pkt = udp(src)
        assert p.forwardable(pkt)
        assert p.receive(pkt, 0.0) == (pkt, [])
    assert c.rx6_packets == 2 and c.rx6_bytes == 2 * len(pkt)


def test_spoofed_sources_are_dropped_and_counted() -> None:
    p, c = path()
    for src in ("2001:db8:0:8::1", "2001:db8::1", "fe80::1", "::"):
        pkt = udp(src)
        assert not p.forwardable(pkt)
        assert p.receive(pkt, 0.0) == (None, [])
    assert c.dropped_spoofed6 == 4 and c.rx6_packets == 0


def test_rs_answered_with_an_ra_to_the_solicitor_flood_counted() -> None:
    p, c = path()
    p.start(0.0)
    out, [ra] = p.receive(rs(), 5.0)
    assert out is None and nd.unwrap(ra)[0].dst == PEER_LL
    for i in range(50):
        assert p.receive(rs(), 5.1 + i * 0.01) == (None, [])
    assert c.nd_rate_limited == 50


def test_ns_for_the_server_address_answered_with_an_na() -> None:
    p, _ = path()
    ns = nd.wrap(PEER_LL, SERVER, nd.encode_ns(nd.NeighborSolicitation(SERVER)))
    _, [na] = p.receive(ns, 0.0)
    header, kind, message = nd.unwrap(na)
    assert kind == nd.TYPE_NA and nd.decode_na(header, message).target == SERVER


def test_nd_with_bad_checksum_or_hop_limit_is_counted_invalid() -> None:
    p, c = path()
    good = rs()
    bad_sum = good[:42] + bytes([good[42] ^ 0xFF]) + good[43:]
    bad_hops = good[:7] + b"\x40" + good[8:]
    for pkt in (bad_sum, bad_hops):
        assert p.receive(pkt, 10.0) == (None, [])
    assert c.dropped_nd_invalid == 2


def test_nd_from_a_global_source_stays_local_never_forwarded() -> None:
    p, _ = path()
    pkt = nd.wrap(
        IPv6Address("2001:db8:0:7::5"), nd.ALL_ROUTERS, nd.encode_rs(nd.RouterSolicitation())
    )
    assert not p.forwardable(pkt)
    assert p.receive(pkt, 10.0)[0] is None


def test_truncated_packets_are_counted_invalid() -> None:
    p, c = path()
    pkt = udp("2001:db8:0:7::1")
    for bad in (pkt[:39], pkt[:-1], b"\x45" + pkt[1:]):
        assert p.receive(bad, 0.0) == (None, [])
    assert c.dropped_invalid6 == 3


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([b"", rs(), udp("2001:db8:0:7::1")]))
def test_fuzz_receive_never_raises(tail: bytes, head: bytes) -> None:
    p, _ = path()
    p.start(0.0)
    data = head[: len(tail) % (len(head) + 1)] + tail
    out, replies = p.receive(data, 1.0)
    assert out is None or out == data
    for r in replies:
        nd.unwrap(r)  # what we send is always valid ND
