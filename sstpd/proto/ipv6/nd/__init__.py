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

The modules: ``envelope`` (``wrap``, ``unwrap``, option framing, the ND constants),
``messages`` (RS, RA, NS, NA and their codecs), ``advertiser`` (``session_advertisement``,
``advertise``, ``Advertiser``: the server's RA content and schedule). This package
re-exports every name they define.
"""

from __future__ import annotations

from sstpd.proto.ipv6.nd.advertiser import Advertiser, advertise, session_advertisement
from sstpd.proto.ipv6.nd.envelope import (
    ALL_NODES,
    ALL_ROUTERS,
    MIN_LENGTH,
    ND_HOP_LIMIT,
    OPT_MTU,
    OPT_PREFIX,
    OPT_RDNSS,
    OPT_SOURCE_LLA,
    OPT_TARGET_LLA,
    TYPE_NA,
    TYPE_NS,
    TYPE_RA,
    TYPE_RS,
    split_options,
    unwrap,
    wrap,
)
from sstpd.proto.ipv6.nd.messages import (
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInformation,
    RouterAdvertisement,
    RouterSolicitation,
    decode_na,
    decode_ns,
    decode_ra,
    decode_rs,
    encode_na,
    encode_ns,
    encode_ra,
    encode_rs,
)
from sstpd.proto.ipv6.packet import Ipv6Header as Ipv6Header  # the decoders' argument type

__all__ = [
    "ALL_NODES",
    "ALL_ROUTERS",
    "MIN_LENGTH",
    "ND_HOP_LIMIT",
    "OPT_MTU",
    "OPT_PREFIX",
    "OPT_RDNSS",
    "OPT_SOURCE_LLA",
    "OPT_TARGET_LLA",
    "TYPE_NA",
    "TYPE_NS",
    "TYPE_RA",
    "TYPE_RS",
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
    "split_options",
    "unwrap",
    "wrap",
]
