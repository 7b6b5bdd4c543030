"""IPv6 header codec, Internet checksum, extension-header walk and the session classifier."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.errors import ParseError
from sstpd.proto.ipv6.packet import (
    Ipv6Header,
    Verdict,
    checksum,
    classify,
    decode_ipv6,
    encode_ipv6,
    pseudo_header,
    upper_layer,
)

FUZZ = settings(max_examples=300, deadline=None)
PREFIX = IPv6Address("2001:db8:1:2::").packed[:8]
PEER_LL = IPv6Address("fe80::a8bb:ccdd:eeff:11")
GLOBAL = IPv6Address("2001:db8:1:2:1c2d:3e4f:5a6b:7c8d")  # a random (privacy) address
SERVER = IPv6Address("2001:db8::1")

addresses = st.binary(min_size=16, max_size=16).map(IPv6Address)


def packet(
    src: IPv6Address | str,
    dst: IPv6Address | str,
    next_header: int = 17,
    payload: bytes = b"\x00" * 8,
) -> bytes:
    header = Ipv6Header(IPv6Address(src), IPv6Address(dst), next_header)
    return encode_ipv6(header, payload)


# --------------------------------------------------------------------------- header codec


def test_header_layout() -> None:
    header = Ipv6Header(PEER_LL, SERVER, 58, hop_limit=255, traffic_class=0xB8, flow_label=0x12345)
    raw = encode_ipv6(header, b"abc")
    assert raw[:8] == bytes.fromhex("6b812345 0003 3a ff".replace(" ", ""))
    assert raw[8:24] == PEER_LL.packed and raw[24:40] == SERVER.packed and raw[40:] == b"abc"
    assert decode_ipv6(raw) == (header, b"abc")


@FUZZ
@given(
    src=addresses,
    dst=addresses,
    nh=st.integers(0, 255),
    hop=st.integers(0, 255),
    tc=st.integers(0, 255),
    flow=st.integers(0, 0xFFFFF),
    payload=st.binary(max_size=300),
)
def test_round_trip(
    src: IPv6Address, dst: IPv6Address, nh: int, hop: int, tc: int, flow: int, payload: bytes
) -> None:
    header = Ipv6Header(src, dst, nh, hop, tc, flow)
    assert decode_ipv6(encode_ipv6(header, payload)) == (header, payload)


def test_every_truncation_is_a_parse_error_and_padding_is_ignored() -> None:
    raw = packet(GLOBAL, SERVER, payload=b"0123456789")
    for n in range(len(raw)):
        with pytest.raises(ParseError):
            decode_ipv6(raw[:n])
    assert decode_ipv6(raw + b"\x00\x00")[1] == b"0123456789"


def test_wrong_version_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="version 4"):
        decode_ipv6(b"\x45" + bytes(39))


def test_oversized_payload_refused_on_encode() -> None:
    with pytest.raises(ValueError):
        encode_ipv6(Ipv6Header(SERVER, SERVER, 17), bytes(65536))


@FUZZ
@given(st.binary(max_size=120))
def test_decoder_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        decode_ipv6(data)


# --------------------------------------------------------------------------- checksum


def test_checksum_known_values() -> None:
    assert checksum(b"") == 0xFFFF
    # RFC 1071 §3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 -> complement 220d
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert checksum(b"\x01") == checksum(b"\x01\x00")  # odd length padded with zero


@FUZZ
@given(st.binary(max_size=200).map(lambda b: b + b"\x00" * (len(b) & 1)))
def test_a_checksummed_buffer_sums_to_zero(data: bytes) -> None:
    value = checksum(data)
    assert checksum(data + struct.pack("!H", value)) == 0


def test_pseudo_header_layout() -> None:
    raw = pseudo_header(PEER_LL, SERVER, 0x10203, 58)
    assert raw == PEER_LL.packed + SERVER.packed + bytes.fromhex(
        "00010203 000000 3a".replace(" ", "")
    )


# --------------------------------------------------------------------------- extension headers


def test_upper_layer_walks_hop_by_hop_and_destination_options() -> None:
    hbh = bytes([60, 0]) + bytes(6)  # Hop-by-Hop, next = Destination Options, 8 bytes
    dst_opts = bytes([58, 1]) + bytes(14)  # Destination Options, next = ICMPv6, 16 bytes
    raw = packet(GLOBAL, SERVER, 0, hbh + dst_opts + b"\x80\x00\x00\x00")
    assert upper_layer(raw) == (58, 40 + 8 + 16)
    assert upper_layer(packet(GLOBAL, SERVER, 6, b"")) == (6, 40)
    assert upper_layer(packet(GLOBAL, SERVER, 44, bytes(8))) == (44, 40)  # fragment: stop


def test_upper_layer_gives_up_on_cut_short_or_endless_chains() -> None:
    assert upper_layer(b"\x60" + bytes(38)) is None
    assert upper_layer(packet(GLOBAL, SERVER, 0, b"")) is None
    endless = bytes([0, 0]) + bytes(6)
    assert upper_layer(packet(GLOBAL, SERVER, 0, endless * 9)) is None


# --------------------------------------------------------------------------- classifier


def icmp(kind: int) -> bytes:
    return bytes([kind, 0, 0, 0]) + bytes(4)


CASES = [
    ("global data to the internet", packet(GLOBAL, "2606:4700::1111"), Verdict.FORWARD),
    ("ping to the server", packet(GLOBAL, SERVER, 58, icmp(128)), Verdict.FORWARD),
    ("ping from the IPV6CP-style address", packet("2001:db8:1:2::a8bb", SERVER), Verdict.FORWARD),
    ("source outside the /64", packet("2001:db8:1:3::1", SERVER), Verdict.SPOOFED),
    ("source of another /64 of the pool", packet("2001:db8:1:200::1", SERVER), Verdict.SPOOFED),
    ("IPv4-mapped source", packet("::ffff:10.0.0.1", SERVER), Verdict.SPOOFED),
    (
        "router solicitation from link-local",
        packet(PEER_LL, "ff02::2", 58, icmp(133)),
        Verdict.LOCAL,
    ),
    ("router solicitation from ::", packet("::", "ff02::2", 58, icmp(133)), Verdict.LOCAL),
    ("DAD from ::", packet("::", "ff02::1:ff6b:7c8d", 58, icmp(135)), Verdict.LOCAL),
    ("unspecified source to a routed address", packet("::", SERVER), Verdict.SPOOFED),
    ("another link-local address", packet("fe80::1:2", "ff02::2", 58, icmp(133)), Verdict.SPOOFED),
    ("DHCPv6 from link-local", packet(PEER_LL, "ff02::1:2", 17), Verdict.LOCAL),
    ("global source to link-local dst", packet(GLOBAL, "fe80::1", 17), Verdict.LOCAL),
    ("global source to ff02::16 (MLD)", packet(GLOBAL, "ff02::16", 58, icmp(143)), Verdict.LOCAL),
    ("NS to the server's global address", packet(GLOBAL, SERVER, 58, icmp(135)), Verdict.LOCAL),
    ("NA from a global address", packet(GLOBAL, SERVER, 58, icmp(136)), Verdict.LOCAL),
    ("global multicast is data", packet(GLOBAL, "ff0e::101", 17), Verdict.FORWARD),
    ("ICMPv6 without a body", packet(GLOBAL, SERVER, 58, b""), Verdict.FORWARD),
    ("truncated header", packet(GLOBAL, SERVER)[:39], Verdict.MALFORMED),
    ("IPv4 packet", b"\x45" + bytes(59), Verdict.MALFORMED),
    ("payload length past the end", packet(GLOBAL, SERVER)[:-1], Verdict.MALFORMED),
]


@pytest.mark.parametrize(("raw", "verdict"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(raw: bytes, verdict: Verdict) -> None:
    assert classify(raw, PREFIX, PEER_LL.packed) is verdict
    assert classify(memoryview(raw), PREFIX, PEER_LL.packed) is verdict


def test_any_link_local_source_is_local_when_the_peer_identifier_is_unknown() -> None:
    raw = packet("fe80::1:2", "ff02::2", 58, icmp(133))
    assert classify(raw, PREFIX, None) is Verdict.LOCAL


def test_nd_behind_extension_headers_stays_local() -> None:
    hbh = bytes([58, 0]) + bytes(6)
    raw = packet(GLOBAL, SERVER, 0, hbh + icmp(135))
    assert classify(raw, PREFIX, PEER_LL.packed) is Verdict.LOCAL
    raw = packet(GLOBAL, SERVER, 0, hbh + icmp(128))
    assert classify(raw, PREFIX, PEER_LL.packed) is Verdict.FORWARD
    assert classify(packet(GLOBAL, SERVER, 0, b"\x3a"), PREFIX, None) is Verdict.MALFORMED


@FUZZ
@given(st.binary(max_size=100), st.booleans())
def test_classifier_never_raises(data: bytes, in_prefix: bool) -> None:
    if in_prefix and len(data) >= 40:
        data = b"\x60" + data[1:8] + PREFIX + data[16:]
    assert classify(data, PREFIX, PEER_LL.packed) in set(Verdict)
