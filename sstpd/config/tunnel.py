"""The ``[tunnel]`` section: the TUN device, the IPv4 pool and what IPCP, the Router
Advertisement and DHCPINFORM answers carry (DNS, routes, domain)."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from sstpd.config.model import (
    IPV6_MIN_MTU,
    MAX_DNS_SERVERS,
    MAX_DOMAIN,
    MAX_IPV6_DNS_SERVERS,
    MAX_OPTION_BYTES,
    MODERATION_BYTES_MAX,
    MODERATION_DELAY_MAX,
    MTU_MAX,
    MTU_MIN,
    TunnelConfig,
)
from sstpd.config.reader import Section
from sstpd.proto.dhcp import encode_classless_routes

_IFNAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,15}")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")


def parse_tunnel(s: Section) -> TunnelConfig:
    d = TunnelConfig()
    interface = s.string("interface", d.interface)
    if not _IFNAME_RE.fullmatch(interface) or interface in (".", ".."):
        raise s.error(
            "interface",
            f"{interface!r} is not a valid interface name (1-15 characters of A-Z a-z 0-9 _ . -)",
        )
    address = s.ipv4("address", d.address)
    pool = d.pool
    if s.has("pool"):
        value = s.string("pool", "")
        try:
            pool = IPv4Network(value, strict=True)
        except ValueError as e:
            reason = (
                f"{value} has host bits set"
                if "host bits" in str(e)
                else f"{value} is not an IPv4 network"
            )
            raise s.error("pool", reason) from None
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise s.error("address", f"{address} cannot be a tunnel address")
    ends = (pool.network_address, pool.broadcast_address) if pool.prefixlen <= 30 else ()
    if address in ends:
        raise s.error("address", f"{address} is the network or broadcast address of {pool}")
    hosts = pool.num_addresses - (2 if pool.prefixlen <= 30 else 0)
    if address in pool:
        hosts -= 1
    if hosts < 1:
        raise s.error(
            "pool" if s.has("pool") else "address", f"{pool} has no usable client address"
        )
    dns = s.parsed_list("dns", d.dns, IPv4Address, "an IPv4 address")
    nbns = s.parsed_list("nbns", d.nbns, IPv4Address, "an IPv4 address")
    for key, servers in (("dns", dns), ("nbns", nbns)):
        if len(servers) > MAX_DNS_SERVERS:
            raise s.error(key, f"at most {MAX_DNS_SERVERS} servers can be pushed over IPCP")
    ipv6_pool, ipv6_address, ipv6_dns = _tunnel_ipv6(s)
    mtu = s.integer("mtu", d.mtu, MTU_MIN, MTU_MAX)
    if ipv6_pool is not None and mtu < IPV6_MIN_MTU:
        # the kernel turns IPv6 off on a device with a smaller MTU
        raise s.error("mtu", f"{mtu} is below {IPV6_MIN_MTU}, the IPv6 minimum (ipv6_pool is set)")
    return TunnelConfig(
        interface=interface,
        address=address,
        pool=pool,
        dns=dns,
        nbns=nbns,
        mtu=mtu,
        ipv6_pool=ipv6_pool,
        ipv6_address=ipv6_address,
        ipv6_dns=ipv6_dns,
        routes=_routes(s),
        domain=_domain(s),
        offload=s.boolean("offload", d.offload),
        read_moderation_bytes=s.integer(
            "read_moderation_bytes", d.read_moderation_bytes, 0, MODERATION_BYTES_MAX
        ),
        read_moderation_delay=s.number(
            "read_moderation_delay", d.read_moderation_delay, MODERATION_DELAY_MAX
        ),
    )


def _tunnel_ipv6(
    s: Section,
) -> tuple[IPv6Network | None, IPv6Address | None, tuple[IPv6Address, ...]]:
    pool: IPv6Network | None = None
    if value := s.string("ipv6_pool", ""):  # "" = IPv6 off, as when the key is absent
        try:
            pool = IPv6Network(value, strict=True)
        except ValueError as e:
            reason = "has host bits set" if "host bits" in str(e) else "is not an IPv6 network"
            raise s.error("ipv6_pool", f"{value} {reason}") from None
        if pool.prefixlen > 64:
            raise s.error("ipv6_pool", f"{pool} is longer than /64: each client needs a /64")
        if not _routable_v6(pool.network_address):
            raise s.error("ipv6_pool", f"{pool} is not a global or unique-local prefix")
    address: IPv6Address | None = None
    if value := s.string("ipv6_address", ""):
        try:
            address = IPv6Address(value)
        except ValueError:
            raise s.error("ipv6_address", f"{value!r} is not an IPv6 address") from None
        if pool is None:
            raise s.error("ipv6_address", "needs tunnel.ipv6_pool (IPv6 is off without it)")
        if not _routable_v6(address):
            raise s.error("ipv6_address", f"{address} cannot be a tunnel address")
    elif pool is not None:
        address = pool.network_address + 1
    if pool is not None and address is not None and pool.prefixlen == 64 and address in pool:
        key = "ipv6_address" if s.string("ipv6_address", "") else "ipv6_pool"
        raise s.error(key, f"{pool} holds the server's {address}: no /64 is left for clients")
    dns = s.parsed_list("ipv6_dns", (), IPv6Address, "an IPv6 address")
    if dns and pool is None:
        raise s.error("ipv6_dns", "needs tunnel.ipv6_pool (IPv6 is off without it)")
    if len(dns) > MAX_IPV6_DNS_SERVERS:
        raise s.error("ipv6_dns", f"at most {MAX_IPV6_DNS_SERVERS} servers")
    return pool, address, dns


def _routable_v6(address: IPv6Address) -> bool:
    return not (
        address.is_unspecified
        or address.is_loopback
        or address.is_multicast
        or address.is_link_local
        or address.ipv4_mapped is not None
    )


def _routes(s: Section) -> tuple[IPv4Network, ...]:
    routes: list[IPv4Network] = []
    for item in s.strings("routes", ()):
        try:
            network = IPv4Network(item, strict=True)
        except ValueError as e:
            if "host bits" in str(e):
                raise s.error("routes", f"{item} has host bits set") from None
            raise s.error(
                "routes", f"{item!r} is not an IPv4 network (DHCP pushes IPv4 routes only)"
            ) from None
        if network in routes:
            raise s.error("routes", f"{network} is listed twice")
        routes.append(network)
    size = len(encode_classless_routes((r, IPv4Address(0)) for r in routes))
    if size > MAX_OPTION_BYTES:
        raise s.error(
            "routes",
            f"the routes take {size} bytes in DHCP option 121, at most {MAX_OPTION_BYTES} fit "
            "(use fewer or shorter prefixes)",
        )
    return tuple(routes)


def _domain(s: Section) -> str:
    value = s.string("domain", "")
    name = value[:-1] if value.endswith(".") else value
    if not value:
        return ""
    labels = name.split(".")
    if len(name) > MAX_DOMAIN or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise s.error(
            "domain",
            f"{value!r} is not a DNS domain name (labels of letters, digits and '-', "
            f"at most {MAX_DOMAIN} characters)",
        )
    return name
