"""DHCPINFORM -> DHCPACK: the docs/protocol/ipv6-dhcp.md §10 vector, RFC 3442 encodings, IPv4/UDP
envelope with its checksums, and everything a client can get wrong."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.errors import ParseError
from sstpd.proto.dhcp import (
    MAX_MESSAGE,
    AckInfo,
    BootpMessage,
    InformSettings,
    IPv4Udp,
    answer_inform,
    build_ack,
    build_inform,
    decode_bootp,
    decode_classless_routes,
    decode_ipv4_udp,
    encode_bootp,
    encode_classless_routes,
    encode_ipv4_udp,
    is_dhcp_reply,
    is_dhcp_request,
    parse_ack,
    parse_inform,
)

FUZZ = settings(max_examples=300, deadline=None)
SERVER = IPv4Address("10.8.0.1")
CLIENT = IPv4Address("10.8.0.5")
CHADDR = bytes.fromhex("001122334455") + bytes(10)
BROADCAST = IPv4Address("255.255.255.255")
# What a Windows RAS client's DHCPINFORM carries (docs/protocol/ipv6-dhcp.md §6, SoftEther IPC.c):
# client id, host name, vendor class "MSFT 5.0", user class "RRAS.Microsoft", and the
# parameter request list 1,15,3,6,44,46,47,31,33,121,249,43.
WINDOWS_OPTIONS = {
    53: b"\x08",
    61: b"\x01" + CHADDR[:6],
    12: b"WIN11-LAPTOP",
    60: b"MSFT 5.0",
    77: b"RRAS.Microsoft",
    55: bytes([1, 15, 3, 6, 44, 46, 47, 31, 33, 121, 249, 43]),
}
# docs/protocol/ipv6-dhcp.md §10 (decoded by scapy, checksums verified there): the options part.
ACK_OPTIONS_VECTOR = (
    bytes.fromhex("350105 36040a080001 0104ffffffff 0f0c".replace(" ", ""))
    + b"corp.example"
    + bytes.fromhex(
        "06040a080001790f100a110a08000118c0a8320a080001f90f100a110a08000118c0a8320a080001ff"
    )
)


def inform(**overrides: object) -> BootpMessage:
    fields: dict[str, object] = {
        "op": 1,
        "xid": 0x12345678,
        "chaddr": CHADDR,
        "ciaddr": CLIENT,
        "options": dict(WINDOWS_OPTIONS),
    }
    fields.update(overrides)
    return BootpMessage(**fields)  # type: ignore[arg-type]


def inform_packet(
    message: BootpMessage | None = None,
    *,
    src: IPv4Address = CLIENT,
    ports: tuple[int, int] = (68, 67),
    pad_to: int = 300,
) -> bytes:
    payload = encode_bootp(message or inform(), pad_to=pad_to)
    return encode_ipv4_udp(IPv4Udp(src, BROADCAST, ports[0], ports[1], payload, ttl=128))


def vector_ack() -> bytes:
    return build_ack(
        inform(options={53: b"\x08"}),
        server=SERVER,
        domain="corp.example",
        dns=(SERVER,),
        routes=(IPv4Network("10.17.0.0/16"), IPv4Network("192.168.50.0/24")),
    )


def ones_complement_ok(data: bytes) -> bool:
    """An independent check: the 16-bit one's complement sum is 0xFFFF."""
    data += b"\x00" * (len(data) & 1)
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


# --------------------------------------------------------------------------- the §3.5 vector


def test_dhcpack_matches_the_checked_vector() -> None:
    raw = vector_ack()
    assert len(raw) == 338
    assert raw[28 + 240 :] == ACK_OPTIONS_VECTOR  # 310-byte BOOTP message: no padding needed
    # IPv4: version/IHL, total length, TTL 64, UDP, server -> ciaddr
    assert raw[0] == 0x45 and struct.unpack("!H", raw[2:4])[0] == 338
    assert raw[8] == 64 and raw[9] == 17
    assert raw[12:16] == SERVER.packed and raw[16:20] == CLIENT.packed
    assert ones_complement_ok(raw[:20])
    # UDP 67 -> 68, length, checksum over the pseudo-header
    assert raw[20:26] == struct.pack("!HHH", 67, 68, 318)
    pseudo = SERVER.packed + CLIENT.packed + struct.pack("!BBH", 0, 17, 318)
    assert ones_complement_ok(pseudo + raw[20:])
    # BOOTP: BOOTREPLY, htype/hlen copied, hops 0, xid, secs 0, ciaddr, yiaddr = siaddr = 0
    bootp = raw[28:]
    assert bootp[:4] == b"\x02\x01\x06\x00" and bootp[4:8] == b"\x12\x34\x56\x78"
    assert bootp[8:10] == b"\x00\x00"
    assert bootp[12:16] == CLIENT.packed and bootp[16:24] == bytes(8)
    assert bootp[28:44] == CHADDR and bootp[44:236] == bytes(192)
    assert bootp[236:240] == b"\x63\x82\x53\x63"


def test_the_ack_decodes_back() -> None:
    d = decode_ipv4_udp(vector_ack())
    assert (d.src, d.dst, d.src_port, d.dst_port) == (SERVER, CLIENT, 67, 68)
    m = decode_bootp(d.payload)
    assert m.op == 2 and m.message_type == 5 and m.xid == 0x12345678
    assert list(m.options) == [53, 54, 1, 15, 6, 121, 249]
    assert 51 not in m.options and 3 not in m.options  # no lease time, no router
    assert m.options[121] == m.options[249]
    assert decode_classless_routes(m.options[121]) == [
        (IPv4Network("10.17.0.0/16"), SERVER),
        (IPv4Network("192.168.50.0/24"), SERVER),
    ]


def test_minimal_ack_is_padded_to_300_bytes_and_omits_unset_options() -> None:
    raw = build_ack(inform(), server=SERVER)
    assert len(raw) == 28 + 300
    m = decode_bootp(decode_ipv4_udp(raw).payload)
    assert list(m.options) == [53, 54, 1]
    assert m.options[1] == b"\xff\xff\xff\xff"


# --------------------------------------------------------------------------- RFC 3442

RFC3442_TABLE = [  # RFC 3442 §3 descriptor table, plus docs/protocol/ipv6-dhcp.md §9's rows
    ("0.0.0.0/0", "00"),
    ("10.0.0.0/8", "080a"),
    ("10.0.0.0/24", "180a0000"),
    ("10.17.0.0/16", "100a11"),
    ("10.27.129.0/24", "180a1b81"),
    ("10.229.0.128/25", "190ae50080"),
    ("10.198.122.47/32", "200ac67a2f"),
    ("128.0.0.0/1", "0180"),
    ("10.0.0.0/9", "090a00"),
    ("172.16.0.0/12", "0cac10"),
    ("192.168.1.0/31", "1fc0a80100"),
]


@pytest.mark.parametrize(("network", "descriptor"), RFC3442_TABLE)
def test_rfc3442_descriptors(network: str, descriptor: str) -> None:
    router = IPv4Address("10.8.0.1")
    encoded = encode_classless_routes([(IPv4Network(network), router)])
    assert encoded == bytes.fromhex(descriptor) + router.packed
    assert decode_classless_routes(encoded) == [(IPv4Network(network), router)]


def test_rfc3442_known_answers_with_routers() -> None:
    # the Nuage/OpenStack known-answer values quoted in docs/protocol/ipv6-dhcp.md §9
    assert encode_classless_routes(
        [(IPv4Network("10.17.0.0/16"), IPv4Address("10.11.12.13"))]
    ) == bytes.fromhex("100a110a0b0c0d")
    assert encode_classless_routes(
        [(IPv4Network("10.229.0.128/25"), IPv4Address("10.11.12.14"))]
    ) == bytes.fromhex("190ae500800a0b0c0e")


@pytest.mark.parametrize("data", ["21" + "00" * 8, "18c0a8", "18c0a80100", "080a0a0800"], ids=str)
def test_rfc3442_malformed(data: str) -> None:
    with pytest.raises(ParseError):
        decode_classless_routes(bytes.fromhex(data))


networks = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
    lambda t: IPv4Network((t[0], t[1]), strict=False)
)


@FUZZ
@given(st.lists(st.tuples(networks, st.integers(0, 2**32 - 1).map(IPv4Address)), max_size=6))
def test_rfc3442_round_trip(routes: list[tuple[IPv4Network, IPv4Address]]) -> None:
    assert decode_classless_routes(encode_classless_routes(routes)) == routes


@FUZZ
@given(st.binary(max_size=60))
def test_rfc3442_decoder_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        decode_classless_routes(data)


# --------------------------------------------------------------------------- the request


def test_windows_inform_is_recognised_and_accepted() -> None:
    raw = inform_packet()
    assert is_dhcp_request(raw) and is_dhcp_request(memoryview(raw))
    m = parse_inform(raw, CLIENT)
    assert m.xid == 0x12345678 and m.ciaddr == CLIENT and m.chaddr == CHADDR
    assert m.options[60] == b"MSFT 5.0" and m.options[55][-3:] == bytes([121, 249, 43])
    ack = decode_bootp(decode_ipv4_udp(build_ack(m, server=SERVER)).payload)
    assert ack.xid == m.xid and ack.chaddr == m.chaddr


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (inform_packet(inform(ciaddr=IPv4Address("10.8.0.6"))), "ciaddr 10.8.0.6"),
        (inform_packet(inform(ciaddr=IPv4Address(0))), "ciaddr 0.0.0.0"),
        (inform_packet(src=IPv4Address("10.8.0.6")), "from 10.8.0.6"),
        (inform_packet(ports=(67, 67)), "UDP 67 -> 67"),
        (inform_packet(ports=(68, 68)), "UDP 68 -> 68"),
        (inform_packet(inform(options={53: b"\x01"})), "message type 1"),  # DISCOVER
        (inform_packet(inform(options={})), "message type None"),
        (inform_packet(inform(op=2)), "op 2"),
        (inform_packet(inform(hlen=17)), "hardware address length 17"),
    ],
    ids=[
        "ciaddr",
        "ciaddr-zero",
        "source",
        "sport",
        "dport",
        "discover",
        "no-type",
        "reply",
        "hlen",
    ],
)
def test_requests_that_are_not_the_sessions_inform_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_inform(raw, CLIENT)


def flip(raw: bytes, offset: int) -> bytes:
    return raw[:offset] + bytes([raw[offset] ^ 0x01]) + raw[offset + 1 :]


def test_checksums_fragments_and_protocol_are_checked() -> None:
    raw = inform_packet()
    with pytest.raises(ParseError, match="IPv4 header checksum"):
        decode_ipv4_udp(flip(raw, 8))
    with pytest.raises(ParseError, match="UDP checksum"):
        decode_ipv4_udp(flip(raw, 100))
    no_udp_checksum = raw[:26] + b"\x00\x00" + flip(raw, 100)[28:]
    assert decode_ipv4_udp(no_udp_checksum).payload[72] == raw[100] ^ 1  # 0 = not computed
    for frag in (b"\x20\x00", b"\x00\x01"):  # more-fragments, non-zero offset
        mangled = raw[:6] + frag + raw[8:10] + b"\x00\x00" + raw[12:]
        fixed = _fix_ip_checksum(mangled)
        with pytest.raises(ParseError, match="fragmented"):
            decode_ipv4_udp(fixed)
    tcp = _fix_ip_checksum(raw[:9] + b"\x06" + b"\x00\x00" + raw[12:])
    with pytest.raises(ParseError, match="protocol 6"):
        decode_ipv4_udp(tcp)
    with pytest.raises(ParseError, match="not an IPv4 header"):
        decode_ipv4_udp(b"\x60" + raw[1:])


def _fix_ip_checksum(raw: bytes) -> bytes:
    header = raw[:10] + b"\x00\x00" + raw[12:20]
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return header[:10] + struct.pack("!H", ~total & 0xFFFF) + raw[12:]


def test_every_truncation_is_a_parse_error() -> None:
    raw = inform_packet()
    for n in range(len(raw)):
        with pytest.raises(ParseError):
            parse_inform(raw[:n], CLIENT)


def test_truncation_inside_the_udp_payload_is_caught_by_bootp() -> None:
    # a consistent IPv4/UDP envelope around a cut-short BOOTP message
    payload = encode_bootp(inform())
    for n in (0, 100, 239):
        raw = encode_ipv4_udp(IPv4Udp(CLIENT, BROADCAST, 68, 67, payload[:n]))
        with pytest.raises(ParseError, match="truncated"):
            parse_inform(raw, CLIENT)


def test_oversized_message_is_refused() -> None:
    raw = inform_packet(pad_to=MAX_MESSAGE + 1)
    with pytest.raises(ParseError, match="more than 1500"):
        parse_inform(raw, CLIENT)
    assert parse_inform(inform_packet(pad_to=MAX_MESSAGE), CLIENT).xid == 0x12345678


def test_malformed_options() -> None:
    fixed = encode_bootp(inform(options={}))[:240]
    for options, reason in [
        (b"\x35\x01\x08", "without an End"),
        (b"\x35\x05\x08\xff", "truncated"),
        (b"\x35", "truncated"),
    ]:
        with pytest.raises(ParseError, match=reason):
            decode_bootp(fixed + options)
    with pytest.raises(ParseError, match="magic cookie"):
        decode_bootp(fixed[:236] + b"\x63\x82\x53\x64\xff")


def test_padding_and_repeated_options() -> None:
    fixed = encode_bootp(inform(options={}))[:240]
    m = decode_bootp(fixed + b"\x00\x00\x0c\x02ab\x00\x0c\x02cd\x35\x01\x08\xff" + b"junk")
    assert m.options == {12: b"abcd", 53: b"\x08"}  # RFC 3396 concatenation


def test_is_dhcp_request_cheap_test() -> None:
    raw = inform_packet()
    assert not is_dhcp_request(raw[:27])
    assert not is_dhcp_request(b"\x60" + raw[1:])
    assert not is_dhcp_request(raw[:9] + b"\x06" + raw[10:])
    assert not is_dhcp_request(inform_packet(ports=(68, 68)))
    assert not is_dhcp_request(raw[:22] + b"\x01\x43" + raw[24:])  # port 323
    with_options = b"\x46" + raw[1:20] + b"\x01\x01\x01\x00" + raw[20:]  # IHL 6
    assert is_dhcp_request(with_options)


def test_encoders_refuse_what_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode_bootp(inform(options={121: bytes(256)}))
    with pytest.raises(ValueError):
        encode_bootp(inform(options={255: b""}))
    with pytest.raises(ValueError):
        encode_ipv4_udp(IPv4Udp(CLIENT, SERVER, 1, 2, bytes(65508)))


# --------------------------------------------------------------------------- round trips, fuzz

options_strategy = st.dictionaries(
    st.integers(1, 254), st.binary(min_size=1, max_size=40), max_size=6
)


@FUZZ
@given(
    xid=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 0xFFFF),
    chaddr=st.binary(min_size=16, max_size=16),
    ciaddr=st.integers(0, 2**32 - 1).map(IPv4Address),
    options=options_strategy,
    pad_to=st.integers(0, 600),
)
def test_bootp_round_trip(
    xid: int, flags: int, chaddr: bytes, ciaddr: IPv4Address, options: dict[int, bytes], pad_to: int
) -> None:
    m = BootpMessage(op=1, xid=xid, flags=flags, chaddr=chaddr, ciaddr=ciaddr, options=options)
    assert decode_bootp(encode_bootp(m, pad_to=pad_to)) == m


@FUZZ
@given(
    src=st.integers(0, 2**32 - 1).map(IPv4Address),
    dst=st.integers(0, 2**32 - 1).map(IPv4Address),
    ports=st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
    payload=st.binary(max_size=200),
    ttl=st.integers(0, 255),
    ident=st.integers(0, 65535),
)
def test_ipv4_udp_round_trip(
    src: IPv4Address,
    dst: IPv4Address,
    ports: tuple[int, int],
    payload: bytes,
    ttl: int,
    ident: int,
) -> None:
    d = IPv4Udp(src, dst, ports[0], ports[1], payload, ttl, ident)
    raw = encode_ipv4_udp(d)
    assert decode_ipv4_udp(raw) == d
    assert decode_ipv4_udp(raw + b"\x00\x00\x00") == d  # link padding ignored


@FUZZ
@given(st.binary(max_size=400))
def test_decoders_raise_only_parse_error(data: bytes) -> None:
    for decode in (decode_ipv4_udp, decode_bootp):
        with contextlib.suppress(ParseError):
            decode(data)
    with contextlib.suppress(ParseError):
        parse_inform(data, CLIENT)
    assert is_dhcp_request(data) in (True, False)


@FUZZ
@given(body=st.binary(max_size=400), options=st.binary(max_size=80))
def test_parse_inform_raises_only_parse_error_on_well_enveloped_garbage(
    body: bytes, options: bytes
) -> None:
    # Valid IPv4/UDP and a BOOTP header so the fuzz reaches the option and field checks.
    for payload in (body, encode_bootp(inform(options={}))[:240] + options):
        raw = encode_ipv4_udp(IPv4Udp(CLIENT, BROADCAST, 68, 67, payload))
        with contextlib.suppress(ParseError):
            parse_inform(raw, CLIENT)


# --------------------------------------------------------------------------- answer_inform

PUSHED = InformSettings(
    domain="corp.example",
    dns=(SERVER,),
    routes=(IPv4Network("10.17.0.0/16"), IPv4Network("192.168.50.0/24")),
)


def test_answer_inform_gives_the_checked_vector_for_a_windows_inform() -> None:
    raw = answer_inform(inform_packet(), session=CLIENT, server=SERVER, settings=PUSHED)
    assert raw[28 + 240 :] == ACK_OPTIONS_VECTOR
    assert raw[12:16] == SERVER.packed and raw[16:20] == CLIENT.packed


@pytest.mark.parametrize(
    "raw",
    [
        inform_packet(inform(ciaddr=IPv4Address("10.8.0.6"))),
        inform_packet(src=IPv4Address("10.8.0.6")),
        inform_packet()[:200],
        inform_packet(pad_to=MAX_MESSAGE + 1),
    ],
    ids=["foreign-ciaddr", "foreign-source", "truncated", "oversized"],
)
def test_answer_inform_refuses_what_is_not_this_sessions_inform(raw: bytes) -> None:
    with pytest.raises(ParseError):
        answer_inform(raw, session=CLIENT, server=SERVER, settings=PUSHED)


# --------------------------------------------------------------------------- client side


def test_client_inform_is_what_the_server_accepts() -> None:
    raw = build_inform(CLIENT, 0xCAFEF00D, bytes.fromhex("020000000001"))
    assert is_dhcp_request(raw) and not is_dhcp_reply(raw)
    d = decode_ipv4_udp(raw)
    assert (d.src, d.dst, d.src_port, d.dst_port) == (CLIENT, BROADCAST, 68, 67)
    m = parse_inform(raw, CLIENT)
    assert m.xid == 0xCAFEF00D and m.hlen == 6 and m.chaddr[:6] == bytes.fromhex("020000000001")
    assert set(m.options[55]) >= {1, 6, 15, 121, 249}
    assert 50 not in m.options  # no requested address: INFORM keeps the IPCP one


def test_client_reads_the_vector_ack() -> None:
    raw = vector_ack()
    assert is_dhcp_reply(raw) and not is_dhcp_request(raw)
    info = parse_ack(raw, CLIENT, 0x12345678)
    assert info == AckInfo(
        server=SERVER,
        routes=(
            (IPv4Network("10.17.0.0/16"), SERVER),
            (IPv4Network("192.168.50.0/24"), SERVER),
        ),
        domain="corp.example",
        dns=(SERVER,),
    )


def _ack_with(options: dict[int, bytes], *, xid: int = 1, dst: IPv4Address = CLIENT) -> bytes:
    m = BootpMessage(op=2, xid=xid, ciaddr=CLIENT, options=options)
    return encode_ipv4_udp(IPv4Udp(SERVER, dst, 67, 68, encode_bootp(m)))


def test_client_takes_249_only_without_121_and_nothing_without_either() -> None:
    base = {53: b"\x05", 54: SERVER.packed}
    r121 = encode_classless_routes([(IPv4Network("10.1.0.0/16"), SERVER)])
    r249 = encode_classless_routes([(IPv4Network("10.2.0.0/16"), SERVER)])
    both = parse_ack(_ack_with({**base, 121: r121, 249: r249}), CLIENT, 1)
    assert [n for n, _ in both.routes] == [IPv4Network("10.1.0.0/16")]  # 121 wins
    only249 = parse_ack(_ack_with({**base, 249: r249}), CLIENT, 1)
    assert [n for n, _ in only249.routes] == [IPv4Network("10.2.0.0/16")]
    none = parse_ack(_ack_with(base), CLIENT, 1)
    assert none.routes == () and none.domain == "" and none.dns == ()
    assert parse_ack(_ack_with(base, dst=BROADCAST), CLIENT, 1).server == SERVER


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_ack_with({53: b"\x05", 54: SERVER.packed}, xid=2), "transaction 0x2"),
        (_ack_with({53: b"\x06", 54: SERVER.packed}), "message type 6"),  # NAK
        (_ack_with({53: b"\x05"}), "server identifier"),
        (_ack_with({53: b"\x05", 54: SERVER.packed}, dst=SERVER), "reply to 10.8.0.1"),
        (_ack_with({53: b"\x05", 54: SERVER.packed, 6: b"\x01\x02"}), "DNS option"),
        (_ack_with({53: b"\x05", 54: SERVER.packed, 15: b"\xff"}), "not ASCII"),
        (_ack_with({53: b"\x05", 54: SERVER.packed, 121: b"\x21"}), "width 33"),
        (inform_packet(), "not DHCP server -> client"),
    ],
    ids=["xid", "nak", "no-server-id", "dst", "dns", "domain", "routes", "request"],
)
def test_client_refuses_bad_answers(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_ack(raw, CLIENT, 1)


@FUZZ
@given(st.binary(max_size=400))
def test_parse_ack_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_ack(data, CLIENT, 1)
    assert is_dhcp_reply(data) in (True, False)
