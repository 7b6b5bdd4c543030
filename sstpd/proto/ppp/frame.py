"""PPP frame, control-protocol packet and option-list codecs (RFC 1661 §2, §5, §6).

Inside SSTP a PPP frame is carried without HDLC flags, escaping or FCS: what remains is the
optional Address/Control pair ``FF 03`` (absent when ACFC was negotiated), the protocol
field (one byte when PFC was negotiated) and the payload. We always *send* the full form.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from sstpd.errors import ParseError

__all__ = [
    "Code",
    "Option",
    "Packet",
    "Protocol",
    "decode_frame",
    "decode_options",
    "encode_frame",
    "encode_options",
]


@enum.unique
class Protocol(enum.IntEnum):
    """PPP protocol field values (IANA "PPP DLL Protocol Numbers")."""

    IPV4 = 0x0021
    IPV6 = 0x0057
    MPPC = 0x00FD
    IPCP = 0x8021
    IPV6CP = 0x8057
    CCP = 0x80FD
    LCP = 0xC021
    PAP = 0xC023
    LQR = 0xC025
    CHAP = 0xC223
    EAP = 0xC227


@enum.unique
class Code(enum.IntEnum):
    """Control-protocol packet codes (RFC 1661 §5)."""

    CONFIGURE_REQUEST = 1
    CONFIGURE_ACK = 2
    CONFIGURE_NAK = 3
    CONFIGURE_REJECT = 4
    TERMINATE_REQUEST = 5
    TERMINATE_ACK = 6
    CODE_REJECT = 7
    PROTOCOL_REJECT = 8
    ECHO_REQUEST = 9
    ECHO_REPLY = 10
    DISCARD_REQUEST = 11


_ADDRESS_CONTROL = b"\xff\x03"


def decode_frame(frame: bytes) -> tuple[int, int]:
    """Return ``(protocol, payload offset)`` of one PPP frame.

    Accepts the optional ``FF 03`` and the compressed one-byte protocol field (a protocol
    field whose first byte is odd is one byte long, RFC 1661 §6.5).
    """
    off = 2 if frame[:2] == _ADDRESS_CONTROL else 0
    if len(frame) <= off:
        raise ParseError("PPP frame without a protocol field")
    first = frame[off]
    if first & 1:
        return first, off + 1
    if len(frame) < off + 2:
        raise ParseError("PPP frame truncated in the protocol field")
    second = frame[off + 1]
    if not second & 1:
        raise ParseError(f"invalid PPP protocol field {first:02x}{second:02x}")
    return (first << 8) | second, off + 2


def encode_frame(protocol: int, payload: bytes) -> bytes:
    """``FF 03`` + 2-byte protocol + payload (we never compress what we send)."""
    return _ADDRESS_CONTROL + struct.pack("!H", protocol) + payload


@dataclass(frozen=True)
class Packet:
    """One LCP/NCP/auth packet: Code, Identifier, Length (derived), Data."""

    code: int
    identifier: int
    data: bytes = b""

    def encode(self) -> bytes:
        return struct.pack("!BBH", self.code, self.identifier, 4 + len(self.data)) + self.data

    @classmethod
    def decode(cls, buf: bytes) -> Packet:
        """Decode; octets beyond Length are padding and ignored (RFC 1661 §5)."""
        if len(buf) < 4:
            raise ParseError("control packet shorter than its 4-byte header")
        code, identifier, length = struct.unpack_from("!BBH", buf)
        if length < 4 or length > len(buf):
            raise ParseError(f"control packet length {length} does not fit {len(buf)} bytes")
        return cls(code, identifier, bytes(buf[4:length]))


@dataclass(frozen=True)
class Option:
    """One configuration option: Type, Length (derived), Data."""

    type: int
    data: bytes = b""

    def encode(self) -> bytes:
        return bytes((self.type, 2 + len(self.data))) + self.data


def encode_options(options: list[Option] | tuple[Option, ...]) -> bytes:
    return b"".join(o.encode() for o in options)


def decode_options(buf: bytes) -> list[Option]:
    """Decode an option list; every byte must belong to a well-formed option."""
    options = []
    off = 0
    while off < len(buf):
        if off + 2 > len(buf):
            raise ParseError("option truncated in its header")
        kind, length = buf[off], buf[off + 1]
        if length < 2 or off + length > len(buf):
            raise ParseError(f"option {kind} has bad length {length}")
        options.append(Option(kind, bytes(buf[off + 2 : off + length])))
        off += length
    return options
