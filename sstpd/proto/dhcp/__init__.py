"""DHCPINFORM in, DHCPACK out: split-tunnel routes and the DNS suffix for Windows clients.

After IPCP a Windows client sends a DHCPINFORM through the tunnel, IPv4 from its own
address to 255.255.255.255, UDP 68 -> 67, ``ciaddr`` = its address (docs/protocol/ipv6-dhcp.md §7).
The server answers into the same session with a DHCPACK (§8): IPv4 from the server's
tunnel address to ``ciaddr``, UDP 67 -> 68, options 53 (ACK), 54 (server identifier),
1 (255.255.255.255), 15 (domain), 6 (DNS) and the classless static routes twice,
identical, as 121 (RFC 3442) and 249 (Microsoft) - and neither a lease time (51, RFC 2131
§4.3.5) nor a router (3, which RFC 3442 tells clients to ignore anyway).

The package is the whole codec, IPv4 and UDP included, so the data path can hand it the
packet as it came off the link: :func:`is_dhcp_request` is the cheap test before the IPv4
fast path, :func:`parse_inform` decodes and checks a request against the session's
address, :func:`build_ack` makes the answer and :func:`answer_inform` does both for a
session (:class:`InformSettings` is what the server pushes). Everything a peer can get
wrong - truncation, bad checksums, fragments, oversized messages, a ``ciaddr`` or source
that is not the session's - raises ParseError; the caller drops the packet and counts it.

The client side (``sstpd connect --accept-routes``) is here too: :func:`build_inform`
makes the request, :func:`is_dhcp_reply` is the receive path's cheap test and
:func:`parse_ack` checks the answer against the request and returns an :class:`AckInfo`
(routes from option 121, or 249 when 121 is absent; domain; DNS servers).

The modules: ``codec`` (IPv4 + UDP, BOOTP/DHCP message and options, RFC 3442 routes, the
wire constants), ``exchange`` (INFORM -> ACK on the server, the client's INFORM and its
check of the ACK). This package re-exports every name they define.
"""

from __future__ import annotations

from sstpd.proto.dhcp.codec import (
    BOOTREPLY,
    BOOTREQUEST,
    CLIENT_PORT,
    DHCPACK,
    DHCPINFORM,
    FIXED_SIZE,
    MAGIC_COOKIE,
    MAX_MESSAGE,
    MIN_REPLY,
    OPT_CLASSLESS_ROUTES,
    OPT_CLIENT_ID,
    OPT_DNS,
    OPT_DOMAIN,
    OPT_END,
    OPT_LEASE_TIME,
    OPT_MESSAGE_TYPE,
    OPT_MS_CLASSLESS_ROUTES,
    OPT_PAD,
    OPT_PARAMETER_REQUEST_LIST,
    OPT_ROUTER,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    OPT_VENDOR_CLASS,
    SERVER_PORT,
    TTL,
    BootpMessage,
    IPv4Udp,
    decode_bootp,
    decode_classless_routes,
    decode_ipv4_udp,
    encode_bootp,
    encode_classless_routes,
    encode_ipv4_udp,
    is_dhcp_reply,
    is_dhcp_request,
)
from sstpd.proto.dhcp.exchange import (
    CLIENT_PARAMETERS,
    AckInfo,
    InformSettings,
    answer_inform,
    build_ack,
    build_inform,
    parse_ack,
    parse_inform,
)

__all__ = [
    "BOOTREPLY",
    "BOOTREQUEST",
    "CLIENT_PARAMETERS",
    "CLIENT_PORT",
    "DHCPACK",
    "DHCPINFORM",
    "FIXED_SIZE",
    "MAGIC_COOKIE",
    "MAX_MESSAGE",
    "MIN_REPLY",
    "OPT_CLASSLESS_ROUTES",
    "OPT_CLIENT_ID",
    "OPT_DNS",
    "OPT_DOMAIN",
    "OPT_END",
    "OPT_LEASE_TIME",
    "OPT_MESSAGE_TYPE",
    "OPT_MS_CLASSLESS_ROUTES",
    "OPT_PAD",
    "OPT_PARAMETER_REQUEST_LIST",
    "OPT_ROUTER",
    "OPT_SERVER_ID",
    "OPT_SUBNET_MASK",
    "OPT_VENDOR_CLASS",
    "SERVER_PORT",
    "TTL",
    "AckInfo",
    "BootpMessage",
    "IPv4Udp",
    "InformSettings",
    "answer_inform",
    "build_ack",
    "build_inform",
    "decode_bootp",
    "decode_classless_routes",
    "decode_ipv4_udp",
    "encode_bootp",
    "encode_classless_routes",
    "encode_ipv4_udp",
    "is_dhcp_reply",
    "is_dhcp_request",
    "parse_ack",
    "parse_inform",
]
