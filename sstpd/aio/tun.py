"""The TUN device: one for the whole daemon (or one per client tunnel).

The file descriptor comes from ``/dev/net/tun`` with TUNSETIFF (IFF_TUN | IFF_NO_PI: each
read/write is one bare IP packet). Address, MTU, link state and routes are set over
netlink with pyroute2. The device is not persistent: it disappears when the fd closes,
so a crashed daemon leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from pyroute2 import IPRoute

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class TunDevice:
    def __init__(self, name: str) -> None:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
            res = fcntl.ioctl(fd, TUNSETIFF, ifr)
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self.name = res[:16].rstrip(b"\0").decode()
        os.set_blocking(fd, False)

    def configure(
        self,
        *,
        address: IPv4Address,
        mtu: int,
        routes: Iterable[IPv4Network] = (),
        peer: IPv4Address | None = None,
        ipv6_address: IPv6Address | None = None,
        ipv6_routes: Iterable[IPv6Network] = (),
    ) -> None:
        """Give the device ``address``/32 (point-to-point to ``peer`` if given), set MTU, bring
        it up and route ``routes`` into it. Without ``ipv6_address`` IPv6 is disabled on the
        device; with it the device gets that address (/128, no kernel link-local, no
        router solicitations: the daemon speaks Neighbor Discovery on each PPP link itself)
        and ``ipv6_routes`` (the prefix pool).

        pyroute2 runs its own asyncio loop, which cannot nest in a running one: inside a
        loop the netlink work runs in a short-lived thread (a one-off at start-up)."""
        args = (address, mtu, list(routes), peer, ipv6_address, list(ipv6_routes))
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._configure(*args)
            return
        with ThreadPoolExecutor(1) as ex:
            ex.submit(self._configure, *args).result()

    def _sysctl(self, key: str, value: str) -> None:
        try:
            with open(f"/proc/sys/net/ipv6/conf/{self.name}/{key}", "w") as f:
                f.write(value)
        except OSError:
            pass

    def _configure(
        self,
        address: IPv4Address,
        mtu: int,
        routes: list[IPv4Network],
        peer: IPv4Address | None,
        ipv6_address: IPv6Address | None,
        ipv6_routes: list[IPv6Network],
    ) -> None:
        if ipv6_address is None:
            # IPv4 only (IPCP): no link-local address, no router solicitations into the tunnel
            self._sysctl("disable_ipv6", "1")
        else:
            # before the link goes up: no fe80:: of the kernel's, no RS, no DAD delay
            self._sysctl("addr_gen_mode", "1")
            self._sysctl("accept_ra", "0")
            self._sysctl("router_solicitations", "0")
            self._sysctl("accept_dad", "0")
            self._sysctl("disable_ipv6", "0")
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=self.name)[0]
            ipr.link("set", index=idx, mtu=mtu, txqlen=1000)
            kw: dict[str, object] = {"index": idx, "address": str(address), "prefixlen": 32}
            if peer is not None:
                kw["local"] = str(address)
                kw["address"] = str(peer)
            ipr.addr("replace", **kw)
            ipr.link("set", index=idx, state="up")
            for net in routes:
                ipr.route("replace", dst=str(net), oif=idx, scope="link")
            if ipv6_address is not None:
                ipr.addr("replace", index=idx, address=str(ipv6_address), prefixlen=128)
                for net6 in ipv6_routes:
                    ipr.route("replace", dst=str(net6), oif=idx)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
