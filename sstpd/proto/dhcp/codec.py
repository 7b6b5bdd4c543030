"""The DHCP byte formats: IPv4 + UDP envelope, BOOTP/DHCP message, RFC 3442 routes.

Kept apart from the INFORM/ACK exchange (:mod:`.exchange`) because these are plain
codecs with round-trip tests and a fuzzed decoder, and know nothing of sessions: the
exchange decides what a packet must contain, this module only how it is laid out.

The codec covers IPv4 and UDP too, so the data path can hand a packet over as it came
off the link. :func:`is_dhcp_request` and :func:`is_dhcp_reply` are the data path's cheap
tests (a UDP packet to port 67 or 68) before anything is decoded. Decoders raise only
ParseError: truncation, bad checksums, fragments, a protocol other than UDP, messages
over :data:`MAX_MESSAGE`, options or routes that overrun their bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from sstpd.errors import ParseError
from sstpd.proto.inet import checksum

__all__ = [
    "MAX_MESSAGE",
    "BootpMessage",
    "IPv4Udp",
    "decode_bootp",
    "decode_classless_routes",
    "decode_ipv4_udp",
    "encode_bootp",
    "encode_classless_routes",
    "encode_ipv4_udp",
    "is_dhcp_reply",
    "is_dhcp_request",
]

SERVER_PORT, CLIENT_PORT = 67, 68
BOOTREQUEST, BOOTREPLY = 1, 2
DHCPINFORM, DHCPACK = 8, 5
OPT_PAD, OPT_END = 0, 255
OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_DOMAIN = 1, 3, 6, 15
OPT_LEASE_TIME, OPT_MESSAGE_TYPE, OPT_SERVER_ID = 51, 53, 54
OPT_PARAMETER_REQUEST_LIST, OPT_VENDOR_CLASS, OPT_CLIENT_ID = 55, 60, 61
OPT_CLASSLESS_ROUTES, OPT_MS_CLASSLESS_ROUTES = 121, 249
MAGIC_COOKIE = b"\x63\x82\x53\x63"
FIXED_SIZE = 236  # op .. file, before the magic cookie (RFC 2131 §2)
MIN_REPLY = 300  # BOOTP minimum message length (RFC 1542 §2.1); pad replies to it
MAX_MESSAGE = 1500  # larger "DHCP messages" from a client are refused, not parsed
TTL = 64
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_ANY = IPv4Address(0)


# ---------------------------------------------------------------------------- IPv4 + UDP


@dataclass(frozen=True)
class IPv4Udp:
    """One UDP datagram in an unfragmented IPv4 packet without IP options."""

    src: IPv4Address
    dst: IPv4Address
    src_port: int
    dst_port: int
    payload: bytes
    ttl: int = TTL
    identification: int = 0


def _udp_checksum(src: IPv4Address, dst: IPv4Address, segment: bytes) -> int:
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 17, len(segment))
    value = checksum(pseudo + segment)
    return value or 0xFFFF  # 0 means "no checksum" in UDP over IPv4 (RFC 768)


def encode_ipv4_udp(d: IPv4Udp) -> bytes:
    length = 8 + len(d.payload)
    if 20 + length > 0xFFFF:
        raise ValueError("UDP payload too long for one IPv4 packet")
    segment = _UDP.pack(d.src_port, d.dst_port, length, 0) + d.payload
    segment = segment[:6] + struct.pack("!H", _udp_checksum(d.src, d.dst, segment)) + segment[8:]
    header = _IPV4.pack(
        0x45, 0, 20 + length, d.identification, 0, d.ttl, 17, 0, d.src.packed, d.dst.packed
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + segment


def decode_ipv4_udp(packet: bytes) -> IPv4Udp:
    """Decode and verify (IPv4 header checksum, UDP checksum when present); bytes after
    the IPv4 total length are link padding and ignored."""
    if len(packet) < 20:
        raise ParseError(f"IPv4 packet of {len(packet)} bytes is shorter than its header")
    vihl, _, total, ident, frag, ttl, proto, _, src, dst = _IPV4.unpack_from(packet)
    ihl = 4 * (vihl & 0x0F)
    if vihl >> 4 != 4 or ihl < 20:
        raise ParseError(f"not an IPv4 header (version {vihl >> 4}, header length {ihl})")
    if total < ihl or total > len(packet):
        raise ParseError(f"IPv4 total length {total} does not fit {len(packet)} bytes")
    if checksum(packet[:ihl]) != 0:
        raise ParseError("IPv4 header checksum mismatch")
    if frag & 0x3FFF:
        raise ParseError("fragmented IPv4 packet")
    if proto != 17:
        raise ParseError(f"IP protocol {proto} is not UDP")
    segment = packet[ihl:total]
    if len(segment) < 8:
        raise ParseError("UDP header truncated")
    sport, dport, length, sent = _UDP.unpack_from(segment)
    if length < 8 or length > len(segment):
        raise ParseError(f"UDP length {length} does not fit {len(segment)} bytes")
    segment = segment[:length]
    s, d = IPv4Address(src), IPv4Address(dst)
    if sent != 0 and checksum(s.packed + d.packed + struct.pack("!BBH", 0, 17, length) + segment):
        raise ParseError("UDP checksum mismatch")
    return IPv4Udp(s, d, sport, dport, bytes(segment[8:]), ttl, ident)


def is_dhcp_request(packet: bytes | memoryview) -> bool:
    """The data path's cheap test: an IPv4 UDP packet to port 67 (decode it fully next)."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return False
    ihl = 4 * (packet[0] & 0x0F)
    return len(packet) >= ihl + 4 and packet[ihl + 2] == 0 and packet[ihl + 3] == SERVER_PORT


def is_dhcp_reply(packet: bytes | memoryview) -> bool:
    """The client's cheap test on a received packet: an IPv4 UDP packet to port 68."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return False
    ihl = 4 * (packet[0] & 0x0F)
    return len(packet) >= ihl + 4 and packet[ihl + 2] == 0 and packet[ihl + 3] == CLIENT_PORT


# ---------------------------------------------------------------------------- BOOTP/DHCP


@dataclass(frozen=True)
class BootpMessage:
    """A BOOTP/DHCP message (RFC 2131 §2). ``options`` keeps the order of first
    appearance; repeated options are concatenated (RFC 3396)."""

    op: int
    xid: int
    chaddr: bytes = bytes(16)
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = _ANY
    yiaddr: IPv4Address = _ANY
    siaddr: IPv4Address = _ANY
    giaddr: IPv4Address = _ANY
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value is not None and len(value) == 1 else None


def encode_bootp(m: BootpMessage, *, pad_to: int = MIN_REPLY) -> bytes:
    """Encode with options in ``m.options`` order, then End, zero-padded to ``pad_to``."""
    fixed = _BOOTP.pack(
        m.op,
        m.htype,
        m.hlen,
        m.hops,
        m.xid,
        m.secs,
        m.flags,
        m.ciaddr.packed,
        m.yiaddr.packed,
        m.siaddr.packed,
        m.giaddr.packed,
        m.chaddr,
        b"",
        b"",
    )
    options = b""
    for code, value in m.options.items():
        if not 0 < code < 255 or len(value) > 255:
            raise ValueError(f"option {code} with {len(value)} bytes cannot be encoded")
        options += bytes((code, len(value))) + value
    message = fixed + MAGIC_COOKIE + options + bytes((OPT_END,))
    return message + bytes(max(0, pad_to - len(message)))


def decode_bootp(data: bytes) -> BootpMessage:
    if len(data) > MAX_MESSAGE:
        raise ParseError(f"DHCP message of {len(data)} bytes, more than {MAX_MESSAGE}")
    if len(data) < FIXED_SIZE + 4:
        raise ParseError(f"DHCP message of {len(data)} bytes is truncated")
    fields = _BOOTP.unpack_from(data)
    if data[FIXED_SIZE : FIXED_SIZE + 4] != MAGIC_COOKIE:
        raise ParseError("no DHCP magic cookie")
    op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr = fields[:12]
    return BootpMessage(
        op=op,
        xid=xid,
        chaddr=chaddr,
        htype=htype,
        hlen=hlen,
        hops=hops,
        secs=secs,
        flags=flags,
        ciaddr=IPv4Address(ci),
        yiaddr=IPv4Address(yi),
        siaddr=IPv4Address(si),
        giaddr=IPv4Address(gi),
        options=_decode_options(data[FIXED_SIZE + 4 :]),
    )


def _decode_options(buf: bytes) -> dict[int, bytes]:
    options: dict[int, bytes] = {}
    off = 0
    while off < len(buf):
        code = buf[off]
        if code == OPT_END:
            return options
        if code == OPT_PAD:
            off += 1
            continue
        if off + 2 > len(buf) or off + 2 + buf[off + 1] > len(buf):
            raise ParseError(f"DHCP option {code} truncated")
        value = buf[off + 2 : off + 2 + buf[off + 1]]
        options[code] = options.get(code, b"") + value
        off += 2 + buf[off + 1]
    raise ParseError("DHCP options without an End option")


# ---------------------------------------------------------------------------- RFC 3442


def encode_classless_routes(routes: Iterable[tuple[IPv4Network, IPv4Address]]) -> bytes:
    """Option 121/249 data: per route width, the significant octets, the router."""
    out = b""
    for network, router in routes:
        width = network.prefixlen
        out += bytes((width,)) + network.network_address.packed[: (width + 7) // 8] + router.packed
    return out


def decode_classless_routes(data: bytes) -> list[tuple[IPv4Network, IPv4Address]]:
    routes = []
    off = 0
    while off < len(data):
        width = data[off]
        if width > 32:
            raise ParseError(f"classless route width {width} is more than 32")
        size = (width + 7) // 8
        if off + 1 + size + 4 > len(data):
            raise ParseError("classless route truncated")
        octets = data[off + 1 : off + 1 + size] + bytes(4 - size)
        network = IPv4Network((IPv4Address(octets), width), strict=False)
        routes.append((network, IPv4Address(data[off + 1 + size : off + 5 + size])))
        off += 5 + size
    return routes
