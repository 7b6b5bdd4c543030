"""IPv6 header codec, the Internet checksum, and the classifier of packets from a session.

What a session may send (docs/protocol/ipv6-dhcp.md §5): each client gets a whole /64 (Windows uses
random interface identifiers and temporary addresses, not its IPV6CP identifier), so any
source inside that /64 is forwarded to the TUN; its link-local address ``fe80::<IID>`` and
the unspecified address (DAD, Router Solicitation before an address exists) are allowed
too, but such packets stay on the link. :func:`classify` decides, per packet:

* ``FORWARD``: source in the session's /64, not link-scoped, not Neighbor Discovery: to
  the TUN (the I/O layer's fast path).
* ``LOCAL``: link-local or unspecified source, link-scoped destination (``fe80::/10``,
  ``ff01::/16``, ``ff02::/16``), or an ICMPv6 ND message (types 133-137): handled in
  userspace (:mod:`sstpd.proto.ipv6.nd`), never written to the TUN.
* ``SPOOFED``: any other source (outside the /64, another link-local address than the
  session's, unspecified source to a routed destination): dropped and counted.
* ``MALFORMED``: not a whole IPv6 header, or a payload length beyond the packet.

Nothing here raises on peer input except the decoders, which raise only ParseError.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from sstpd.errors import ParseError
from sstpd.proto.inet import checksum

__all__ = [
    "HEADER_SIZE",
    "ND_TYPES",
    "NEXT_HEADER_ICMPV6",
    "NEXT_HEADER_UDP",
    "Ipv6Header",
    "Verdict",
    "checksum",
    "classify",
    "decode_ipv6",
    "encode_ipv6",
    "pseudo_header",
    "upper_layer",
]

HEADER_SIZE = 40
NEXT_HEADER_UDP = 17
NEXT_HEADER_ICMPV6 = 58
NEXT_HEADER_FRAGMENT = 44
NEXT_HEADER_NONE = 59
# Hop-by-Hop, Routing, Destination Options: walked to find the upper-layer protocol.
_EXTENSION_HEADERS = frozenset({0, 43, 60})
_MAX_EXTENSION_HEADERS = 8  # a legitimate packet has a few; bound the walk
ND_TYPES = range(133, 138)  # RS, RA, NS, NA, Redirect
_UNSPECIFIED = bytes(16)
_HEADER = struct.Struct("!IHBB16s16s")


@dataclass(frozen=True)
class Ipv6Header:
    """The fixed IPv6 header (RFC 8200 §3); the payload length is derived on encode."""

    src: IPv6Address
    dst: IPv6Address
    next_header: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0


def encode_ipv6(header: Ipv6Header, payload: bytes) -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError("IPv6 payload longer than 65535 bytes (no jumbograms on PPP)")
    first = (6 << 28) | (header.traffic_class << 20) | header.flow_label
    return (
        _HEADER.pack(
            first,
            len(payload),
            header.next_header,
            header.hop_limit,
            header.src.packed,
            header.dst.packed,
        )
        + payload
    )


def decode_ipv6(packet: bytes) -> tuple[Ipv6Header, bytes]:
    """Split an IPv6 packet into its header and payload; bytes beyond the payload length
    (link padding) are ignored."""
    if len(packet) < HEADER_SIZE:
        raise ParseError(f"IPv6 packet of {len(packet)} bytes is shorter than its header")
    first, length, next_header, hop_limit, src, dst = _HEADER.unpack_from(packet)
    if first >> 28 != 6:
        raise ParseError(f"IP version {first >> 28} where 6 was expected")
    if HEADER_SIZE + length > len(packet):
        raise ParseError(f"IPv6 payload length {length} exceeds the {len(packet)}-byte packet")
    header = Ipv6Header(
        src=IPv6Address(src),
        dst=IPv6Address(dst),
        next_header=next_header,
        hop_limit=hop_limit,
        traffic_class=(first >> 20) & 0xFF,
        flow_label=first & 0xFFFFF,
    )
    return header, bytes(packet[HEADER_SIZE : HEADER_SIZE + length])


def pseudo_header(src: IPv6Address, dst: IPv6Address, length: int, next_header: int) -> bytes:
    """The upper-layer checksum pseudo-header of RFC 8200 §8.1."""
    return src.packed + dst.packed + struct.pack("!I3xB", length, next_header)


def upper_layer(packet: bytes | memoryview) -> tuple[int, int] | None:
    """``(protocol, offset)`` of the upper-layer header after any Hop-by-Hop, Routing and
    Destination Options headers; None when the chain is cut short or too long. A
    Fragment header is reported as protocol 44 (what follows it may be a later fragment).
    """
    if len(packet) < HEADER_SIZE:
        return None
    protocol, offset = packet[6], HEADER_SIZE
    for _ in range(_MAX_EXTENSION_HEADERS):
        if protocol not in _EXTENSION_HEADERS:
            return protocol, offset
        if offset + 2 > len(packet):
            return None
        protocol, offset = packet[offset], offset + 8 * (packet[offset + 1] + 1)
    return None


@enum.unique
class Verdict(enum.IntEnum):
    FORWARD = 0
    LOCAL = 1
    SPOOFED = 2
    MALFORMED = 3


def _link_scoped(address: bytes | memoryview) -> bool:
    if address[0] == 0xFE:
        return address[1] & 0xC0 == 0x80  # fe80::/10
    return address[0] == 0xFF and address[1] & 0x0F <= 2  # multicast, scope <= link


def classify(
    packet: bytes | memoryview, prefix: bytes, peer_link_local: bytes | None = None
) -> Verdict:
    """Classify one IPv6 packet a session sent. ``prefix`` is the first 8 bytes of its
    /64; ``peer_link_local`` its 16-byte ``fe80::<IID>`` (None: not known, any
    link-local source is accepted for the link)."""
    n = len(packet)
    if n < HEADER_SIZE or packet[0] >> 4 != 6 or HEADER_SIZE + (packet[4] << 8 | packet[5]) > n:
        return Verdict.MALFORMED
    src = packet[8:24]
    if src[:8] == prefix:
        if _link_scoped(packet[24:40]):
            return Verdict.LOCAL
        if packet[6] == NEXT_HEADER_ICMPV6:  # the common case, no extension header
            return Verdict.LOCAL if n > HEADER_SIZE and packet[40] in ND_TYPES else Verdict.FORWARD
        if packet[6] in _EXTENSION_HEADERS:
            upper = upper_layer(packet)
            if upper is None:
                return Verdict.MALFORMED
            protocol, offset = upper
            if protocol == NEXT_HEADER_ICMPV6 and offset < n and packet[offset] in ND_TYPES:
                return Verdict.LOCAL
        return Verdict.FORWARD
    if src[0] == 0xFE and src[1] & 0xC0 == 0x80:
        if peer_link_local is None or src == peer_link_local:
            return Verdict.LOCAL
        return Verdict.SPOOFED
    if src == _UNSPECIFIED and _link_scoped(packet[24:40]):
        return Verdict.LOCAL  # DAD Neighbor Solicitation, early Router Solicitation
    return Verdict.SPOOFED
