"""Crypto binding: the [MS-SSTP] §4.7 vectors of docs/protocol/sstp.md §8."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest

from sstpd.errors import CryptoBindingError
from sstpd.proto.sstp.binding import (
    build_call_connected,
    cert_hashes,
    compound_mac,
    derive_cmk,
    normalize_hlak,
    verify_call_connected,
)
from sstpd.proto.sstp.constants import HashProtocol


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@dataclass(frozen=True)
class Vector:
    proto: HashProtocol
    nonce: bytes
    hlak: bytes
    cert_hash: bytes  # unpadded
    mac: bytes  # unpadded
    cmk: bytes
    header: bytes


SHA256 = Vector(
    HashProtocol.SHA256,
    nonce=h(
        "41 2B 48 9A EB D7 EC C7 D0 89 66 F2 6B E7 CD 72"
        " B2 31 A0 E9 21 0D 7C 91 B3 08 86 2B 03 44 C4 35"
    ),
    hlak=h(
        "2A 1B B4 0D 55 AB 0F 5E F3 2F 06 F2 B3 CC 73 C4"
        " 8F D3 FA C4 1D 7A 13 15 A1 92 28 D9 02 4C A1 64"
    ),
    cert_hash=h(
        "79 93 EF 31 4C 49 3D AC E9 F0 2D 60 E7 E6 1C 84"
        " B6 69 0A AF E9 D7 AE EA 92 CB BE 8A D5 99 42 2D"
    ),
    mac=h(
        "52 A6 8E FD 8C FF BF 52 77 0B 8F 0F E8 EC 73 71"
        " 65 83 AF 6D 61 1E B6 D1 79 B3 B2 08 40 98 54 49"
    ),
    cmk=h("ecf59ac9fe155cf0a9e7d66adc1b363c1ad7ba91a9217f0cec2a534298828df6"),
    header=h("10 01 00 70 00 04 00 01 00 03 00 68 00 00 00 02"),
)
SHA1 = Vector(
    HashProtocol.SHA1,
    nonce=h(
        "0F 1A 2D 58 D4 A3 E3 00 0F AD 3C E4 90 6E 07 B7"
        " 07 AA 9E 44 1C CE AC 5C BD 7B 2C C1 C9 D8 6C DF"
    ),
    hlak=h(
        "4B 31 28 F4 39 25 D9 00 6E EF B1 C4 E8 65 15 A1"
        " D8 8E 56 BA B3 CA 2B DF 03 73 B7 F5 A8 A1 3B 19"
    ),
    cert_hash=h("58 26 B6 29 BD A5 9B 8E 6F D8 DC D2 62 2F D3 4C 53 48 05 A5"),
    mac=h("69 91 5D D5 83 D8 06 2F EF 16 F6 1D B2 F0 32 90 EC 27 CB 6C"),
    cmk=h("a98b862a38cc7e224b42cd128586acb22f0bd1e9"),
    header=h("10 01 00 70 00 04 00 01 00 03 00 68 00 00 00 01"),
)
VECTORS = [SHA256, SHA1]


def pad(b: bytes) -> bytes:
    return b.ljust(32, b"\0")


def packet_of(v: Vector) -> bytes:
    return v.header + v.nonce + pad(v.cert_hash) + pad(v.mac)


def verify(v: Vector, packet: bytes, **overrides: object) -> HashProtocol:
    args: dict[str, object] = {
        "nonce": v.nonce,
        "cert_hashes": {v.proto: v.cert_hash},
        "offered": 3,
        "hlak": v.hlak,
    }
    args.update(overrides)
    return verify_call_connected(packet, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("v", VECTORS, ids=["sha256", "sha1"])
def test_cmk(v: Vector) -> None:
    assert derive_cmk(v.hlak, v.proto) == v.cmk


@pytest.mark.parametrize("v", VECTORS, ids=["sha256", "sha1"])
def test_compound_mac(v: Vector) -> None:
    zeroed = packet_of(v)[:80] + bytes(32)
    assert compound_mac(v.cmk, zeroed, v.proto) == v.mac


@pytest.mark.parametrize("v", VECTORS, ids=["sha256", "sha1"])
def test_build_call_connected_exact_bytes(v: Vector) -> None:
    packet = build_call_connected(
        hash_protocol=v.proto, nonce=v.nonce, cert_hash=v.cert_hash, hlak=v.hlak
    )
    assert len(packet) == 112
    assert packet == packet_of(v)


@pytest.mark.parametrize("v", VECTORS, ids=["sha256", "sha1"])
def test_verify_accepts_vector(v: Vector) -> None:
    assert verify(v, packet_of(v)) is v.proto
    assert verify(v, packet_of(v), offered=int(v.proto)) is v.proto


def test_big_endian_length_would_not_verify() -> None:
    import hmac

    seed = b"SSTP inner method derived CMK" + b"\x00\x20\x01"
    assert hmac.new(SHA256.hlak, seed, "sha256").digest() != SHA256.cmk


def _flip(packet: bytes, offset: int) -> bytes:
    return packet[:offset] + bytes([packet[offset] ^ 0x01]) + packet[offset + 1 :]


@pytest.mark.parametrize("v", VECTORS, ids=["sha256", "sha1"])
@pytest.mark.parametrize(
    ("offset", "field"),
    [(16, "nonce"), (47, "nonce"), (48, "cert hash"), (79, "cert hash"), (80, "compound MAC"),
     (111, "compound MAC"), (5, "malformed"), (0, "malformed"), (11, "malformed")],
)
def test_verify_rejects_single_field_corruption(v: Vector, offset: int, field: str) -> None:
    with pytest.raises(CryptoBindingError, match=field):
        verify(v, _flip(packet_of(v), offset))


@pytest.mark.parametrize("v", VECTORS, ids=["sha256", "sha1"])
def test_verify_rejects_wrong_inputs(v: Vector) -> None:
    packet = packet_of(v)
    with pytest.raises(CryptoBindingError, match="nonce"):
        verify(v, packet, nonce=bytes(32))
    with pytest.raises(CryptoBindingError, match="compound MAC"):
        verify(v, packet, hlak=bytes(32))
    with pytest.raises(CryptoBindingError, match="not offered"):
        verify(v, packet, offered=int(HashProtocol(3) & ~v.proto))
    with pytest.raises(CryptoBindingError, match="no certificate hash"):
        verify(v, packet, cert_hashes={})
    wrong = hashlib.sha256(b"other").digest()[: len(v.cert_hash)]
    with pytest.raises(CryptoBindingError) as info:
        verify(v, packet, cert_hashes={v.proto: wrong})
    message = str(info.value)
    assert "cert hash" in message and pad(wrong).hex() in message
    assert pad(v.cert_hash).hex() in message
    with pytest.raises(CryptoBindingError, match="112"):
        verify(v, packet[:-1])
    with pytest.raises(CryptoBindingError, match="hash protocol"):
        verify(v, packet[:15] + b"\x03" + packet[16:])


def test_hash_protocol_switch_is_detected() -> None:
    # SHA256 packet relabelled as SHA1: offered, but the hash/MAC no longer match.
    packet = packet_of(SHA256)
    relabelled = packet[:15] + b"\x01" + packet[16:]
    with pytest.raises(CryptoBindingError):
        verify(SHA256, relabelled, cert_hashes={HashProtocol.SHA1: SHA1.cert_hash})


def test_cert_hashes_and_hlak_normalisation() -> None:
    der = b"0\x82\x01\x00fake-der"
    hashes = cert_hashes(der)
    assert hashes == {
        HashProtocol.SHA1: hashlib.sha1(der).digest(),
        HashProtocol.SHA256: hashlib.sha256(der).digest(),
    }
    assert normalize_hlak(b"\1" * 40) == b"\1" * 32
    assert normalize_hlak(b"\1" * 16) == b"\1" * 16 + bytes(16)
    with pytest.raises(ValueError):
        derive_cmk(bytes(32), HashProtocol(3))
