"""The ICMPv6 envelope of every ND message: IPv6 header, checksum, RFC 4861 validity.

Kept apart from the message bodies (:mod:`.messages`) because this is the part RFC 4861
§6.1 and §7.1 impose on *every* received ND packet whatever its type: hop
limit 255 (an off-link sender cannot forge it), a valid checksum over the pseudo-header,
code 0, the type's minimum length and options that each have a non-zero length and fit.

:func:`wrap` puts an ICMPv6 message into an IPv6 packet (hop limit 255, checksum filled
in), :func:`unwrap` checks a received one and returns its header, type and message;
:func:`split_options` cuts the option area into ``(type, option bytes)`` (length unit 8
octets). Also the ND constants: the multicast groups, message types and option types.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

from sstpd.errors import ParseError
from sstpd.proto.ipv6.packet import (
    NEXT_HEADER_ICMPV6,
    Ipv6Header,
    checksum,
    decode_ipv6,
    encode_ipv6,
    pseudo_header,
)

__all__ = ["ALL_NODES", "ALL_ROUTERS", "MIN_LENGTH", "split_options", "unwrap", "wrap"]


ALL_NODES = IPv6Address("ff02::1")
ALL_ROUTERS = IPv6Address("ff02::2")
ND_HOP_LIMIT = 255

TYPE_RS, TYPE_RA, TYPE_NS, TYPE_NA = 133, 134, 135, 136
OPT_SOURCE_LLA, OPT_TARGET_LLA, OPT_PREFIX, OPT_MTU, OPT_RDNSS = 1, 2, 3, 5, 25
MIN_LENGTH = {TYPE_RS: 8, TYPE_RA: 16, TYPE_NS: 24, TYPE_NA: 24}  # RFC 4861 §6.1, §7.1


def wrap(src: IPv6Address, dst: IPv6Address, message: bytes) -> bytes:
    """An IPv6 packet carrying the ICMPv6 ``message`` (checksum bytes 2-3 are filled in)."""
    if len(message) < 4:
        raise ValueError("an ICMPv6 message has at least 4 bytes")
    body = message[:2] + b"\x00\x00" + message[4:]
    value = checksum(pseudo_header(src, dst, len(body), NEXT_HEADER_ICMPV6) + body)
    body = body[:2] + struct.pack("!H", value) + body[4:]
    return encode_ipv6(Ipv6Header(src, dst, NEXT_HEADER_ICMPV6, ND_HOP_LIMIT), body)


def unwrap(packet: bytes) -> tuple[Ipv6Header, int, bytes]:
    """``(header, ICMPv6 type, message)`` of a received ND packet, validated."""
    header, message = decode_ipv6(packet)
    if header.next_header != NEXT_HEADER_ICMPV6:
        raise ParseError(f"next header {header.next_header} is not ICMPv6")
    if header.hop_limit != ND_HOP_LIMIT:
        raise ParseError(f"ND hop limit {header.hop_limit} is not 255 (off-link sender)")
    if len(message) < 4:
        raise ParseError("ICMPv6 message shorter than 4 bytes")
    kind, code = message[0], message[1]
    minimum = MIN_LENGTH.get(kind)
    if minimum is None:
        raise ParseError(f"ICMPv6 type {kind} is not a Neighbor Discovery message we handle")
    if code != 0:
        raise ParseError(f"ND code {code} is not 0")
    if len(message) < minimum:
        raise ParseError(f"ICMPv6 type {kind} of {len(message)} bytes, at least {minimum}")
    total = pseudo_header(header.src, header.dst, len(message), NEXT_HEADER_ICMPV6) + message
    if checksum(total) != 0:
        raise ParseError("ICMPv6 checksum mismatch")
    split_options(message[minimum:])  # every option well formed (RFC 4861 §6.1.1)
    return header, kind, message


def split_options(buf: bytes) -> list[tuple[int, bytes]]:
    """``(type, whole option bytes)`` of each option; length unit is 8 octets."""
    out = []
    off = 0
    while off < len(buf):
        if off + 2 > len(buf):
            raise ParseError("ND option truncated in its header")
        kind, units = buf[off], buf[off + 1]
        if units == 0 or off + 8 * units > len(buf):
            raise ParseError(f"ND option {kind} has bad length {units}")
        out.append((kind, buf[off : off + 8 * units]))
        off += 8 * units
    return out
