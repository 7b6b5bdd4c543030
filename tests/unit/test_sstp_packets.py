"""SSTP packet codec: vectors, round trips, truncation, byte-at-a-time framing, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sstpd.errors import ParseError
from sstpd.proto.sstp.constants import (
    MAX_PACKET_SIZE,
    SSTP_VERSION,
    AttributeId,
    HashProtocol,
    MessageType,
    Status,
)
from sstpd.proto.sstp.packets import (
    HEADER,
    ControlMessage,
    CryptoBinding,
    CryptoBindingRequest,
    EncapsulatedProtocolId,
    PacketReader,
    StatusInfo,
    UnknownAttribute,
    decode_control,
    encode_control,
    encode_data,
    parse_header,
)

NONCE = bytes(range(32))
# docs/protocol/sstp.md §3.4 / [MS-SSTP] §4.7
CONNECT_REQUEST = bytes.fromhex("1001000e 0001 0001 00010006 0001".replace(" ", ""))
SAMPLES: list[tuple[ControlMessage, bytes]] = [
    (
        ControlMessage(MessageType.CALL_CONNECT_REQUEST, (EncapsulatedProtocolId(1),)),
        CONNECT_REQUEST,
    ),
    (
        ControlMessage(MessageType.CALL_CONNECT_ACK, (CryptoBindingRequest(3, NONCE),)),
        bytes.fromhex("10010030 0002 0001 00040028 00000003".replace(" ", "")) + NONCE,
    ),
    (
        ControlMessage(
            MessageType.CALL_CONNECT_NAK,
            (
                StatusInfo(AttributeId.ENCAPSULATED_PROTOCOL_ID, Status.VALUE_NOT_SUPPORTED, b"\2"),
                StatusInfo(AttributeId.STATUS_INFO, Status.REQUIRED_ATTRIBUTE_MISSING),
            ),
        ),
        bytes.fromhex(
            "10010021 0003 0002 0002000d 00000001 00000004 02 0002000c 00000002 0000000a"
            .replace(" ", "")
        ),
    ),
    (
        ControlMessage(
            MessageType.CALL_CONNECTED,
            (CryptoBinding(2, NONCE, b"\xaa" * 32, b"\xbb" * 32),),
        ),
        bytes.fromhex("10010070 0004 0001 00030068 00000002".replace(" ", ""))
        + NONCE
        + b"\xaa" * 32
        + b"\xbb" * 32,
    ),
    (
        ControlMessage(
            MessageType.CALL_ABORT,
            (StatusInfo(AttributeId.CRYPTO_BINDING, Status.VALUE_NOT_SUPPORTED),),
        ),
        bytes.fromhex("10010014 0005 0001 0002000c 00000003 00000004".replace(" ", "")),
    ),
    (
        ControlMessage(MessageType.CALL_DISCONNECT, (StatusInfo(0, 0),)),
        bytes.fromhex("10010014 0006 0001 0002000c 00000000 00000000".replace(" ", "")),
    ),
    (ControlMessage(MessageType.CALL_ABORT), bytes.fromhex("10010008 0005 0000".replace(" ", ""))),
    (ControlMessage(MessageType.CALL_DISCONNECT_ACK), bytes.fromhex("1001000800070000")),
    (ControlMessage(MessageType.ECHO_REQUEST), bytes.fromhex("1001000800080000")),
    (ControlMessage(MessageType.ECHO_RESPONSE), bytes.fromhex("1001000800090000")),
    (
        ControlMessage(0x00AB, (UnknownAttribute(0x77, b"xyz"),)),
        bytes.fromhex("1001000f 00ab 0001 00770007".replace(" ", "")) + b"xyz",
    ),
]


@pytest.mark.parametrize(("msg", "wire"), SAMPLES)
def test_control_vectors_round_trip(msg: ControlMessage, wire: bytes) -> None:
    assert encode_control(msg) == wire
    assert parse_header(wire) == (True, len(wire))
    assert decode_control(wire[4:]) == msg


@pytest.mark.parametrize(("msg", "wire"), SAMPLES)
def test_control_truncation_raises(msg: ControlMessage, wire: bytes) -> None:
    for cut in range(4, len(wire)):
        with pytest.raises(ParseError):
            decode_control(wire[4:cut])
    with pytest.raises(ParseError):
        decode_control(wire[4:] + b"\0")  # trailing byte after the last attribute


def test_known_type_decodes_to_enum_unknown_stays_int() -> None:
    assert decode_control(bytes.fromhex("00080000")).type is MessageType.ECHO_REQUEST
    unknown = decode_control(bytes.fromhex("00ff0000")).type
    assert unknown == 0xFF and not isinstance(unknown, MessageType)


def test_data_packet() -> None:
    frame = b"\xff\x03\xc0\x21\x01\x01\x00\x04"
    wire = encode_data(frame)
    assert wire == b"\x10\x00\x00\x0c" + frame
    assert parse_header(wire) == (False, 12)
    with pytest.raises(ValueError):
        encode_data(bytes(MAX_PACKET_SIZE - 3))
    assert len(encode_data(bytes(MAX_PACKET_SIZE - 4))) == MAX_PACKET_SIZE


def test_header_reserved_bits_masked_and_errors() -> None:
    assert parse_header(b"\x10\xff\xf0\x08") == (True, 8)
    assert parse_header(b"\x00\x10\x10\x00\x09", offset=1) == (False, 9)
    for bad in (b"\x11\x01\x00\x08", b"\x20\x01\x00\x08", b"\x10\x01\x00\x03", b"\x10\x01"):
        with pytest.raises(ParseError):
            parse_header(bad)


@pytest.mark.parametrize(
    ("attr_id", "value"),
    [
        (AttributeId.ENCAPSULATED_PROTOCOL_ID, b"\0\1\0"),
        (AttributeId.ENCAPSULATED_PROTOCOL_ID, b""),
        (AttributeId.CRYPTO_BINDING_REQ, bytes(35)),
        (AttributeId.CRYPTO_BINDING, bytes(99)),
        (AttributeId.STATUS_INFO, bytes(7)),
        (AttributeId.STATUS_INFO, bytes(8 + 65)),
        (0x00, b""),
        (0x42, b"abc"),
    ],
)
def test_wrong_length_or_unknown_attribute_kept_raw(attr_id: int, value: bytes) -> None:
    msg = ControlMessage(MessageType.CALL_CONNECT_REQUEST, (UnknownAttribute(attr_id, value),))
    assert decode_control(encode_control(msg)[4:]) == msg


def test_status_info_value_limit() -> None:
    info = StatusInfo(1, 4, bytes(64))
    msg = ControlMessage(MessageType.CALL_CONNECT_NAK, (info,))
    assert decode_control(encode_control(msg)[4:]) == msg
    with pytest.raises(ValueError):
        StatusInfo(1, 4, bytes(65))


def test_attribute_length_reserved_bits_masked() -> None:
    body = bytes.fromhex("00010001 0001f006 0001".replace(" ", ""))
    assert decode_control(body).attributes == (EncapsulatedProtocolId(1),)


@pytest.mark.parametrize(
    "body",
    [
        "0001",  # no attribute count
        "0001 0001",  # promised attribute missing
        "0001 0001 0001",  # truncated attribute header
        "0001 0001 00010003 00",  # attribute length < 4
        "0001 0001 00010010 0001",  # attribute longer than the body
        "0001 0000 00010006 0001",  # attribute beyond the count
    ],
)
def test_bad_attribute_framing(body: str) -> None:
    with pytest.raises(ParseError):
        decode_control(bytes.fromhex(body.replace(" ", "")))


def test_encoder_rejects_bad_field_sizes() -> None:
    with pytest.raises(ValueError):
        encode_control(ControlMessage(2, (CryptoBindingRequest(1, b"short"),)))
    with pytest.raises(ValueError):
        encode_control(ControlMessage(4, (CryptoBinding(1, NONCE, bytes(20), bytes(32)),)))


def test_hash_protocol_is_a_flag() -> None:
    assert int(HashProtocol.SHA1 | HashProtocol.SHA256) == 3


# -- PacketReader ---------------------------------------------------------------------

STREAM = [(True, wire[4:]) for _, wire in SAMPLES] + [(False, b"\xff\x03\x00\x21" + bytes(40))]


def _wire_of(packets: list[tuple[bool, bytes]]) -> bytes:
    return b"".join(
        HEADER.pack(SSTP_VERSION, int(c), 4 + len(p)) + p for c, p in packets
    )


def _drain(reader: PacketReader) -> list[tuple[bool, bytes]]:
    out = []
    while (pkt := reader.next_packet()) is not None:
        out.append(pkt)
    return out


def test_reader_byte_at_a_time() -> None:
    wire = _wire_of(STREAM)
    reader = PacketReader()
    got: list[tuple[bool, bytes]] = []
    ends = set()
    pos = 0
    for _, payload in STREAM:
        pos += 4 + len(payload)
        ends.add(pos)
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        new = _drain(reader)
        assert bool(new) == (i + 1 in ends)
        got += new
    assert got == STREAM
    assert reader.buffered == 0


def test_reader_all_at_once_and_in_chunks() -> None:
    wire = _wire_of(STREAM)
    reader = PacketReader()
    reader.feed(wire)
    assert _drain(reader) == STREAM
    for size in (3, 7, 50, 1000):
        reader = PacketReader()
        got = []
        for i in range(0, len(wire), size):
            reader.feed(wire[i : i + size])
            got += _drain(reader)
        assert got == STREAM


def test_reader_bad_framing_raises_before_body() -> None:
    reader = PacketReader()
    reader.feed(b"\x10\x01\x00\x08\x00\x08\x00\x00" + b"\x20\x01\x00\x08")
    assert reader.next_packet() == (True, b"\x00\x08\x00\x00")
    with pytest.raises(ParseError):
        reader.next_packet()
    reader = PacketReader()
    reader.feed(b"\x10\x01\x00\x02")
    with pytest.raises(ParseError):
        reader.next_packet()


def test_reader_max_size_packet() -> None:
    reader = PacketReader()
    payload = bytes(MAX_PACKET_SIZE - 4)
    reader.feed(encode_data(payload)[:-1])
    assert reader.next_packet() is None
    reader.feed(b"\0")
    assert reader.next_packet() == (False, payload)


# -- fuzzing: only ParseError escapes -------------------------------------------------


@given(st.binary(max_size=16), st.integers(min_value=0, max_value=20))
def test_fuzz_parse_header(data: bytes, offset: int) -> None:
    try:
        is_control, length = parse_header(data, offset)
    except ParseError:
        return
    assert 4 <= length <= MAX_PACKET_SIZE and isinstance(is_control, bool)


@given(st.binary(max_size=300))
def test_fuzz_decode_control(body: bytes) -> None:
    try:
        msg = decode_control(body)
    except ParseError:
        return
    assert decode_control(encode_control(msg)[4:]) == msg


_attr_bodies = st.builds(
    lambda i, v: bytes([0, i]) + (4 + len(v)).to_bytes(2, "big") + v,
    st.integers(0, 6),
    st.binary(max_size=110),
)


@given(st.integers(0, 12), st.lists(_attr_bodies, max_size=4), st.integers(-1, 1))
def test_fuzz_decode_control_structured(msg_type: int, attrs: list[bytes], skew: int) -> None:
    count = max(0, len(attrs) + skew)
    body = msg_type.to_bytes(2, "big") + count.to_bytes(2, "big")
    try:
        msg = decode_control(body + b"".join(attrs))
    except ParseError:
        assert count != len(attrs)
        return
    assert count == len(attrs) == len(msg.attributes)
    assert decode_control(encode_control(msg)[4:]) == msg  # reserved bytes are not kept


@given(st.lists(st.binary(max_size=60), max_size=8))
def test_fuzz_packet_reader(chunks: list[bytes]) -> None:
    reader = PacketReader()
    try:
        for chunk in chunks:
            reader.feed(chunk)
            for is_control, payload in _drain(reader):
                assert isinstance(is_control, bool) and len(payload) <= MAX_PACKET_SIZE - 4
    except ParseError:
        pass
