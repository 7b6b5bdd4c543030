"""The ND message bodies this link uses: RS, RA (PIO, MTU, RDNSS), NS and NA.

Kept apart from the envelope (:mod:`.envelope`, checked before the type is known) and
from the server's advertising (:mod:`.advertiser`, policy and timing): this module is
only layout, each message a dataclass with ``encode_*``/``decode_*`` and round-trip
tests. A decoder takes the header and message :func:`.envelope.unwrap` returned and adds
the checks specific to its type (RFC 4861 §6.1.1-§7.1.2): an RA only from a
link-local source, no Source Link-Layer Address option from the unspecified address, a
DAD NS only to a solicited-node group, no multicast NS/NA target. Decoders raise only
ParseError; unknown options are skipped (RFC 4861 §4.6 "MUST silently ignore"). PPP has
no link-layer address, so no Link-Layer Address option is ever sent.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from sstpd.errors import ParseError
from sstpd.proto.ipv6.nd.envelope import (
    MIN_LENGTH,
    OPT_MTU,
    OPT_PREFIX,
    OPT_RDNSS,
    OPT_SOURCE_LLA,
    TYPE_NA,
    TYPE_NS,
    TYPE_RA,
    TYPE_RS,
    split_options,
)
from sstpd.proto.ipv6.packet import Ipv6Header

__all__ = [
    "NeighborAdvertisement",
    "NeighborSolicitation",
    "PrefixInformation",
    "RouterAdvertisement",
    "RouterSolicitation",
    "decode_na",
    "decode_ns",
    "decode_ra",
    "decode_rs",
    "encode_na",
    "encode_ns",
    "encode_ra",
    "encode_rs",
]


_RA = struct.Struct("!BBHBBHII")
_PREFIX = struct.Struct("!BBBBIII16s")
_MTU = struct.Struct("!BBHI")
_RDNSS = struct.Struct("!BBHI")
_NA_ROUTER, _NA_SOLICITED, _NA_OVERRIDE = 0x80, 0x40, 0x20
_PIO_ON_LINK, _PIO_AUTONOMOUS = 0x80, 0x40
_RA_MANAGED, _RA_OTHER = 0x80, 0x40
_LINK_LOCAL = IPv6Network("fe80::/10")
_SOLICITED_NODE_PREFIX = IPv6Address("ff02::1:ff00:0").packed[:13]  # RFC 4291 §2.7.1


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
    for kind, opt in split_options(message[16:]):
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
    if len(message) < MIN_LENGTH[kind] or message[0] != kind:
        raise ParseError(f"not an ICMPv6 type {kind} message")


def _lla_option(kind: int, lla: bytes) -> bytes:
    size = -(-(2 + len(lla)) // 8) * 8
    return bytes((kind, size // 8)) + lla + bytes(size - 2 - len(lla))


def _find_lla(buf: bytes, kind: int) -> bytes | None:
    for found, opt in split_options(buf):
        if found == kind:
            return opt[2:]
    return None


def _solicited_node(address: IPv6Address) -> bool:
    return address.packed[:13] == _SOLICITED_NODE_PREFIX
