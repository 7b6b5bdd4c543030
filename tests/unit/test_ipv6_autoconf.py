"""The client's Router Solicitation / Advertisement handling (sstpd.proto.ipv6.autoconf):
the docs/protocol/ipv6-dhcp.md §3 RA vector gives prefix::IID, RS timing per RFC 4861 §6.3.7, and
nothing a server sends raises."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.proto.ipv6 import nd
from sstpd.proto.ipv6.autoconf import Ipv6Config, RouterSolicitor, address_in
from sstpd.proto.ipv6.packet import decode_ipv6

IID = bytes.fromhex("0211223344556677")
SERVER_LL = IPv6Address("fe80::1")
# docs/protocol/ipv6-dhcp.md §3 (checked with scapy): RA from fe80::1 to ff02::1, PIO
# 2001:db8:1:2::/64 L+A, MTU 1400, RDNSS 2001:db8::53, router lifetime 1800
RA_VECTOR = bytes.fromhex(
    "60000000 0050 3a ff  fe800000000000000000000000000001  ff020000000000000000000000000001"
    "86 00 e114 40 00 0708 00000000 00000000"
    "03 04 40 c0 00015180 00003840 00000000 20010db8000100020000000000000000"
    "05 01 0000 00000578"
    "19 03 0000 00000708 20010db8000000000000000000000053".replace(" ", "")
)


def ra(**kw: object) -> bytes:
    return nd.advertise(b"\x00" * 7 + b"\x01", nd.ALL_NODES, nd.RouterAdvertisement(**kw))  # type: ignore[arg-type]


def test_the_vector_ra_gives_prefix_and_iid() -> None:
    s = RouterSolicitor(IID)
    s.start(0.0)
    config = s.receive(RA_VECTOR)
    assert config == Ipv6Config(
        address=IPv6Address("2001:db8:1:2:211:2233:4455:6677"),
        prefix=IPv6Network("2001:db8:1:2::/64"),
        link_local=IPv6Address("fe80::211:2233:4455:6677"),
        router=SERVER_LL,
        router_lifetime=1800,
        mtu=1400,
        dns=(IPv6Address("2001:db8::53"),),
    )
    assert s.get_timer() is None  # answered: no more solicitations
    assert s.receive(RA_VECTOR) is None  # the periodic RA again: nothing new
    assert s.config == config


def test_solicitations_three_four_seconds_apart_from_our_link_local() -> None:
    s = RouterSolicitor(IID)
    first = s.start(10.0)
    assert len(first) == 1
    header, _ = decode_ipv6(first[0])
    assert header.src == IPv6Address("fe80::211:2233:4455:6677")
    assert header.dst == nd.ALL_ROUTERS and header.hop_limit == 255
    h, kind, message = nd.unwrap(first[0])  # checksum and hop limit as a router checks them
    assert kind == 133 and nd.decode_rs(h, message) == nd.RouterSolicitation(None)
    assert s.get_timer() == 14.0 and s.handle_timer(13.9) == []
    assert len(s.handle_timer(14.0)) == 1 and s.get_timer() == 18.0
    assert len(s.handle_timer(18.0)) == 1 and s.get_timer() is None
    assert s.handle_timer(100.0) == [] and s.sent == 3


@pytest.mark.parametrize(
    "packet",
    [
        ra(prefixes=(nd.PrefixInformation(IPv6Network("2001:db8::/64"), autonomous=False),)),
        ra(prefixes=(nd.PrefixInformation(IPv6Network("2001:db8::/56")),)),
        ra(prefixes=(nd.PrefixInformation(IPv6Network("fe80::/64")),)),
        ra(prefixes=(nd.PrefixInformation(IPv6Network("2001:db8::/64"), valid_lifetime=0),)),
        ra(),
    ],
    ids=["not-autonomous", "not-64", "link-local", "expired", "no-prefix"],
)
def test_ras_without_a_usable_prefix_are_ignored(packet: bytes) -> None:
    s = RouterSolicitor(IID)
    s.start(0.0)
    assert s.receive(packet) is None and s.ignored == 1 and s.get_timer() == 4.0


def test_the_first_usable_prefix_wins_and_a_new_one_reconfigures() -> None:
    s = RouterSolicitor(IID)
    pios = (
        nd.PrefixInformation(IPv6Network("2001:db8:9::/64"), autonomous=False),
        nd.PrefixInformation(IPv6Network("2001:db8:a::/64")),
        nd.PrefixInformation(IPv6Network("2001:db8:b::/64")),
    )
    c = s.receive(ra(prefixes=pios))
    assert c is not None and c.prefix == IPv6Network("2001:db8:a::/64")
    c2 = s.receive(ra(prefixes=pios[2:]))
    assert c2 is not None and c2.address == address_in(IPv6Network("2001:db8:b::/64"), IID)


def test_bad_ras_are_counted_not_raised() -> None:
    s = RouterSolicitor(IID)
    bad_hop = RA_VECTOR[:7] + b"\x40" + RA_VECTOR[8:]
    bad_sum = RA_VECTOR[:-1] + bytes([RA_VECTOR[-1] ^ 1])
    global_src = RA_VECTOR[:8] + IPv6Address("2001:db8::1").packed + RA_VECTOR[24:]
    for packet in (bad_hop, bad_sum, global_src, RA_VECTOR[:50], b""):
        assert s.receive(packet) is None
    assert s.invalid == 5 and s.config is None
    ns = nd.wrap(SERVER_LL, nd.ALL_NODES, nd.encode_ns(nd.NeighborSolicitation(SERVER_LL)))
    assert s.receive(ns) is None and s.ignored == 1


def test_address_in_wants_a_64_and_8_bytes() -> None:
    with pytest.raises(ValueError):
        address_in(IPv6Network("2001:db8::/56"), IID)
    with pytest.raises(ValueError):
        address_in(IPv6Network("2001:db8::/64"), IID[:7])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_receive_never_raises(data: bytes) -> None:
    s = RouterSolicitor(IID)
    s.receive(RA_VECTOR[:40] + data)
    s.receive(data)
