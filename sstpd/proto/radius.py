"""RADIUS (RFC 2865/2866/2869/3579/5176) packets, sans-I/O: encode, decode, sign, verify.

What the daemon needs from RADIUS and nothing more: Access-Request for PAP and MS-CHAPv2
(RFC 2548 Microsoft attributes), the Accept/Reject it gets back, Accounting-Request, and
Disconnect-Request/ACK/NAK for dynamic authorization. No socket and no clock here: the
I/O layer (``sstpd.aio.radius``) sends the bytes, keeps the timers and picks the server.

Security rules (BlastRADIUS, CVE-2024-3596): every Access-Request carries
Message-Authenticator as its *first* attribute; :func:`verify_reply` checks the Response
Authenticator and, when present or required, the Message-Authenticator of an answer.
The MS-MPPE keys are salt-decrypted with the Request Authenticator of *our* request
(RFC 2548 §2.4.2), never with anything taken from the answer.

Attributes are kept as an ordered list of ``(type, value)``; Microsoft VSAs as
``(26, vendor-specific bytes)``, read with :func:`ms_attributes`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Network

from sstpd.errors import ParseError

__all__ = [
    "Code",
    "RadiusPacket",
    "decode",
    "decode_ipv6_prefix",
    "encode_ipv6_prefix",
    "salt_decrypt",
    "salt_encrypt",
    "verify_reply",
    "verify_request",
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


# ---------------------------------------------------------------- authenticators


def _md5(*parts: bytes) -> bytes:
    return hashlib.md5(b"".join(parts), usedforsecurity=False).digest()


def _hmac_md5(secret: bytes, data: bytes) -> bytes:
    return hmac.new(secret, data, "md5").digest()


def _zero_message_authenticator(pkt: RadiusPacket, header_auth: bytes) -> bytes:
    zeroed = RadiusPacket(
        pkt.code,
        pkt.identifier,
        header_auth,
        [(t, bytes(16) if t == Attr.MESSAGE_AUTHENTICATOR else v) for t, v in pkt.attributes],
    )
    return zeroed.encode()


def sign_access_request(pkt: RadiusPacket, secret: bytes) -> bytes:
    """Encode an Access-Request (authenticator already random) with Message-Authenticator
    as the first attribute."""
    pkt.attributes = [(t, v) for t, v in pkt.attributes if t != Attr.MESSAGE_AUTHENTICATOR]
    pkt.attributes.insert(0, (Attr.MESSAGE_AUTHENTICATOR, bytes(16)))
    mac = _hmac_md5(secret, pkt.encode())
    pkt.attributes[0] = (Attr.MESSAGE_AUTHENTICATOR, mac)
    return pkt.encode()


def sign_request(pkt: RadiusPacket, secret: bytes) -> bytes:
    """Accounting-, Disconnect-, CoA-Request: authenticator = MD5 over the packet with a
    zero authenticator (RFC 2866 §3, RFC 5176 §2.3)."""
    pkt.authenticator = bytes(16)
    pkt.authenticator = _md5(pkt.encode(), secret)
    return pkt.encode()


def verify_request(data: bytes, pkt: RadiusPacket, secret: bytes) -> bool:
    """Check the authenticator of an Accounting-/Disconnect-/CoA-Request (and its
    Message-Authenticator when it carries one)."""
    length = HEADER.unpack_from(data)[2]
    expected = _md5(data[:4], bytes(16), data[20:length], secret)
    if not hmac.compare_digest(expected, pkt.authenticator):
        return False
    mac = pkt.get(Attr.MESSAGE_AUTHENTICATOR)
    if mac is not None:
        want = _hmac_md5(secret, _zero_message_authenticator(pkt, bytes(16)))
        return len(mac) == 16 and hmac.compare_digest(mac, want)
    return True


def sign_reply(
    pkt: RadiusPacket, request_authenticator: bytes, secret: bytes, *, message_auth: bool = True
) -> bytes:
    """Encode an answer (Accept/Reject, Accounting-Response, Disconnect-ACK/NAK): the
    Message-Authenticator is computed with the Request Authenticator in the header, then
    the Response Authenticator over the whole packet (RFC 3579 §3.2)."""
    pkt.attributes = [(t, v) for t, v in pkt.attributes if t != Attr.MESSAGE_AUTHENTICATOR]
    if message_auth:
        pkt.attributes.insert(0, (Attr.MESSAGE_AUTHENTICATOR, bytes(16)))
        pkt.authenticator = request_authenticator
        pkt.attributes[0] = (Attr.MESSAGE_AUTHENTICATOR, _hmac_md5(secret, pkt.encode()))
    pkt.authenticator = request_authenticator
    pkt.authenticator = _md5(pkt.encode(), secret)
    return pkt.encode()


def verify_reply(
    data: bytes,
    pkt: RadiusPacket,
    request_authenticator: bytes,
    secret: bytes,
    *,
    require_message_authenticator: bool,
) -> str:
    """ "" if ``pkt`` (decoded from ``data``) is a genuine answer to the request with
    ``request_authenticator``, else why not."""
    length = HEADER.unpack_from(data)[2]
    expected = _md5(data[:4], request_authenticator, data[20:length], secret)
    if not hmac.compare_digest(expected, pkt.authenticator):
        return "bad Response Authenticator"
    macs = pkt.get_all(Attr.MESSAGE_AUTHENTICATOR)
    if not macs:
        return "no Message-Authenticator" if require_message_authenticator else ""
    if len(macs) > 1 or len(macs[0]) != 16:
        return "malformed Message-Authenticator"
    want = _hmac_md5(secret, _zero_message_authenticator(pkt, request_authenticator))
    return "" if hmac.compare_digest(macs[0], want) else "bad Message-Authenticator"


# ---------------------------------------------------------------- hidden values


def encrypt_password(password: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """User-Password (RFC 2865 §5.2): padded to 16, chained MD5 XOR, at most 128 bytes."""
    p = password[:128]
    p += bytes(-len(p) % 16 or (16 if not p else 0))
    out = b""
    last = request_authenticator
    for i in range(0, len(p), 16):
        b = _md5(secret, last)
        c = bytes(x ^ y for x, y in zip(p[i : i + 16], b, strict=True))
        out += c
        last = c
    return out


def decrypt_password(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    out = b""
    last = request_authenticator
    for i in range(0, len(value) - len(value) % 16, 16):
        c = value[i : i + 16]
        out += bytes(x ^ y for x, y in zip(c, _md5(secret, last), strict=True))
        last = c
    return out.rstrip(b"\x00")


def salt_encrypt(plain: bytes, salt: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """RFC 2548 §2.4.2: Salt ‖ C, P = len ‖ key ‖ zero padding to a multiple of 16."""
    p = bytes([len(plain)]) + plain
    p += bytes(-len(p) % 16)
    out = b""
    last = request_authenticator + salt
    for i in range(0, len(p), 16):
        c = bytes(x ^ y for x, y in zip(p[i : i + 16], _md5(secret, last), strict=True))
        out += c
        last = c
    return salt + out


def salt_decrypt(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes | None:
    """The key inside an MS-MPPE-Send/Recv-Key value, or None when it is malformed.

    Each block is chained on the previous *ciphertext* block (pyrad <= 2.5.4 chained on the
    plaintext and corrupted the 16th key byte)."""
    if len(value) < 18 or (len(value) - 2) % 16 or not value[0] & 0x80:
        return None
    salt, c = value[:2], value[2:]
    p = b""
    last = request_authenticator + salt
    for i in range(0, len(c), 16):
        block = c[i : i + 16]
        p += bytes(x ^ y for x, y in zip(block, _md5(secret, last), strict=True))
        last = block
    n = p[0]
    if n == 0 or n > len(p) - 1:
        return None
    return p[1 : 1 + n]
