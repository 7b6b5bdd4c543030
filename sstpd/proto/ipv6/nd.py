"""ICMPv6 Neighbor Discovery on the PPP link (RFC 4861, RDNSS from RFC 8106).

The server sends a Router Advertisement with the session's /64 when IPV6CP opens and in
answer to each Router Solicitation (docs/protocol/ipv6-dhcp.md §2-§3), and answers a Neighbor
Solicitation for its own addresses with a Neighbor Advertisement (§5). The client side
sends a Router Solicitation and reads the Advertisement. PPP has no link-layer address,
so no Source/Target Link-Layer Address option is ever sent.

Layout: :func:`wrap` puts an ICMPv6 message into an IPv6 packet (hop limit 255, checksum
over the pseudo-header) and :func:`unwrap` checks a received one the way RFC 4861 §6.1
and §7.1.1 require: hop limit 255, valid checksum, code 0, minimum length, every option
with a non-zero length that fits. Then ``encode_*``/``decode_*`` turn each message body
into a dataclass and back. Decoders raise only ParseError; unknown options are skipped
(RFC 4861 §4.6 "MUST silently ignore").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from sstpd.errors import ParseError
from sstpd.proto.ipv6.packet import (
    NEXT_HEADER_ICMPV6,
    Ipv6Header,
    checksum,
    decode_ipv6,
    encode_ipv6,
    pseudo_header,
)
from sstpd.proto.ppp.ipv6cp import link_local

__all__ = [
    "ALL_NODES",
    "ALL_ROUTERS",
    "Advertiser",
    "NeighborAdvertisement",
    "NeighborSolicitation",
    "PrefixInformation",
    "RouterAdvertisement",
    "RouterSolicitation",
    "advertise",
    "decode_na",
    "decode_ns",
    "decode_ra",
    "decode_rs",
    "encode_na",
    "encode_ns",
    "encode_ra",
    "encode_rs",
    "session_advertisement",
    "unwrap",
    "wrap",
]

ALL_NODES = IPv6Address("ff02::1")
ALL_ROUTERS = IPv6Address("ff02::2")
ND_HOP_LIMIT = 255

TYPE_RS, TYPE_RA, TYPE_NS, TYPE_NA = 133, 134, 135, 136
OPT_SOURCE_LLA, OPT_TARGET_LLA, OPT_PREFIX, OPT_MTU, OPT_RDNSS = 1, 2, 3, 5, 25
_MIN_LENGTH = {TYPE_RS: 8, TYPE_RA: 16, TYPE_NS: 24, TYPE_NA: 24}  # RFC 4861 §6.1, §7.1
_RA = struct.Struct("!BBHBBHII")
_PREFIX = struct.Struct("!BBBBIII16s")
_MTU = struct.Struct("!BBHI")
_RDNSS = struct.Struct("!BBHI")
_NA_ROUTER, _NA_SOLICITED, _NA_OVERRIDE = 0x80, 0x40, 0x20
_PIO_ON_LINK, _PIO_AUTONOMOUS = 0x80, 0x40
_RA_MANAGED, _RA_OTHER = 0x80, 0x40
_LINK_LOCAL = IPv6Network("fe80::/10")
_SOLICITED_NODE_PREFIX = IPv6Address("ff02::1:ff00:0").packed[:13]  # RFC 4291 §2.7.1


# ---------------------------------------------------------------------------- envelope


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
    minimum = _MIN_LENGTH.get(kind)
    if minimum is None:
        raise ParseError(f"ICMPv6 type {kind} is not a Neighbor Discovery message we handle")
    if code != 0:
        raise ParseError(f"ND code {code} is not 0")
    if len(message) < minimum:
        raise ParseError(f"ICMPv6 type {kind} of {len(message)} bytes, at least {minimum}")
    total = pseudo_header(header.src, header.dst, len(message), NEXT_HEADER_ICMPV6) + message
    if checksum(total) != 0:
        raise ParseError("ICMPv6 checksum mismatch")
    _options(message[minimum:])  # every option well formed (RFC 4861 §6.1.1)
    return header, kind, message


def _options(buf: bytes) -> list[tuple[int, bytes]]:
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


# ---------------------------------------------------------------------------- RS


@dataclass(frozen=True)
class RouterSolicitation:
    """RS (RFC 4861 §4.1); ``source_lla`` is the raw option data, if any (not on PPP)."""

    source_lla: bytes | None = None


def encode_rs(rs: RouterSolicitation) -> bytes:
    message = struct.pack("!BBHI", TYPE_RS, 0, 0, 0)
    if rs.source_lla is not None:
        message += _lla_option(OPT_SOURCE_LLA, rs.source_lla)
    return message


def decode_rs(header: Ipv6Header, message: bytes) -> RouterSolicitation:
    _expect(message, TYPE_RS)
    lla = _find_lla(message[8:], OPT_SOURCE_LLA)
    if lla is not None and header.src.is_unspecified:
        raise ParseError("RS from the unspecified address with a Source LLA option")
    return RouterSolicitation(lla)


# ---------------------------------------------------------------------------- RA


@dataclass(frozen=True)
class PrefixInformation:
    """Prefix Information option (RFC 4861 §4.6.2); defaults as accel-ppp's."""

    prefix: IPv6Network
    on_link: bool = True  # L
    autonomous: bool = True  # A: the client forms its addresses in it (SLAAC)
    valid_lifetime: int = 2592000
    preferred_lifetime: int = 604800


@dataclass(frozen=True)
class RouterAdvertisement:
    """RA (RFC 4861 §4.2) with the options this server sends: PIO, MTU and RDNSS."""

    cur_hop_limit: int = 64
    managed: bool = False  # M: addresses from DHCPv6
    other: bool = False  # O: other configuration from DHCPv6
    router_lifetime: int = 1800
    reachable_time: int = 0
    retrans_timer: int = 0
    prefixes: tuple[PrefixInformation, ...] = ()
    mtu: int | None = None
    dns: tuple[IPv6Address, ...] = ()
    dns_lifetime: int = 1800


def encode_ra(ra: RouterAdvertisement) -> bytes:
    flags = (_RA_MANAGED if ra.managed else 0) | (_RA_OTHER if ra.other else 0)
    message = _RA.pack(
        TYPE_RA,
        0,
        0,
        ra.cur_hop_limit,
        flags,
        ra.router_lifetime,
        ra.reachable_time,
        ra.retrans_timer,
    )
    for p in ra.prefixes:
        pio = (_PIO_ON_LINK if p.on_link else 0) | (_PIO_AUTONOMOUS if p.autonomous else 0)
        message += _PREFIX.pack(
            OPT_PREFIX,
            4,
            p.prefix.prefixlen,
            pio,
            p.valid_lifetime,
            p.preferred_lifetime,
            0,
            p.prefix.network_address.packed,
        )
    if ra.mtu is not None:
        message += _MTU.pack(OPT_MTU, 1, 0, ra.mtu)
    if ra.dns:
        message += _RDNSS.pack(OPT_RDNSS, 1 + 2 * len(ra.dns), 0, ra.dns_lifetime)
        message += b"".join(a.packed for a in ra.dns)
    return message


def decode_ra(header: Ipv6Header, message: bytes) -> RouterAdvertisement:
    _expect(message, TYPE_RA)
    if header.src not in _LINK_LOCAL:
        raise ParseError(f"RA from {header.src}, not a link-local address")
    _, _, _, hop_limit, flags, lifetime, reachable, retrans = _RA.unpack_from(message)
    prefixes: list[PrefixInformation] = []
    mtu: int | None = None
    dns: list[IPv6Address] = []
    dns_lifetime = RouterAdvertisement.dns_lifetime
    for kind, opt in _options(message[16:]):
        if kind == OPT_PREFIX:
            if len(opt) != 32:
                raise ParseError(f"Prefix Information option of {len(opt)} bytes")
            _, _, length, pio, valid, preferred, _, raw = _PREFIX.unpack(opt)
            if length > 128:
                raise ParseError(f"prefix length {length}")
            try:
                prefix = IPv6Network((IPv6Address(raw), length), strict=False)
            except ValueError as e:  # pragma: no cover - length checked above
                raise ParseError(str(e)) from None
            prefixes.append(
                PrefixInformation(
                    prefix, bool(pio & _PIO_ON_LINK), bool(pio & _PIO_AUTONOMOUS), valid, preferred
                )
            )
        elif kind == OPT_MTU:
            if len(opt) != 8:
                raise ParseError(f"MTU option of {len(opt)} bytes")
            mtu = _MTU.unpack(opt)[3]
        elif kind == OPT_RDNSS:
            if len(opt) < 24:
                raise ParseError("RDNSS option without an address (RFC 8106 §5.1)")
            dns_lifetime = _RDNSS.unpack_from(opt)[3]
            dns += [IPv6Address(opt[i : i + 16]) for i in range(8, len(opt), 16)]
    return RouterAdvertisement(
        cur_hop_limit=hop_limit,
        managed=bool(flags & _RA_MANAGED),
        other=bool(flags & _RA_OTHER),
        router_lifetime=lifetime,
        reachable_time=reachable,
        retrans_timer=retrans,
        prefixes=tuple(prefixes),
        mtu=mtu,
        dns=tuple(dns),
        dns_lifetime=dns_lifetime,
    )


def session_advertisement(
    prefix: IPv6Network,
    *,
    mtu: int | None,
    dns: tuple[IPv6Address, ...] = (),
    interval: float = 600.0,
) -> RouterAdvertisement:
    """The RA for one session (docs/protocol/ipv6-dhcp.md §2, accel-ppp defaults): its /64 with L+A,
    M=O=0, router lifetime 3 x MaxRtrAdvInterval, RDNSS lifetime likewise (RFC 8106 §5.1
    "at least 3 * MaxRtrAdvInterval")."""
    lifetime = min(int(3 * interval), 9000)  # RFC 4861 §6.2.1: router lifetime <= 9000 s
    return RouterAdvertisement(
        router_lifetime=lifetime,
        prefixes=(PrefixInformation(prefix),),
        mtu=mtu,
        dns=dns,
        dns_lifetime=lifetime,
    )


def advertise(server_iid: bytes, dst: IPv6Address, ra: RouterAdvertisement) -> bytes:
    """The whole IPv6 packet of ``ra`` from ``fe80::<server_iid>`` to ``dst``."""
    return wrap(link_local(server_iid), dst, encode_ra(ra))


class Advertiser:
    """When to send RAs on one link (RFC 4861 §6.2.4-§6.2.6), sans-I/O.

    :meth:`start` when IPV6CP opens; then :meth:`get_timer`/:meth:`handle_timer` say when
    an unsolicited RA to ff02::1 is due: ``initial_count`` of them ``initial_interval``
    apart, then one every ``interval``. :meth:`solicited` answers whether a Router
    Solicitation may be answered now: at most one solicited RA per ``min_delay`` seconds
    (MIN_DELAY_BETWEEN_RAS); the rest of an RS flood is counted in ``rate_limited``.
    """

    def __init__(
        self,
        *,
        interval: float = 600.0,
        initial_count: int = 5,
        initial_interval: float = 3.0,
        min_delay: float = 3.0,
    ) -> None:
        self.interval = interval
        self.initial_count = initial_count
        self.initial_interval = initial_interval
        self.min_delay = min_delay
        self.sent = 0
        self.unsolicited = 0
        self.rate_limited = 0
        self._deadline: float | None = None
        self._last: float | None = None

    def start(self, now: float) -> None:
        """The link came up: the first RA is due at once."""
        self.unsolicited = 0
        self._last = None
        self._deadline = now

    def stop(self) -> None:
        self._deadline = None

    def get_timer(self) -> float | None:
        return self._deadline

    def handle_timer(self, now: float) -> bool:
        """True when an unsolicited RA must be sent now (then it counts as sent)."""
        if self._deadline is None or now < self._deadline:
            return False
        self._sent_at(now)
        self.unsolicited += 1
        initial = self.unsolicited < self.initial_count
        step = self.initial_interval if initial else self.interval
        self._deadline = now + step
        return True

    def solicited(self, now: float) -> bool:
        """True when the RS just received may be answered now."""
        if self._deadline is None:
            return False  # IPV6CP is not open: nothing to advertise
        if self._last is not None and now - self._last < self.min_delay:
            self.rate_limited += 1
            return False
        self._sent_at(now)
        return True

    def _sent_at(self, now: float) -> None:
        self.sent += 1
        self._last = now


# ---------------------------------------------------------------------------- NS / NA


@dataclass(frozen=True)
class NeighborSolicitation:
    """NS (RFC 4861 §4.3): DAD when sent from ``::``, else address resolution or NUD."""

    target: IPv6Address
    source_lla: bytes | None = None


@dataclass(frozen=True)
class NeighborAdvertisement:
    """NA (RFC 4861 §4.4); the server answers with ``router``, ``solicited``, ``override``."""

    target: IPv6Address
    router: bool = True
    solicited: bool = True
    override: bool = True


def encode_ns(ns: NeighborSolicitation) -> bytes:
    message = struct.pack("!BBHI", TYPE_NS, 0, 0, 0) + ns.target.packed
    if ns.source_lla is not None:
        message += _lla_option(OPT_SOURCE_LLA, ns.source_lla)
    return message


def decode_ns(header: Ipv6Header, message: bytes) -> NeighborSolicitation:
    _expect(message, TYPE_NS)
    target = IPv6Address(message[8:24])
    if target.is_multicast:
        raise ParseError(f"NS for the multicast address {target}")
    lla = _find_lla(message[24:], OPT_SOURCE_LLA)
    if header.src.is_unspecified and (lla is not None or not _solicited_node(header.dst)):
        raise ParseError("DAD NS not to a solicited-node group, or with a Source LLA")
    return NeighborSolicitation(target, lla)


def encode_na(na: NeighborAdvertisement) -> bytes:
    flags = (
        (_NA_ROUTER if na.router else 0)
        | (_NA_SOLICITED if na.solicited else 0)
        | (_NA_OVERRIDE if na.override else 0)
    )
    return struct.pack("!BBHB3x", TYPE_NA, 0, 0, flags) + na.target.packed


def decode_na(header: Ipv6Header, message: bytes) -> NeighborAdvertisement:
    _expect(message, TYPE_NA)
    target = IPv6Address(message[8:24])
    flags = message[4]
    if target.is_multicast or (flags & _NA_SOLICITED and header.dst.is_multicast):
        raise ParseError("NA for a multicast target, or solicited NA to a multicast group")
    return NeighborAdvertisement(
        target, bool(flags & _NA_ROUTER), bool(flags & _NA_SOLICITED), bool(flags & _NA_OVERRIDE)
    )


# ---------------------------------------------------------------------------- helpers


def _expect(message: bytes, kind: int) -> None:
    if len(message) < _MIN_LENGTH[kind] or message[0] != kind:
        raise ParseError(f"not an ICMPv6 type {kind} message")


def _lla_option(kind: int, lla: bytes) -> bytes:
    size = -(-(2 + len(lla)) // 8) * 8
    return bytes((kind, size // 8)) + lla + bytes(size - 2 - len(lla))


def _find_lla(buf: bytes, kind: int) -> bytes | None:
    for found, opt in _options(buf):
        if found == kind:
            return opt[2:]
    return None


def _solicited_node(address: IPv6Address) -> bool:
    return address.packed[:13] == _SOLICITED_NODE_PREFIX
