"""RADIUS packets as bytes: header, attributes, Microsoft VSAs, the numbers the daemon uses.

Kept apart from :mod:`.crypto` (authenticators and hidden values) because this part is
plain layout with round-trip tests and a fuzzed decoder, and needs no secret:
:class:`RadiusPacket` reads and builds the ordered attribute list, :func:`decode` parses
a datagram (raising only ParseError, RFC 2865 §3), :func:`ms_attributes` reads the
Microsoft sub-attributes of the Vendor-Specific ones (RFC 2548) and
:func:`encode_ipv6_prefix`/:func:`decode_ipv6_prefix` handle Framed-IPv6-Prefix (RFC
3162). :class:`Code`, :class:`Attr`, :class:`Ms` and the Acct-Terminate-Cause and
Error-Cause values are the dictionary: only what the daemon sends or reads.

Attributes are kept as an ordered list of ``(type, value)``; Microsoft VSAs as
``(26, vendor-specific bytes)``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Network

from sstpd.errors import ParseError

__all__ = [
    "Attr",
    "Code",
    "Ms",
    "RadiusPacket",
    "decode",
    "decode_ipv6_prefix",
    "encode_ipv6_prefix",
    "encode_vsa",
    "ms_attributes",
]

HEADER = struct.Struct("!BBH16s")
MAX_PACKET = 4096
MICROSOFT = 311


class Code:
    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    ACCESS_CHALLENGE = 11
    DISCONNECT_REQUEST = 40
    DISCONNECT_ACK = 41
    DISCONNECT_NAK = 42
    COA_REQUEST = 43
    COA_ACK = 44
    COA_NAK = 45


class Attr:
    USER_NAME = 1
    USER_PASSWORD = 2
    NAS_IP_ADDRESS = 4
    NAS_PORT = 5
    SERVICE_TYPE = 6
    FRAMED_PROTOCOL = 7
    FRAMED_IP_ADDRESS = 8
    FRAMED_IP_NETMASK = 9
    FRAMED_MTU = 12
    REPLY_MESSAGE = 18
    STATE = 24
    CLASS = 25
    VENDOR_SPECIFIC = 26
    SESSION_TIMEOUT = 27
    IDLE_TIMEOUT = 28
    CALLED_STATION_ID = 30
    CALLING_STATION_ID = 31
    NAS_IDENTIFIER = 32
    PROXY_STATE = 33
    ACCT_STATUS_TYPE = 40
    ACCT_DELAY_TIME = 41
    ACCT_INPUT_OCTETS = 42
    ACCT_OUTPUT_OCTETS = 43
    ACCT_SESSION_ID = 44
    ACCT_AUTHENTIC = 45
    ACCT_SESSION_TIME = 46
    ACCT_INPUT_PACKETS = 47
    ACCT_OUTPUT_PACKETS = 48
    ACCT_TERMINATE_CAUSE = 49
    ACCT_INPUT_GIGAWORDS = 52
    ACCT_OUTPUT_GIGAWORDS = 53
    EVENT_TIMESTAMP = 55
    NAS_PORT_TYPE = 61
    TUNNEL_TYPE = 64
    ERROR_CAUSE = 101
    EAP_MESSAGE = 79
    MESSAGE_AUTHENTICATOR = 80
    ACCT_INTERIM_INTERVAL = 85
    FRAMED_INTERFACE_ID = 96  # RFC 3162 §2.2: 8 bytes
    FRAMED_IPV6_PREFIX = 97  # RFC 3162 §2.3: see encode_ipv6_prefix
    DELEGATED_IPV6_PREFIX = 123  # RFC 4818: DHCPv6-PD, which sstpd does not do


class Ms:
    """Microsoft vendor attribute numbers (RFC 2548)."""

    CHAP_ERROR = 2
    MPPE_ENCRYPTION_POLICY = 7
    MPPE_ENCRYPTION_TYPES = 8
    CHAP_CHALLENGE = 11
    MPPE_SEND_KEY = 16
    MPPE_RECV_KEY = 17
    CHAP2_RESPONSE = 25
    CHAP2_SUCCESS = 26
    PRIMARY_DNS = 28
    SECONDARY_DNS = 29


# Acct-Terminate-Cause values (RFC 2866 §5.10)
TERMINATE_USER_REQUEST = 1
TERMINATE_LOST_CARRIER = 2
TERMINATE_IDLE_TIMEOUT = 4
TERMINATE_SESSION_TIMEOUT = 5
TERMINATE_ADMIN_RESET = 6
TERMINATE_NAS_ERROR = 9
TERMINATE_NAS_REQUEST = 10
TERMINATE_NAS_REBOOT = 11
TERMINATE_USER_ERROR = 17

# Error-Cause values for Disconnect-NAK (RFC 5176 §3.5)
ERROR_SESSION_NOT_FOUND = 503
ERROR_MISSING_ATTRIBUTE = 402
ERROR_INVALID_REQUEST = 404
ERROR_INVALID_ATTRIBUTE_VALUE = 407

Attributes = list[tuple[int, bytes]]


@dataclass
class RadiusPacket:
    code: int
    identifier: int
    authenticator: bytes = bytes(16)
    attributes: Attributes = field(default_factory=list)

    # ---------------------------------------------------------------- reading
    def get(self, attr: int) -> bytes | None:
        for t, v in self.attributes:
            if t == attr:
                return v
        return None

    def get_all(self, attr: int) -> list[bytes]:
        return [v for t, v in self.attributes if t == attr]

    def get_int(self, attr: int) -> int | None:
        v = self.get(attr)
        return int.from_bytes(v, "big") if v is not None and len(v) == 4 else None

    def get_str(self, attr: int) -> str | None:
        v = self.get(attr)
        return v.decode("utf-8", "replace") if v is not None else None

    def get_ipv4(self, attr: int) -> IPv4Address | None:
        v = self.get(attr)
        return IPv4Address(v) if v is not None and len(v) == 4 else None

    def ms(self, vtype: int) -> bytes | None:
        for t, v in ms_attributes(self.attributes):
            if t == vtype:
                return v
        return None

    # ---------------------------------------------------------------- building
    def add(self, attr: int, value: bytes) -> None:
        if not 1 <= len(value) <= 253:
            raise ValueError(f"attribute {attr}: value of {len(value)} bytes")
        self.attributes.append((attr, value))

    def add_int(self, attr: int, value: int) -> None:
        self.add(attr, struct.pack("!I", value & 0xFFFFFFFF))

    def add_str(self, attr: int, value: str) -> None:
        self.add(attr, value.encode("utf-8")[:253])

    def add_ms(self, vtype: int, value: bytes) -> None:
        self.add(Attr.VENDOR_SPECIFIC, encode_vsa(MICROSOFT, vtype, value))

    def encode_attributes(self) -> bytes:
        return b"".join(bytes([t, len(v) + 2]) + v for t, v in self.attributes)

    def encode(self) -> bytes:
        body = self.encode_attributes()
        return HEADER.pack(self.code, self.identifier, 20 + len(body), self.authenticator) + body


def encode_ipv6_prefix(prefix: IPv6Network) -> bytes:
    """Framed-IPv6-Prefix's value (RFC 3162 §2.3): a reserved zero byte, the prefix
    length, then the prefix in as many bytes as its length needs (FreeRADIUS's form;
    RFC 8044 §3.10 ipv6prefix)."""
    n = (prefix.prefixlen + 7) // 8
    return bytes([0, prefix.prefixlen]) + prefix.network_address.packed[:n]


def decode_ipv6_prefix(value: bytes) -> IPv6Network | None:
    """The prefix in a Framed-IPv6-Prefix value, or None when it is malformed: a length
    over 128, fewer bytes than the length needs, more than 16, or bits set past the
    prefix length (RFC 8044 §3.10). Shorter forms and the full 16 bytes are both read."""
    if len(value) < 2 or len(value) > 18 or value[0] != 0:
        return None
    length, raw = value[1], value[2:]
    if length > 128 or len(raw) * 8 < length:
        return None
    try:
        return IPv6Network((raw + bytes(16 - len(raw)), length))  # strict: no host bits
    except ValueError:
        return None


def encode_vsa(vendor: int, vtype: int, value: bytes) -> bytes:
    if len(value) > 247:
        raise ValueError(f"vendor attribute {vendor}/{vtype}: value of {len(value)} bytes")
    return struct.pack("!IBB", vendor, vtype, len(value) + 2) + value


def ms_attributes(attributes: Iterable[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """The Microsoft sub-attributes of every Vendor-Specific attribute (malformed ones skipped)."""
    out: list[tuple[int, bytes]] = []
    for t, v in attributes:
        if t != Attr.VENDOR_SPECIFIC or len(v) < 6:
            continue
        if int.from_bytes(v[:4], "big") != MICROSOFT:
            continue
        pos = 4
        while pos + 2 <= len(v):
            vt, vl = v[pos], v[pos + 1]
            if vl < 2 or pos + vl > len(v):
                break
            out.append((vt, v[pos + 2 : pos + vl]))
            pos += vl
    return out


def decode(data: bytes) -> RadiusPacket:
    """Parse one RADIUS packet; raises ParseError on anything malformed (RFC 2865 §3)."""
    if len(data) < 20:
        raise ParseError("RADIUS packet shorter than its header")
    code, ident, length, auth = HEADER.unpack_from(data)
    if length < 20 or length > MAX_PACKET or length > len(data):
        raise ParseError(f"RADIUS length {length} does not fit the datagram of {len(data)}")
    attrs: Attributes = []
    pos = 20
    while pos < length:
        if pos + 2 > length:
            raise ParseError("truncated attribute header")
        t, alen = data[pos], data[pos + 1]
        if alen < 2 or pos + alen > length:
            raise ParseError(f"attribute {t} with bad length {alen}")
        attrs.append((t, bytes(data[pos + 2 : pos + alen])))
        pos += alen
    return RadiusPacket(code, ident, auth, attrs)
