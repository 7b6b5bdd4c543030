"""EAP (RFC 3748) and EAP-MS-CHAP-V2 byte formats: the codes, types and OpCodes,
:class:`EapPacket` and :class:`MsChapV2Message` (encode/decode), the Challenge and Response
data, and ``EAP_MSCHAPV2``, the method name the link and both ends use.

Separate from the two ends so that the bytes can be read, fuzzed and round-trip tested
without the exchange around them.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from sstpd.errors import ParseError

EAP_MSCHAPV2 = "eap-mschapv2"


class EapCode(enum.IntEnum):
    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(enum.IntEnum):
    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5_CHALLENGE = 4
    OTP = 5
    GTC = 6
    TLS = 13
    TTLS = 21
    PEAP = 25
    MSCHAPV2 = 26


class MsOpCode(enum.IntEnum):
    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4
    CHANGE_PASSWORD = 7


def name_of(enum_type: type[enum.IntEnum], value: int) -> str:
    try:
        return f"{enum_type(value).name} ({value})"
    except ValueError:
        return str(value)


def type_names(types: bytes) -> str:
    """``b"\\x0d\\x19"`` -> ``"TLS (13), PEAP (25)"`` for log lines."""
    return ", ".join(name_of(EapType, t) for t in types) or "none"


@dataclass(frozen=True)
class EapPacket:
    """Code, Identifier, Length (derived), Type (Request/Response only), Type-Data."""

    code: int
    identifier: int
    type: int | None = None
    data: bytes = b""

    def encode(self) -> bytes:
        body = b"" if self.type is None else bytes([self.type]) + self.data
        return struct.pack("!BBH", self.code, self.identifier, 4 + len(body)) + body

    @classmethod
    def decode(cls, buf: bytes) -> EapPacket:
        """Octets beyond Length are padding and ignored (RFC 3748 §4.1); a Length beyond
        the octets received, an unknown Code, a Request/Response without Type or a
        Success/Failure with data are errors."""
        if len(buf) < 4:
            raise ParseError(f"EAP packet of {len(buf)} bytes, shorter than its header")
        code, identifier, length = struct.unpack_from("!BBH", buf)
        if length < 4 or length > len(buf):
            raise ParseError(f"EAP Length {length} does not fit the {len(buf)} bytes received")
        if code in (EapCode.REQUEST, EapCode.RESPONSE):
            if length < 5:
                raise ParseError(f"EAP {name_of(EapCode, code)} without a Type")
            return cls(code, identifier, buf[4], bytes(buf[5:length]))
        if code in (EapCode.SUCCESS, EapCode.FAILURE):
            if length != 4:
                raise ParseError(f"EAP {name_of(EapCode, code)} of Length {length}, not 4")
            return cls(code, identifier)
        raise ParseError(f"unknown EAP Code {code}")


@dataclass(frozen=True)
class MsChapV2Message:
    """EAP-MS-CHAP-V2 Type-Data: OpCode, MS-CHAPv2-ID, MS-Length (derived), data.

    ``short`` is the Success/Failure Response: the OpCode byte alone."""

    opcode: int
    ms_id: int = 0
    data: bytes = b""
    short: bool = False

    def encode(self) -> bytes:
        if self.short:
            return bytes([self.opcode])
        return struct.pack("!BBH", self.opcode, self.ms_id, 4 + len(self.data)) + self.data

    @classmethod
    def decode(cls, buf: bytes) -> MsChapV2Message:
        if len(buf) == 1 and buf[0] in (MsOpCode.SUCCESS, MsOpCode.FAILURE):
            return cls(buf[0], short=True)
        if len(buf) < 4:
            raise ParseError(f"EAP-MS-CHAP-V2 data of {len(buf)} bytes, shorter than its header")
        opcode, ms_id, ms_length = struct.unpack_from("!BBH", buf)
        if ms_length != len(buf):
            raise ParseError(f"MS-Length {ms_length} but {len(buf)} bytes of MS-CHAP-V2 data")
        return cls(opcode, ms_id, bytes(buf[4:]))


def challenge_data(challenge: bytes, name: bytes) -> bytes:
    return bytes([16]) + challenge + name


def response_data(peer_challenge: bytes, nt_response: bytes, name: bytes) -> bytes:
    """Value-Size 49, Peer-Challenge, 8 reserved zeros, NT-Response, Flags 0, Name."""
    return bytes([49]) + peer_challenge + bytes(8) + nt_response + b"\x00" + name
