"""PROXY protocol v1/v2 codec: round trips, byte-at-a-time, truncation, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sstpd.errors import ParseError
from sstpd.proto.proxy import V2_SIGNATURE, ProxyInfo, encode_v1, encode_v2, parse

CASES = [
    (("192.0.2.10", 51000), ("198.51.100.1", 443)),
    (("2001:db8::7", 1), ("2001:db8::1", 65535)),
]


@pytest.mark.parametrize("src,dst", CASES)
@pytest.mark.parametrize("encode,version", [(encode_v1, 1), (encode_v2, 2)])
def test_round_trip_with_trailing_data(encode, version, src, dst) -> None:  # type: ignore[no-untyped-def]
    header = encode(src, dst)
    info, n = parse(header + b"\x16\x03\x01 TLS follows")  # type: ignore[misc]
    assert n == len(header)
    assert info == ProxyInfo(version, src, dst)


def test_known_v1_bytes() -> None:
    line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    assert parse(line) == (ProxyInfo(1, ("192.168.0.1", 56324), ("192.168.0.11", 443)), len(line))
    assert encode_v1(("192.168.0.1", 56324), ("192.168.0.11", 443)) == line


def test_known_v2_bytes() -> None:
    header = V2_SIGNATURE + bytes.fromhex("2111000c" "c0000201" "c0000202" "1f90" "01bb")
    assert parse(header) == (ProxyInfo(2, ("192.0.2.1", 8080), ("192.0.2.2", 443)), 28)


def test_v2_tlvs_are_skipped() -> None:
    header = encode_v2(*CASES[0])
    tlv = b"\x04\x00\x02ab"  # a NOOP TLV after the addresses
    patched = header[:14] + (int.from_bytes(header[14:16], "big") + 5).to_bytes(2, "big")
    patched += header[16:] + tlv
    info, n = parse(patched + b"xyz")  # type: ignore[misc]
    assert n == len(patched) and info.source == CASES[0][0]


@pytest.mark.parametrize("header", [encode_v1(None, None), encode_v2(None, None)])
def test_unknown_and_local_carry_no_address(header: bytes) -> None:
    info, n = parse(header)  # type: ignore[misc]
    assert n == len(header) and info.source is None and info.destination is None


@pytest.mark.parametrize("src,dst", CASES)
@pytest.mark.parametrize("encode", [encode_v1, encode_v2])
def test_byte_at_a_time(encode, src, dst) -> None:  # type: ignore[no-untyped-def]
    header = encode(src, dst)
    for i in range(len(header)):
        assert parse(header[:i]) is None
    assert parse(header) is not None


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n",
        b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY " + b"1" * 120,
        V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),  # version 3
        V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),  # address block too short
        V2_SIGNATURE + b"\x21\x11\xff\xff",  # too long
        b"\r\n\r\nxx",
    ],
)
def test_rejects(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse(data)


@given(st.binary(max_size=300))
def test_fuzz_only_parse_errors(data: bytes) -> None:
    try:
        res = parse(data)
    except ParseError:
        return
    if res is not None:
        assert 0 < res[1] <= len(data)


@given(st.binary(max_size=80))
def test_fuzz_after_valid_prefix(tail: bytes) -> None:
    for prefix in (b"PROXY ", V2_SIGNATURE + b"\x21\x11"):
        with contextlib.suppress(ParseError):
            parse(prefix + tail)
