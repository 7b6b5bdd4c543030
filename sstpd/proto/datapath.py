"""The IP data path's bytes and counters: one definition for every layer that touches them.

An IP packet crosses the tunnel as one SSTP data packet (§2.2.1: 4-byte header, version
1.0, C bit clear, 12-bit length) carrying one PPP frame: ``FF 03`` (address and control),
the 2-byte PPP protocol of its family, the packet. We always send that full form; a peer
that negotiated ACFC and/or PFC (RFC 1661 §6.5, §6.6) may leave out ``FF 03`` and the
protocol's leading ``00``, so a received frame is decoded with ``ppp.frame.decode_frame``
and its protocol looked up in ``FAMILY_OF``.

The SSTP header: version byte (``SSTP_VERSION``), C bit (bit 0 of byte 1), length (low 12
bits of bytes 2-3, ``LENGTH_MASK``); ``sstp.packets.parse_header`` is its checked decoder.

Users: the receive fast path in ``aio.protocol`` (reads the header and the full-form
``PPP_HEADER`` in place, by index), the session's slow path in ``session`` (every
encoding), the send side in ``aio.datapath`` (``data_prefix`` before each packet of a
batch). Each family has a row in the tables below; both are wired (IPv6 on a server
whose IPV6CP is open: ``session.ServerSession.forwardable6`` is the fast path's check).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from sstpd.proto.ppp.frame import Protocol
from sstpd.proto.sstp.constants import HEADER_SIZE, MAX_PACKET_SIZE, SSTP_VERSION

__all__ = [
    "FAMILY_OF",
    "HEADER_SIZE",
    "IPV4_DESTINATION",
    "IPV4_MIN_FAST",
    "IPV4_SOURCE",
    "IPV6_DESTINATION",
    "IPV6_MIN_FAST",
    "IPV6_SOURCE",
    "LENGTH_MASK",
    "PPP_HEADER",
    "PREFIX_SIZE",
    "SSTP_VERSION",
    "Counters",
    "Family",
    "data_prefix",
    "encode_ip_packet",
    "ip_prefix",
]


@enum.unique
class Family(enum.IntEnum):
    """An IP family; the value is the version nibble of its packets."""

    IPV4 = 4
    IPV6 = 6


#: PPP protocol number -> family (RFC 1332 IPv4, RFC 5072 IPv6).
FAMILY_OF: dict[int, Family] = {Protocol.IPV4: Family.IPV4, Protocol.IPV6: Family.IPV6}
#: The full-form PPP header per family: what we send, and all the fast path matches.
PPP_HEADER: dict[Family, bytes] = {
    f: b"\xff\x03" + struct.pack("!H", p) for p, f in FAMILY_OF.items()
}

LENGTH_MASK = MAX_PACKET_SIZE  # 0x0FFF: the length is the low 12 bits of bytes 2-3
PREFIX_SIZE = HEADER_SIZE + 4  # SSTP header + full-form PPP header: where the packet starts
IPV4_SOURCE = 12  # offset of the source address in an IPv4 header (4 bytes)
IPV4_DESTINATION = 16  # offset of the destination address (4 bytes): the TUN pump's key
IPV6_SOURCE = 8  # offset of the source address in an IPv6 header (16 bytes)
IPV6_DESTINATION = 24  # offset of the destination (16 bytes; its first 8: the pump's key)
#: Shortest SSTP data packet the IPv6 fast path takes: a whole fixed IPv6 header.
IPV6_MIN_FAST = PREFIX_SIZE + 40
#: Shortest SSTP data packet the fast path takes: through the IPv4 source address (the
#: address check needs it); shorter ones go the slow path, which drops them.
IPV4_MIN_FAST = PREFIX_SIZE + IPV4_SOURCE + 4

_PREFIX = struct.Struct("!BBHI")
_PPP_WORD = {f: int.from_bytes(h, "big") for f, h in PPP_HEADER.items()}
_IPV4_WORD = _PPP_WORD[Family.IPV4]


def data_prefix(length: int, family: Family = Family.IPV4) -> bytes:
    """The 8 bytes before an IP packet of ``length`` bytes in an SSTP data packet.

    Kept apart from the packet so the data path can join many of them in one copy."""
    return _PREFIX.pack(SSTP_VERSION, 0, length + PREFIX_SIZE, _PPP_WORD[family])


def ip_prefix(length: int) -> bytes:
    """``data_prefix`` of an IPv4 packet (the common case, without the table lookup)."""
    return _PREFIX.pack(SSTP_VERSION, 0, length + PREFIX_SIZE, _IPV4_WORD)


def encode_ip_packet(packet: bytes, family: Family = Family.IPV4) -> bytes:
    """One SSTP data packet carrying ``packet`` (full-form PPP header, no ACFC/PFC)."""
    return data_prefix(len(packet), family) + packet


@dataclass
class Counters:
    """Per session, both paths: packets and bytes are IP packets (no SSTP/PPP headers)."""

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    dropped_spoofed: int = 0  # from the peer with a source address not its own
    dropped_not_open: int = 0  # data before the binding is verified or the NCP is up
    dropped_overflow: int = 0  # to the peer while its connection's send buffer was full
    dropped_dhcp: int = 0  # to UDP port 67 but not this session's DHCPINFORM (or a bad ACK)
    dhcp_answered: int = 0
    rx_gso_writes: int = 0  # TUN writes that carried coalesced TCP segments (offload)
    rx_gso_packets: int = 0  # of rx_packets, those that went in such writes
    # IPv6 (also counted in rx_*/tx_* above)
    rx6_packets: int = 0
    rx6_bytes: int = 0
    tx6_packets: int = 0
    tx6_bytes: int = 0
    dropped_spoofed6: int = 0  # source outside the session's /64 and link-local address
    dropped_invalid6: int = 0  # not a whole IPv6 packet
    dropped_nd_invalid: int = 0  # Neighbor Discovery failing RFC 4861's checks
    nd_rate_limited: int = 0  # Router Solicitations beyond one answer per 3 s
