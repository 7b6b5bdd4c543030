"""The DHCPINFORM -> DHCPACK exchange, both ends, on top of :mod:`.codec`.

Kept apart from the codec because this is policy, not layout: which request a session
may send and what the server answers (the server side), and which answer a client
accepts (the client side). Everything here checks a decoded packet against the session
it arrived on and raises ParseError when it does not fit; the caller drops and counts.

Server: :func:`parse_inform` decodes and checks a request against the session's address
(the way strongSwan's responder does), :func:`build_ack` makes the answer and
:func:`answer_inform` does both for a session (:class:`InformSettings` is what the
server pushes). Client (``sstpd connect --accept-routes``): :func:`build_inform` makes
the request, :func:`parse_ack` checks the answer and returns an :class:`AckInfo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from sstpd.errors import ParseError
from sstpd.proto.dhcp.codec import (
    BOOTREPLY,
    BOOTREQUEST,
    CLIENT_PORT,
    DHCPACK,
    DHCPINFORM,
    OPT_CLASSLESS_ROUTES,
    OPT_CLIENT_ID,
    OPT_DNS,
    OPT_DOMAIN,
    OPT_MESSAGE_TYPE,
    OPT_MS_CLASSLESS_ROUTES,
    OPT_PARAMETER_REQUEST_LIST,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    OPT_VENDOR_CLASS,
    SERVER_PORT,
    BootpMessage,
    IPv4Udp,
    decode_bootp,
    decode_classless_routes,
    decode_ipv4_udp,
    encode_bootp,
    encode_classless_routes,
    encode_ipv4_udp,
)

__all__ = [
    "CLIENT_PARAMETERS",
    "AckInfo",
    "InformSettings",
    "answer_inform",
    "build_ack",
    "build_inform",
    "parse_ack",
    "parse_inform",
]

_BROADCAST = IPv4Address("255.255.255.255")


# ---------------------------------------------------------------------------- INFORM -> ACK


def parse_inform(packet: bytes, session_address: IPv4Address) -> BootpMessage:
    """Decode a DHCPINFORM the session at ``session_address`` sent and check it the way
    strongSwan's responder does: UDP 68 -> 67, BOOTREQUEST, type 8, IP source and
    ``ciaddr`` both the session's address."""
    d = decode_ipv4_udp(packet)
    if d.src_port != CLIENT_PORT or d.dst_port != SERVER_PORT:
        raise ParseError(f"UDP {d.src_port} -> {d.dst_port} is not DHCP client -> server")
    if d.src != session_address:
        raise ParseError(f"DHCP request from {d.src}, the session has {session_address}")
    m = decode_bootp(d.payload)
    if m.op != BOOTREQUEST or m.message_type != DHCPINFORM:
        raise ParseError(f"not a DHCPINFORM (op {m.op}, message type {m.message_type})")
    if m.ciaddr != session_address:
        raise ParseError(f"DHCPINFORM ciaddr {m.ciaddr} is not the session's {session_address}")
    if m.hlen > 16:
        raise ParseError(f"hardware address length {m.hlen}")
    return m


def build_ack(
    inform: BootpMessage,
    *,
    server: IPv4Address,
    domain: str = "",
    dns: tuple[IPv4Address, ...] = (),
    routes: tuple[IPv4Network, ...] = (),
) -> bytes:
    """The IPv4 packet answering ``inform``: from ``server`` to its ``ciaddr``, with the
    ``routes`` (reached through ``server``) in identical options 121 and 249."""
    options = {
        OPT_MESSAGE_TYPE: bytes((DHCPACK,)),
        OPT_SERVER_ID: server.packed,
        OPT_SUBNET_MASK: _BROADCAST.packed,
    }
    if domain:
        options[OPT_DOMAIN] = domain.encode("ascii")
    if dns:
        options[OPT_DNS] = b"".join(a.packed for a in dns)
    if routes:
        encoded = encode_classless_routes((r, server) for r in routes)
        options[OPT_CLASSLESS_ROUTES] = encoded
        options[OPT_MS_CLASSLESS_ROUTES] = encoded
    reply = BootpMessage(
        op=BOOTREPLY,
        xid=inform.xid,
        chaddr=inform.chaddr,
        htype=inform.htype,
        hlen=inform.hlen,
        flags=inform.flags,
        ciaddr=inform.ciaddr,
        giaddr=inform.giaddr,
        options=options,
    )
    udp = IPv4Udp(server, inform.ciaddr, SERVER_PORT, CLIENT_PORT, encode_bootp(reply))
    return encode_ipv4_udp(udp)


@dataclass(frozen=True)
class InformSettings:
    """What the server pushes in every DHCPACK (``[tunnel] domain``, ``dns``, ``routes``)."""

    domain: str = ""
    dns: tuple[IPv4Address, ...] = ()
    routes: tuple[IPv4Network, ...] = ()


def answer_inform(
    packet: bytes, *, session: IPv4Address, server: IPv4Address, settings: InformSettings
) -> bytes:
    """The DHCPACK (an IPv4 packet from ``server``) for a DHCPINFORM the session at
    ``session`` sent; ParseError (drop and count) for anything else sent to port 67."""
    return build_ack(
        parse_inform(packet, session),
        server=server,
        domain=settings.domain,
        dns=settings.dns,
        routes=settings.routes,
    )


# ---------------------------------------------------------------------------- client side

# what the package's client asks for: subnet mask, domain, DNS, both route options
CLIENT_PARAMETERS = bytes((OPT_SUBNET_MASK, OPT_DOMAIN, OPT_DNS, 121, 249))


@dataclass(frozen=True)
class AckInfo:
    """What a DHCPACK told the client."""

    server: IPv4Address
    routes: tuple[tuple[IPv4Network, IPv4Address], ...]
    domain: str
    dns: tuple[IPv4Address, ...]


def build_inform(client: IPv4Address, xid: int, chaddr: bytes = bytes(6)) -> bytes:
    """The DHCPINFORM a client at ``client`` sends into the tunnel, as Windows does:
    IPv4 from its address to 255.255.255.255, UDP 68 -> 67, ``ciaddr`` = its address."""
    if len(chaddr) > 16:
        raise ValueError("a hardware address has at most 16 bytes")
    message = BootpMessage(
        op=BOOTREQUEST,
        xid=xid,
        chaddr=chaddr.ljust(16, b"\0"),
        hlen=len(chaddr),
        ciaddr=client,
        options={
            OPT_MESSAGE_TYPE: bytes((DHCPINFORM,)),
            OPT_CLIENT_ID: b"\x01" + chaddr,
            OPT_VENDOR_CLASS: b"sstpd",
            OPT_PARAMETER_REQUEST_LIST: CLIENT_PARAMETERS,
        },
    )
    udp = IPv4Udp(client, _BROADCAST, CLIENT_PORT, SERVER_PORT, encode_bootp(message))
    return encode_ipv4_udp(udp)


def parse_ack(packet: bytes, client: IPv4Address, xid: int) -> AckInfo:
    """Decode and check the answer to our DHCPINFORM ``xid``: UDP 67 -> 68 to ``client``,
    BOOTREPLY, DHCPACK, same xid, with a server identifier. Routes come from option 121,
    or from 249 when 121 is absent (RFC 3442 and [MS-DHCPE] §2.2.8)."""
    d = decode_ipv4_udp(packet)
    if d.src_port != SERVER_PORT or d.dst_port != CLIENT_PORT:
        raise ParseError(f"UDP {d.src_port} -> {d.dst_port} is not DHCP server -> client")
    if d.dst not in (client, _BROADCAST):
        raise ParseError(f"DHCP reply to {d.dst}, we are {client}")
    m = decode_bootp(d.payload)
    if m.op != BOOTREPLY or m.message_type != DHCPACK:
        raise ParseError(f"not a DHCPACK (op {m.op}, message type {m.message_type})")
    if m.xid != xid:
        raise ParseError(f"DHCPACK for transaction {m.xid:#x}, we sent {xid:#x}")
    server_id = m.options.get(OPT_SERVER_ID, b"")
    if len(server_id) != 4:
        raise ParseError("DHCPACK without a server identifier")
    encoded = m.options.get(OPT_CLASSLESS_ROUTES, m.options.get(OPT_MS_CLASSLESS_ROUTES, b""))
    dns = m.options.get(OPT_DNS, b"")
    if len(dns) % 4:
        raise ParseError(f"DNS option of {len(dns)} bytes")
    try:
        domain = m.options.get(OPT_DOMAIN, b"").rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError:
        raise ParseError("domain name option is not ASCII") from None
    return AckInfo(
        server=IPv4Address(server_id),
        routes=tuple(decode_classless_routes(encoded)),
        domain=domain,
        dns=tuple(IPv4Address(dns[i : i + 4]) for i in range(0, len(dns), 4)),
    )
