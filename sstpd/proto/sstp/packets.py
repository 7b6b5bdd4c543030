"""SSTP packet and attribute codec ([MS-SSTP] §2.2).

Length fields are derived when encoding and never stored in the dataclasses. Decoders raise
only ``ParseError``. An attribute whose ID is unknown, or whose length is wrong for its ID
(or a Status Info whose value exceeds 64 bytes), decodes to ``UnknownAttribute`` so that the
state machine can answer with the right Status Info (§3.3.5.2.2) instead of failing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sstpd.errors import ParseError
from sstpd.proto.sstp.constants import (
    HEADER_SIZE,
    MAX_PACKET_SIZE,
    MAX_STATUS_VALUE,
    NONCE_SIZE,
    SSTP_VERSION,
    AttributeId,
    MessageType,
)

#: version, C bit (+7 reserved bits), R bits (4) + 12-bit length. Shared with the I/O layer,
#: which frames packets in place in its receive buffer.
HEADER = struct.Struct("!BBH")
_LENGTH_MASK = 0x0FFF
_MSG_HEADER = struct.Struct("!HH")  # message type, number of attributes
_ATTR_HEADER = struct.Struct("!xBH")  # reserved, attribute id, R bits + 12-bit length
_U16 = struct.Struct("!H")
_STATUS = struct.Struct("!xxxBI")  # reserved1, AttribID, Status
_HASH_FIELD = 32  # cert hash and compound MAC fields are always 32 bytes (SHA1 is padded)


@dataclass(frozen=True)
class EncapsulatedProtocolId:
    """§2.2.5: value is a 2-byte Protocol ID (1 = PPP)."""

    protocol: int


@dataclass(frozen=True)
class StatusInfo:
    """§2.2.8: which attribute (AttribID) a status refers to, the status, an echoed value."""

    attrib_id: int
    status: int
    value: bytes = b""

    def __post_init__(self) -> None:
        if len(self.value) > MAX_STATUS_VALUE:
            raise ValueError("Status Info value is limited to 64 bytes")


@dataclass(frozen=True)
class CryptoBindingRequest:
    """§2.2.6: sent by the server in Call Connect Ack."""

    hash_protocols: int
    nonce: bytes


@dataclass(frozen=True)
class CryptoBinding:
    """§2.2.7: sent by the client in Call Connected; hash fields are 32 bytes (SHA1 padded)."""

    hash_protocol: int
    nonce: bytes
    cert_hash: bytes
    compound_mac: bytes


@dataclass(frozen=True)
class UnknownAttribute:
    """An attribute with an unknown ID or a length that is wrong for its ID, kept raw."""

    attribute_id: int
    value: bytes


Attribute = (
    EncapsulatedProtocolId | StatusInfo | CryptoBindingRequest | CryptoBinding | UnknownAttribute
)


@dataclass(frozen=True)
class ControlMessage:
    """§2.2.2: a control message body. ``type`` is a ``MessageType`` or the raw unknown int."""

    type: int
    attributes: tuple[Attribute, ...] = ()


def parse_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[bool, int]:
    """Decode the 4-byte header at ``offset``: ``(is_control, total length incl. header)``.

    The reserved bits are ignored (§2.2.1). Raises ``ParseError`` on a wrong version, a
    length below 4, or fewer than 4 bytes available.
    """
    if len(buf) - offset < HEADER_SIZE or offset < 0:
        raise ParseError("truncated SSTP header")
    version, flags, length = HEADER.unpack_from(buf, offset)
    if version != SSTP_VERSION:
        raise ParseError(f"unsupported SSTP version 0x{version:02x}")
    length &= _LENGTH_MASK
    if length < HEADER_SIZE:
        raise ParseError(f"SSTP packet length {length} is shorter than its header")
    return bool(flags & 1), length


def encode_data(frame: bytes) -> bytes:
    """One SSTP data packet carrying ``frame`` (a PPP frame without HDLC framing)."""
    length = HEADER_SIZE + len(frame)
    if length > MAX_PACKET_SIZE:
        raise ValueError(f"PPP frame of {len(frame)} bytes does not fit in an SSTP packet")
    return HEADER.pack(SSTP_VERSION, 0, length) + frame


def encode_attribute(attr: Attribute) -> bytes:
    """One attribute with its 4-byte header."""
    attr_id: int
    if isinstance(attr, EncapsulatedProtocolId):
        attr_id, value = AttributeId.ENCAPSULATED_PROTOCOL_ID, _U16.pack(attr.protocol)
    elif isinstance(attr, StatusInfo):
        attr_id = AttributeId.STATUS_INFO
        value = _STATUS.pack(attr.attrib_id, attr.status) + attr.value
    elif isinstance(attr, CryptoBindingRequest):
        _check_len("nonce", attr.nonce, NONCE_SIZE)
        attr_id = AttributeId.CRYPTO_BINDING_REQ
        value = b"\0\0\0" + bytes([attr.hash_protocols]) + attr.nonce
    elif isinstance(attr, CryptoBinding):
        _check_len("nonce", attr.nonce, NONCE_SIZE)
        _check_len("cert_hash", attr.cert_hash, _HASH_FIELD)
        _check_len("compound_mac", attr.compound_mac, _HASH_FIELD)
        attr_id = AttributeId.CRYPTO_BINDING
        value = (
            b"\0\0\0" + bytes([attr.hash_protocol]) + attr.nonce + attr.cert_hash
            + attr.compound_mac
        )
    else:
        attr_id, value = attr.attribute_id, attr.value
    length = 4 + len(value)
    if length > MAX_PACKET_SIZE:
        raise ValueError("attribute too long")
    return _ATTR_HEADER.pack(attr_id, length) + value


def _check_len(name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")


def encode_control(msg: ControlMessage) -> bytes:
    """The whole SSTP control packet (header included) for ``msg``."""
    body = b"".join(encode_attribute(a) for a in msg.attributes)
    length = HEADER_SIZE + _MSG_HEADER.size + len(body)
    if length > MAX_PACKET_SIZE:
        raise ValueError("control message too long")
    return (
        HEADER.pack(SSTP_VERSION, 1, length)
        + _MSG_HEADER.pack(msg.type, len(msg.attributes))
        + body
    )


_KNOWN_TYPES = frozenset(int(t) for t in MessageType)

# Value length (attribute length minus its 4-byte header) of each fixed-size attribute.
_FIXED_VALUE_LENGTH: dict[int, int] = {
    AttributeId.ENCAPSULATED_PROTOCOL_ID: 2,
    AttributeId.CRYPTO_BINDING_REQ: 4 + NONCE_SIZE,
    AttributeId.CRYPTO_BINDING: 4 + NONCE_SIZE + 2 * _HASH_FIELD,
}


def _decode_attribute(attr_id: int, value: bytes) -> Attribute:
    if attr_id == AttributeId.STATUS_INFO:
        if _STATUS.size <= len(value) <= _STATUS.size + MAX_STATUS_VALUE:
            attrib_id, status = _STATUS.unpack_from(value)
            return StatusInfo(attrib_id, status, value[_STATUS.size :])
        return UnknownAttribute(attr_id, value)
    if _FIXED_VALUE_LENGTH.get(attr_id) != len(value):
        return UnknownAttribute(attr_id, value)
    if attr_id == AttributeId.ENCAPSULATED_PROTOCOL_ID:
        return EncapsulatedProtocolId(_U16.unpack(value)[0])
    if attr_id == AttributeId.CRYPTO_BINDING_REQ:
        return CryptoBindingRequest(value[3], value[4:])
    return CryptoBinding(value[3], value[4:36], value[36:68], value[68:100])


def decode_control(body: bytes | bytearray | memoryview) -> ControlMessage:
    """Decode a control message from the bytes after the 4-byte SSTP header."""
    body = bytes(body)
    if len(body) < _MSG_HEADER.size:
        raise ParseError("truncated control message header")
    msg_type, count = _MSG_HEADER.unpack_from(body)
    attributes: list[Attribute] = []
    pos = _MSG_HEADER.size
    for _ in range(count):
        if len(body) - pos < _ATTR_HEADER.size:
            raise ParseError(f"truncated attribute header at offset {pos}")
        attr_id, length = _ATTR_HEADER.unpack_from(body, pos)
        length &= _LENGTH_MASK
        if length < _ATTR_HEADER.size or pos + length > len(body):
            raise ParseError(f"bad attribute length {length} at offset {pos}")
        attributes.append(_decode_attribute(attr_id, body[pos + 4 : pos + length]))
        pos += length
    if pos != len(body):
        raise ParseError(f"{len(body) - pos} bytes after the last attribute")
    if msg_type in _KNOWN_TYPES:
        msg_type = MessageType(msg_type)
    return ControlMessage(msg_type, tuple(attributes))


class PacketReader:
    """Split a byte stream into SSTP packets.

    ``feed()`` appends bytes; ``next_packet()`` returns ``(is_control, payload)`` (payload =
    bytes after the header) or ``None`` when more bytes are needed, and raises ``ParseError``
    as soon as a header is bad (§3.1.5.1: the caller then drops the connection). Callers drain
    with ``next_packet()`` after every ``feed()``, so the buffer holds at most one incomplete
    packet (< 4095 bytes) plus the last chunk fed.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a packet."""
        return len(self._buf) - self._pos

    def next_packet(self) -> tuple[bool, bytes] | None:
        if len(self._buf) - self._pos < HEADER_SIZE:
            return None
        is_control, length = parse_header(self._buf, self._pos)
        end = self._pos + length
        if end > len(self._buf):
            return None
        payload = bytes(self._buf[self._pos + HEADER_SIZE : end])
        self._pos = end
        return is_control, payload
