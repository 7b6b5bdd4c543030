"""ICMPv6 ND: the docs/protocol/ipv6-dhcp.md §3 RA vector, RS checks, NS/NA, timers."""

from __future__ import annotations

import contextlib
from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.errors import ParseError
from sstpd.proto.ipv6.nd import (
    ALL_NODES,
    ALL_ROUTERS,
    Advertiser,
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInformation,
    RouterAdvertisement,
    RouterSolicitation,
    advertise,
    decode_na,
    decode_ns,
    decode_ra,
    decode_rs,
    encode_na,
    encode_ns,
    encode_ra,
    encode_rs,
    session_advertisement,
    unwrap,
    wrap,
)
from sstpd.proto.ipv6.packet import Ipv6Header, encode_ipv6

FUZZ = settings(max_examples=300, deadline=None)
SERVER_LL = IPv6Address("fe80::1")
CLIENT_LL = IPv6Address("fe80::a8bb:ccdd:eeff:11")

# docs/protocol/ipv6-dhcp.md §3, checked there with scapy: RA from fe80::1 to ff02::1, hop limit 64,
# M=O=0, router lifetime 1800, PIO 2001:db8:1:2::/64 L+A valid 86400 preferred 14400,
# MTU 1400, RDNSS 2001:db8::53 (1800 s).
RA_VECTOR = bytes.fromhex(
    "60000000 0050 3a ff  fe800000000000000000000000000001  ff020000000000000000000000000001"
    "86 00 e114 40 00 0708 00000000 00000000"
    "03 04 40 c0 00015180 00003840 00000000 20010db8000100020000000000000000"
    "05 01 0000 00000578"
    "19 03 0000 00000708 20010db8000000000000000000000053".replace(" ", "")
)
RA_OF_VECTOR = RouterAdvertisement(
    cur_hop_limit=64,
    router_lifetime=1800,
    prefixes=(
        PrefixInformation(
            IPv6Network("2001:db8:1:2::/64"), valid_lifetime=86400, preferred_lifetime=14400
        ),
    ),
    mtu=1400,
    dns=(IPv6Address("2001:db8::53"),),
    dns_lifetime=1800,
)


def rs_packet(src: IPv6Address = CLIENT_LL, lla: bytes | None = None) -> bytes:
    return wrap(src, ALL_ROUTERS, encode_rs(RouterSolicitation(lla)))


# --------------------------------------------------------------------------- RA


def test_router_advertisement_matches_the_checked_vector_byte_for_byte() -> None:
    assert wrap(SERVER_LL, ALL_NODES, encode_ra(RA_OF_VECTOR)) == RA_VECTOR
    assert advertise(b"\x00" * 7 + b"\x01", ALL_NODES, RA_OF_VECTOR) == RA_VECTOR


def test_the_vector_decodes_back() -> None:
    header, kind, message = unwrap(RA_VECTOR)
    assert kind == 134 and header.src == SERVER_LL and header.hop_limit == 255
    assert decode_ra(header, message) == RA_OF_VECTOR


def test_every_truncation_of_the_vector_is_a_parse_error() -> None:
    for n in range(len(RA_VECTOR)):
        with pytest.raises(ParseError):
            header, _, message = unwrap(RA_VECTOR[:n])
            decode_ra(header, message)


def test_session_advertisement_defaults() -> None:
    prefix = IPv6Network("2001:db8:0:7::/64")
    ra = session_advertisement(prefix, mtu=1400, dns=(IPv6Address("2001:db8::53"),))
    assert ra.router_lifetime == 1800 and ra.dns_lifetime == 1800
    assert not ra.managed and not ra.other
    [pio] = ra.prefixes
    assert pio.prefix == prefix and pio.on_link and pio.autonomous
    assert (pio.valid_lifetime, pio.preferred_lifetime) == (2592000, 604800)
    raw = advertise(bytes.fromhex("0000000000000001"), CLIENT_LL, ra)
    header, _, message = unwrap(raw)
    assert header.dst == CLIENT_LL and decode_ra(header, message) == ra
    # no RDNSS option without DNS servers, and no MTU option without an MTU
    bare = encode_ra(session_advertisement(prefix, mtu=None))
    assert len(bare) == 16 + 32
    assert session_advertisement(prefix, mtu=None, interval=9000).router_lifetime == 9000


ra_strategy = st.builds(
    RouterAdvertisement,
    cur_hop_limit=st.integers(0, 255),
    managed=st.booleans(),
    other=st.booleans(),
    router_lifetime=st.integers(0, 0xFFFF),
    reachable_time=st.integers(0, 0xFFFFFFFF),
    retrans_timer=st.integers(0, 0xFFFFFFFF),
    prefixes=st.lists(
        st.builds(
            PrefixInformation,
            prefix=st.tuples(st.binary(min_size=16, max_size=16), st.integers(0, 128)).map(
                lambda t: IPv6Network((IPv6Address(t[0]), t[1]), strict=False)
            ),
            on_link=st.booleans(),
            autonomous=st.booleans(),
            valid_lifetime=st.integers(0, 0xFFFFFFFF),
            preferred_lifetime=st.integers(0, 0xFFFFFFFF),
        ),
        max_size=3,
    ).map(tuple),
    mtu=st.none() | st.integers(0, 0xFFFFFFFF),
    dns=st.lists(st.binary(min_size=16, max_size=16).map(IPv6Address), max_size=4).map(tuple),
    dns_lifetime=st.integers(0, 0xFFFFFFFF),
)


@FUZZ
@given(ra_strategy)
def test_ra_round_trip(ra: RouterAdvertisement) -> None:
    if not ra.dns:
        ra = RouterAdvertisement(**{**ra.__dict__, "dns_lifetime": 1800})
    header, kind, message = unwrap(wrap(SERVER_LL, ALL_NODES, encode_ra(ra)))
    assert kind == 134 and decode_ra(header, message) == ra


def test_ra_from_a_global_address_is_refused() -> None:
    header, _, message = unwrap(
        wrap(IPv6Address("2001:db8::1"), ALL_NODES, encode_ra(RA_OF_VECTOR))
    )
    with pytest.raises(ParseError, match="link-local"):
        decode_ra(header, message)


@pytest.mark.parametrize(
    "option",
    ["0303" + "00" * 22, "0502" + "00" * 14, "1901" + "00" * 6, "0304" + "81" + "00" * 29],
    ids=["pio-short", "mtu-long", "rdnss-empty", "prefix-length-129"],
)
def test_malformed_ra_options_are_parse_errors(option: str) -> None:
    message = encode_ra(RouterAdvertisement()) + bytes.fromhex(option)
    header, _, message = unwrap(wrap(SERVER_LL, ALL_NODES, message))
    with pytest.raises(ParseError):
        decode_ra(header, message)


def test_unknown_ra_options_are_skipped() -> None:
    message = encode_ra(RouterAdvertisement(mtu=1280)) + bytes.fromhex("1f01000000000000")
    header, _, message = unwrap(wrap(SERVER_LL, ALL_NODES, message))
    assert decode_ra(header, message).mtu == 1280


# --------------------------------------------------------------------------- RS checks


def test_windows_router_solicitation_is_accepted() -> None:
    header, kind, message = unwrap(rs_packet())
    assert kind == 133 and header.src == CLIENT_LL and header.dst == ALL_ROUTERS
    assert decode_rs(header, message) == RouterSolicitation()
    icmp = rs_packet()[40:]
    assert len(icmp) == 8 and icmp[:2] == b"\x85\x00" and icmp[4:] == bytes(4)


def test_rs_with_source_lla_round_trips_and_is_refused_from_unspecified() -> None:
    header, _, message = unwrap(rs_packet(lla=b"\x02\x00\x5e\x00\x53\x01"))
    assert decode_rs(header, message) == RouterSolicitation(b"\x02\x00\x5e\x00\x53\x01")
    header, _, message = unwrap(rs_packet(IPv6Address("::"), b"\x02\x00\x5e\x00\x53\x01"))
    with pytest.raises(ParseError, match="unspecified"):
        decode_rs(header, message)
    header, _, message = unwrap(rs_packet(IPv6Address("::")))
    assert decode_rs(header, message) == RouterSolicitation()


def with_byte(raw: bytes, offset: int, value: int) -> bytes:
    return raw[:offset] + bytes([value]) + raw[offset + 1 :]


def test_hop_limit_other_than_255_is_refused() -> None:
    with pytest.raises(ParseError, match="hop limit 254"):
        unwrap(with_byte(rs_packet(), 7, 254))


def test_bad_checksum_is_refused() -> None:
    raw = rs_packet()
    with pytest.raises(ParseError, match="checksum"):
        unwrap(with_byte(raw, 42, raw[42] ^ 1))
    with pytest.raises(ParseError, match="checksum"):
        unwrap(with_byte(raw, 8 + 15, raw[8 + 15] ^ 1))  # the pseudo-header covers the source


def test_code_type_length_and_option_checks() -> None:
    def rs_with(message: bytes) -> bytes:
        return wrap(CLIENT_LL, ALL_ROUTERS, message)

    with pytest.raises(ParseError, match="code 1"):
        unwrap(rs_with(bytes([133, 1]) + bytes(6)))
    with pytest.raises(ParseError, match="at least 8"):
        unwrap(rs_with(bytes([133, 0]) + bytes(4)))
    with pytest.raises(ParseError, match="type 128"):
        unwrap(rs_with(bytes([128, 0]) + bytes(6)))
    with pytest.raises(ParseError, match="bad length 0"):
        unwrap(rs_with(bytes([133, 0]) + bytes(6) + bytes([1, 0]) + bytes(6)))
    with pytest.raises(ParseError, match="bad length 2"):
        unwrap(rs_with(bytes([133, 0]) + bytes(6) + bytes([1, 2]) + bytes(6)))
    with pytest.raises(ParseError, match="truncated"):
        unwrap(rs_with(bytes([133, 0]) + bytes(6) + b"\x01"))
    udp = encode_ipv6(Ipv6Header(CLIENT_LL, ALL_ROUTERS, 17, 255), bytes(8))
    with pytest.raises(ParseError, match="not ICMPv6"):
        unwrap(udp)
    with pytest.raises(ParseError, match="shorter than 4"):
        unwrap(encode_ipv6(Ipv6Header(CLIENT_LL, ALL_ROUTERS, 58, 255), b"\x85"))


def test_decoders_check_the_message_type() -> None:
    header, _, message = unwrap(rs_packet())
    with pytest.raises(ParseError):
        decode_ra(header, message)
    with pytest.raises(ValueError):
        wrap(SERVER_LL, ALL_NODES, b"\x86")


# --------------------------------------------------------------------------- NS / NA


def test_neighbor_solicitation_and_advertisement_round_trip() -> None:
    ns = NeighborSolicitation(SERVER_LL, b"\x02\x00\x5e\x00\x53\x01")
    header, kind, message = unwrap(wrap(CLIENT_LL, SERVER_LL, encode_ns(ns)))
    assert kind == 135 and decode_ns(header, message) == ns
    na = NeighborAdvertisement(SERVER_LL)
    raw = wrap(SERVER_LL, CLIENT_LL, encode_na(na))
    assert raw[40] == 136 and raw[44] == 0xE0  # R, S and O set
    header, kind, message = unwrap(raw)
    assert kind == 136 and decode_na(header, message) == na
    quiet = NeighborAdvertisement(SERVER_LL, router=False, solicited=False, override=False)
    header, _, message = unwrap(wrap(SERVER_LL, ALL_NODES, encode_na(quiet)))
    assert decode_na(header, message) == quiet


def test_dad_and_multicast_target_rules() -> None:
    target = IPv6Address("2001:db8:1:2:1c2d:3e4f:5a6b:7c8d")
    group = IPv6Address("ff02::1:ff6b:7c8d")
    header, _, message = unwrap(
        wrap(IPv6Address("::"), group, encode_ns(NeighborSolicitation(target)))
    )
    assert decode_ns(header, message).target == target
    for bad in (
        wrap(IPv6Address("::"), ALL_NODES, encode_ns(NeighborSolicitation(target))),
        wrap(IPv6Address("::"), group, encode_ns(NeighborSolicitation(target, bytes(6)))),
        wrap(CLIENT_LL, SERVER_LL, encode_ns(NeighborSolicitation(ALL_NODES))),
    ):
        header, _, message = unwrap(bad)
        with pytest.raises(ParseError):
            decode_ns(header, message)
    for bad in (
        wrap(SERVER_LL, ALL_NODES, encode_na(NeighborAdvertisement(SERVER_LL))),
        wrap(SERVER_LL, CLIENT_LL, encode_na(NeighborAdvertisement(ALL_NODES))),
    ):
        header, _, message = unwrap(bad)
        with pytest.raises(ParseError):
            decode_na(header, message)


# --------------------------------------------------------------------------- fuzz

DECODERS = {133: decode_rs, 134: decode_ra, 135: decode_ns, 136: decode_na}


@FUZZ
@given(st.binary(max_size=120))
def test_unwrap_raises_only_parse_error_on_raw_bytes(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        unwrap(data)


@FUZZ
@given(kind=st.sampled_from(sorted(DECODERS)), body=st.binary(max_size=120), src=st.booleans())
def test_decoders_raise_only_parse_error_on_checksummed_garbage(
    kind: int, body: bytes, src: bool
) -> None:
    # A valid checksum and hop limit get the fuzz past the envelope into the decoders.
    raw = wrap(CLIENT_LL if src else IPv6Address("::"), ALL_NODES, bytes([kind, 0, 0, 0]) + body)
    try:
        header, found, message = unwrap(raw)
        DECODERS[found](header, message)
    except ParseError:
        pass


# --------------------------------------------------------------------------- timers


def test_advertiser_sends_five_initial_ras_then_every_interval() -> None:
    adv = Advertiser()
    assert adv.get_timer() is None and not adv.handle_timer(0.0)
    adv.start(100.0)
    times = []
    while len(times) < 7:
        deadline = adv.get_timer()
        assert deadline is not None
        assert not adv.handle_timer(deadline - 0.5)
        assert adv.handle_timer(deadline)
        times.append(deadline)
    assert times == [100.0, 103.0, 106.0, 109.0, 112.0, 712.0, 1312.0]


def test_router_solicitation_flood_is_rate_limited() -> None:
    adv = Advertiser(min_delay=3.0)
    assert not adv.solicited(0.0)  # not started: nothing to advertise
    adv.start(0.0)
    assert adv.handle_timer(0.0)
    answered = [adv.solicited(0.5 * i) for i in range(1, 21)]  # 20 RS in 10 s
    assert answered.count(True) == 3 and adv.rate_limited == 17
    assert adv.sent == 4
    adv.stop()
    assert adv.get_timer() is None and not adv.solicited(100.0)
