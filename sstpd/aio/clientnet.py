"""What ``sstpd connect`` puts on its TUN device besides the IPv4 address (netlink, pyroute2).

* :func:`install_routes`: the split-tunnel routes of the server's DHCPACK
  (``--accept-routes``), each as a device route on the TUN (the router in option 121 is
  the server's end of a point-to-point link: the device is what matters). A pushed route
  that contains the address of the SSTP server itself is not installed - it would pull
  the tunnel's own TLS connection into the tunnel - and is reported instead.
* :func:`enable_ipv6` / :func:`configure_ipv6`: IPv6 on the TUN without the kernel's own
  autoconfiguration (no random link-local address, no RA processing: the client reads the
  RA itself), then ``fe80::<IID>/64`` and ``prefix::<IID>/64`` from the RA.

pyroute2 runs its own asyncio loop, which cannot nest in a running one: inside a loop the
netlink work runs in a short-lived thread, as ``TunDevice.configure`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address
from typing import TypeVar

from pyroute2 import IPRoute

from sstpd.proto.ipv6.autoconf import Ipv6Config

__all__ = ["configure_ipv6", "enable_ipv6", "install_routes", "split_routes"]

_T = TypeVar("_T")


def _netlink(fn: Callable[[], _T]) -> _T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(fn).result()


def split_routes(
    routes: Iterable[IPv4Network], server: str | None
) -> tuple[list[IPv4Network], list[IPv4Network]]:
    """``(to install, refused)``: a route containing the SSTP server's own address (the
    transport's peer, ``server``; None or an IPv6 peer: nothing to protect) is refused."""
    addr = None
    if server is not None:
        with_scope = server.split("%", 1)[0]
        parsed = ip_address(with_scope)
        addr = parsed if isinstance(parsed, IPv4Address) else None
    install: list[IPv4Network] = []
    refused: list[IPv4Network] = []
    for net in routes:
        if net in install or net in refused:
            continue
        (refused if addr is not None and addr in net else install).append(net)
    return install, refused


def install_routes(ifname: str, routes: Iterable[IPv4Network]) -> None:
    """Route each network into ``ifname`` (replacing a route to the same prefix)."""
    nets = list(routes)

    def work() -> None:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            for net in nets:
                ipr.route("replace", dst=str(net), oif=idx, scope="link")

    _netlink(work)


def _sysctl(ifname: str, key: str, value: str) -> None:
    with open(f"/proc/sys/net/ipv6/conf/{ifname}/{key}", "w") as f:
        f.write(value)


def enable_ipv6(ifname: str) -> None:
    """IPv6 on ``ifname``, without kernel SLAAC or a kernel-made link-local address."""
    _sysctl(ifname, "accept_ra", "0")
    _sysctl(ifname, "autoconf", "0")
    _sysctl(ifname, "addr_gen_mode", "1")  # none: our link-local comes from IPV6CP
    _sysctl(ifname, "disable_ipv6", "0")


def configure_ipv6(ifname: str, config: Ipv6Config, routes: Iterable[IPv6Network] = ()) -> None:
    """Put the link-local and global /64 addresses on ``ifname``, take the RA's MTU for
    IPv6 (when the device allows it), and route ``routes`` into ``ifname``."""
    nets = list(routes)

    def work() -> None:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            for address in (config.link_local, config.address):
                ipr.addr("replace", index=idx, address=str(address), prefixlen=64)
            for net in nets:
                ipr.route("replace", dst=str(net), oif=idx, family=10)

    enable_ipv6(ifname)
    if config.mtu is not None and config.mtu >= 1280:
        with contextlib.suppress(OSError):  # EINVAL above the device's MTU: keep that one
            _sysctl(ifname, "mtu", str(config.mtu))
    _netlink(work)
