"""Crypto binding ([MS-SSTP] §2.2.7, §3.2.5.2, §3.3.5.2.3; docs/protocol/sstp.md §6).

HLAK (32 bytes, from PPP authentication) -> CMK = T1 of the PRF with a *little-endian* 16-bit
length (§6.2) -> compound MAC = HMAC(CMK, the 112-byte Call Connected packet with the MAC
field zeroed) (§6.3). SHA1 values are padded with zeros to the 32-byte fields.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping

from sstpd.errors import CryptoBindingError, ParseError
from sstpd.proto.sstp.constants import HEADER_SIZE, HashProtocol, MessageType
from sstpd.proto.sstp.packets import (
    ControlMessage,
    CryptoBinding,
    decode_control,
    encode_control,
    parse_header,
)

HLAK_SIZE = 32
FIELD_SIZE = 32
CALL_CONNECTED_SIZE = 112
#: Offset of the compound MAC field inside the Call Connected packet (docs/protocol/sstp.md §3.4).
MAC_OFFSET = 80
CMK_SEED = b"SSTP inner method derived CMK"

_HASHES = {HashProtocol.SHA1: "sha1", HashProtocol.SHA256: "sha256"}
_DIGEST_SIZE = {HashProtocol.SHA1: 20, HashProtocol.SHA256: 32}


def _hash_name(proto: HashProtocol) -> str:
    try:
        return _HASHES[HashProtocol(proto)]
    except (KeyError, ValueError):
        raise ValueError(f"not a single hash protocol: {proto!r}") from None


def pad(value: bytes) -> bytes:
    """Pad a hash value with zeros to the 32-byte field."""
    return value.ljust(FIELD_SIZE, b"\0")


def normalize_hlak(hlak: bytes) -> bytes:
    """Truncate or zero-pad to 32 bytes (§3.2.5.2.2)."""
    return hlak[:HLAK_SIZE].ljust(HLAK_SIZE, b"\0")


def cert_hashes(der: bytes) -> dict[HashProtocol, bytes]:
    """Unpadded SHA1 and SHA256 of the DER leaf certificate the client sees."""
    return {
        HashProtocol.SHA1: hashlib.sha1(der).digest(),
        HashProtocol.SHA256: hashlib.sha256(der).digest(),
    }


def derive_cmk(hlak: bytes, proto: HashProtocol) -> bytes:
    """CMK = T1 = HMAC-H(HLAK, seed || LEN (u16 little-endian) || 0x01)."""
    name = _hash_name(proto)
    size = _DIGEST_SIZE[HashProtocol(proto)]
    msg = CMK_SEED + struct.pack("<H", size) + b"\x01"
    return hmac.new(normalize_hlak(hlak), msg, name).digest()


def compound_mac(cmk: bytes, packet_with_zeroed_mac: bytes, proto: HashProtocol) -> bytes:
    """HMAC-H(CMK, packet); unpadded (20 bytes for SHA1)."""
    return hmac.new(cmk, packet_with_zeroed_mac, _hash_name(proto)).digest()


def build_call_connected(
    *, hash_protocol: HashProtocol, nonce: bytes, cert_hash: bytes, hlak: bytes
) -> bytes:
    """The whole 112-byte Call Connected packet, compound MAC included."""
    _hash_name(hash_protocol)
    zeroed = encode_control(
        ControlMessage(
            MessageType.CALL_CONNECTED,
            (CryptoBinding(int(hash_protocol), nonce, pad(cert_hash), bytes(FIELD_SIZE)),),
        )
    )
    mac = compound_mac(derive_cmk(hlak, hash_protocol), zeroed, hash_protocol)
    return zeroed[:MAC_OFFSET] + pad(mac)


def verify_call_connected(
    packet: bytes,
    *,
    nonce: bytes,
    cert_hashes: Mapping[HashProtocol, bytes],
    offered: int,
    hlak: bytes,
) -> HashProtocol:
    """Check a received Call Connected packet (header included) per §3.3.5.2.3.

    Returns the hash protocol the client chose. Raises ``CryptoBindingError`` naming the
    first failing field: structure, hash protocol, nonce, cert hash (both values in hex) or
    compound MAC. Comparisons of secret-derived values use ``hmac.compare_digest``.
    """
    if len(packet) != CALL_CONNECTED_SIZE:
        raise CryptoBindingError(f"Call Connected is {len(packet)} bytes, expected 112")
    try:
        if parse_header(packet) != (True, CALL_CONNECTED_SIZE):
            raise ParseError("not a 112-byte control packet")
        msg = decode_control(packet[HEADER_SIZE:])
    except ParseError as exc:
        raise CryptoBindingError(f"malformed Call Connected: {exc}") from None
    if msg.type != MessageType.CALL_CONNECTED or len(msg.attributes) != 1:
        raise CryptoBindingError("malformed Call Connected: need exactly one Crypto Binding")
    binding = msg.attributes[0]
    if not isinstance(binding, CryptoBinding):
        raise CryptoBindingError("malformed Call Connected: Crypto Binding attribute missing")
    if binding.hash_protocol not in (HashProtocol.SHA1, HashProtocol.SHA256):
        raise CryptoBindingError(f"hash protocol 0x{binding.hash_protocol:02x} is not valid")
    proto = HashProtocol(binding.hash_protocol)
    if not proto & offered:
        raise CryptoBindingError(f"hash protocol {proto.name} was not offered")
    if proto not in cert_hashes:
        raise CryptoBindingError(f"hash protocol {proto.name}: no certificate hash configured")
    if not hmac.compare_digest(binding.nonce, nonce):
        raise CryptoBindingError("nonce does not match the one sent in Call Connect Ack")
    expected = pad(cert_hashes[proto])
    if not hmac.compare_digest(binding.cert_hash, expected):
        raise CryptoBindingError(
            f"cert hash ({proto.name}) mismatch: expected {expected.hex()}, "
            f"received {binding.cert_hash.hex()}"
        )
    zeroed = packet[:MAC_OFFSET] + bytes(FIELD_SIZE)
    mac = pad(compound_mac(derive_cmk(hlak, proto), zeroed, proto))
    if not hmac.compare_digest(binding.compound_mac, mac):
        raise CryptoBindingError(f"compound MAC ({proto.name}) does not verify")
    return proto
