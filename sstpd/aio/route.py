"""Host routes over rtnetlink, without pyroute2: small enough to run on the event loop.

With ``server.workers`` > 1 a worker that hands out an address outside its pool slice
(a static per-user address, a RADIUS Framed-IP-Address) routes that /32 to its own TUN
device for the session's lifetime. The route is added with NLM_F_EXCL, so the kernel
refuses a second one for the same address: that is also what keeps a static address
held by one session across all workers. A crashed worker's routes vanish with its TUN.
A static per-user IPv6 /64 (``tunnel.ipv6_pool``) is claimed the same way
(``add_prefix_route``): IPv6 refuses a second route with the same destination and metric
under NLM_F_EXCL, and every worker adds it with the kernel's default metric.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from ipaddress import IPv4Address, IPv4Network, IPv6Network

RTM_NEWROUTE = 24
RTM_DELROUTE = 25
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
RTA_DST = 1
RTA_OIF = 4

_NLMSG = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")


def _attr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _request(kind: int, flags: int, dst: IPv4Network | IPv6Network, ifindex: int) -> None:
    v4 = dst.version == 4
    body = _RTMSG.pack(
        socket.AF_INET if v4 else socket.AF_INET6,
        dst.prefixlen,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_STATIC,
        RT_SCOPE_LINK if v4 else RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
        0,
    )
    body += _attr(RTA_DST, dst.network_address.packed) + _attr(RTA_OIF, struct.pack("=I", ifindex))
    msg = _NLMSG.pack(_NLMSG.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0) as s:
        s.settimeout(2.0)
        s.sendto(msg + body, (0, 0))
        while True:
            data = s.recv(65536)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, mtype, _, seq, _ = _NLMSG.unpack_from(data, offset)
                if mtype == NLMSG_ERROR and seq == 1:
                    (code,) = struct.unpack_from("=i", data, offset + _NLMSG.size)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return
                offset += max(length, _NLMSG.size) + (-length % 4)


def add_host_route(address: IPv4Address, ifindex: int) -> None:
    """``address``/32 via device ``ifindex``; FileExistsError when any route for exactly
    that /32 exists already (another worker holds the address)."""
    _add_exclusive(IPv4Network(address), ifindex)


def del_host_route(address: IPv4Address, ifindex: int) -> None:
    """Remove the /32 route to ``address`` via ``ifindex`` (ESRCH when it is gone)."""
    _request(RTM_DELROUTE, 0, IPv4Network(address), ifindex)


def add_prefix_route(prefix: IPv6Network, ifindex: int) -> None:
    """``prefix`` (a session's /64) via device ``ifindex``; FileExistsError when a route
    for exactly that prefix exists already (another worker holds it)."""
    _add_exclusive(prefix, ifindex)


def del_prefix_route(prefix: IPv6Network, ifindex: int) -> None:
    """Remove the route to ``prefix`` via ``ifindex`` (ESRCH when it is gone)."""
    _request(RTM_DELROUTE, 0, prefix, ifindex)


def _add_exclusive(dst: IPv4Network | IPv6Network, ifindex: int) -> None:
    try:
        _request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, dst, ifindex)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(exc.errno, f"{dst} is routed already") from None
        raise
