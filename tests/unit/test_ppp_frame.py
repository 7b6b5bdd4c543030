"""PPP frame, control packet and option list codecs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sstpd.errors import ParseError
from sstpd.proto.ppp.frame import (
    Code,
    Option,
    Packet,
    Protocol,
    decode_frame,
    decode_options,
    encode_frame,
    encode_options,
)


@pytest.mark.parametrize(
    ("frame", "protocol", "offset"),
    [
        (bytes.fromhex("ff03c021010100"), Protocol.LCP, 4),  # full header
        (bytes.fromhex("c021010100"), Protocol.LCP, 2),  # ACFC
        (bytes.fromhex("ff0321450000"), Protocol.IPV4, 3),  # PFC
        (bytes.fromhex("21450000"), Protocol.IPV4, 1),  # ACFC + PFC
        (bytes.fromhex("0021450000"), Protocol.IPV4, 2),  # uncompressed, no FF03
        (bytes.fromhex("ff038057"), Protocol.IPV6CP, 4),  # empty payload
    ],
)
def test_decode_frame_header_forms(frame: bytes, protocol: int, offset: int) -> None:
    assert decode_frame(frame) == (protocol, offset)


@pytest.mark.parametrize(
    "frame",
    [b"", b"\xff\x03", b"\xc0", b"\xff\x03\xc0", b"\xc0\x20", b"\xff\x03\x00\x20"],
)
def test_decode_frame_rejects_truncated_or_invalid_protocol(frame: bytes) -> None:
    with pytest.raises(ParseError):
        decode_frame(frame)


def test_encode_frame_always_full_header() -> None:
    assert encode_frame(Protocol.IPV4, b"E") == b"\xff\x03\x00\x21E"
    assert encode_frame(Protocol.LCP, b"") == b"\xff\x03\xc0\x21"


@given(protocol=st.sampled_from(list(Protocol)), payload=st.binary(max_size=64))
def test_frame_round_trip(protocol: int, payload: bytes) -> None:
    frame = encode_frame(protocol, payload)
    got, off = decode_frame(frame)
    assert (got, frame[off:]) == (protocol, payload)


def test_packet_codec_vector() -> None:
    raw = bytes.fromhex("0107000a0506deadbeef")
    pkt = Packet.decode(raw)
    assert pkt == Packet(Code.CONFIGURE_REQUEST, 7, bytes.fromhex("0506deadbeef"))
    assert pkt.encode() == raw


def test_packet_trailing_padding_ignored() -> None:
    assert Packet.decode(bytes.fromhex("05010004" + "00" * 10)) == Packet(5, 1, b"")


@pytest.mark.parametrize("cut", range(10))
def test_packet_truncation_raises(cut: int) -> None:
    raw = bytes.fromhex("0107000a0506deadbeef")
    with pytest.raises(ParseError):
        Packet.decode(raw[:cut])


def test_packet_length_below_header_raises() -> None:
    with pytest.raises(ParseError):
        Packet.decode(bytes.fromhex("01010003ff"))


@given(code=st.integers(0, 255), ident=st.integers(0, 255), data=st.binary(max_size=80))
def test_packet_round_trip(code: int, ident: int, data: bytes) -> None:
    assert Packet.decode(Packet(code, ident, data).encode()) == Packet(code, ident, data)


WINDOWS_OPTIONS = bytes.fromhex("01040ffb0506a1b2c3d4070208020d03061104064e")


def test_option_list_with_unknown_options_is_byte_exact() -> None:
    options = decode_options(WINDOWS_OPTIONS)
    assert [o.type for o in options] == [1, 5, 7, 8, 13, 17]
    assert options[4] == Option(13, b"\x06")
    assert encode_options(options) == WINDOWS_OPTIONS
    odd = bytes.fromhex("fe05010203ff02")  # vendor-ish unknown types
    assert encode_options(decode_options(odd)) == odd


def test_empty_option_list() -> None:
    assert decode_options(b"") == []
    assert encode_options([]) == b""


@pytest.mark.parametrize("cut", range(1, len(WINDOWS_OPTIONS)))
def test_option_truncation_raises(cut: int) -> None:
    data = WINDOWS_OPTIONS[:cut]
    boundaries = {0, 4, 10, 12, 14, 17, 21}
    if cut in boundaries:
        assert encode_options(decode_options(data)) == data
    else:
        with pytest.raises(ParseError):
            decode_options(data)


@pytest.mark.parametrize("raw", ["0100", "0101", "0105aabb"])
def test_option_bad_length_raises(raw: str) -> None:
    with pytest.raises(ParseError):
        decode_options(bytes.fromhex(raw))


@given(st.lists(st.builds(Option, st.integers(0, 255), st.binary(max_size=20)), max_size=8))
def test_option_list_round_trip(options: list[Option]) -> None:
    assert decode_options(encode_options(options)) == options
