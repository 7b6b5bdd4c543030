"""The TUN device: one for the whole daemon (or one per client tunnel).

The file descriptor comes from ``/dev/net/tun`` with TUNSETIFF (IFF_TUN | IFF_NO_PI: each
read/write is one bare IP packet). With ``offload=True`` (the server's ``[tunnel]
offload``) the device also gets IFF_VNET_HDR: every read and write then starts with a
10-byte ``virtio_net_hdr`` (``sstpd.proto.gro``), which lets ``write_batch`` hand the
kernel a run of TCP segments as one GSO super-packet. No offloads are enabled for reads
(TUNSETOFFLOAD 0): the kernel still segments and checksums what it sends us, because
doing either in Python costs more than the kernel's read saves (docs/PERFORMANCE-NOTES.md).

Address, MTU, link state and routes are set over netlink with pyroute2. The device is
not persistent: it disappears when the fd closes, so a crashed daemon leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from pyroute2 import IPRoute

from sstpd.proto.datapath import Counters
from sstpd.proto.gro import PLAIN, VNET_HDR_LEN, coalesce

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUNSETVNETLE = 0x400454DC
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
_SMALL = 128  # IP + TCP headers with options and hardly any data: not worth coalescing


class TunDevice:
    """``vnet_hdr``: reads and writes carry a virtio_net_hdr (``offload`` was asked for)."""

    def __init__(self, name: str, *, offload: bool = False) -> None:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
        try:
            ifr = struct.pack("16sH22x", name.encode(), flags)
            res = fcntl.ioctl(fd, TUNSETIFF, ifr)
            if offload:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                try:
                    fcntl.ioctl(fd, TUNSETVNETLE, struct.pack("i", 1))
                except OSError:
                    if sys.byteorder != "little":  # the kernel's default is native order
                        raise
                fcntl.ioctl(fd, TUNSETOFFLOAD, 0)  # reads: whole, checksummed packets
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self.vnet_hdr = offload
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


def write_batch(
    fd: int, buf: bytearray, spans: list[tuple[int, int]], counters: Counters
) -> int:
    """Write the IP packets ``buf[s:e]`` to a TUN device opened with ``offload``,
    coalescing runs of TCP segments (``sstpd.proto.gro``); count the super-packets in
    ``counters``. Returns how many of the packets failed to be written (a failed
    super-packet counts all of its segments)."""
    failed = 0
    # only packets with data can merge: a batch of ACKs (the other direction's traffic)
    # or a single packet is written as it is, without the coalescer's per-packet work
    big = 0
    for s, e in spans:
        if e - s > _SMALL:
            big += 1
            if big == 2:
                break
    if big < 2:
        view = memoryview(buf)
        for s, e in spans:
            try:
                os.writev(fd, (PLAIN, view[s:e]))
            except OSError:
                failed += 1
        return failed
    for parts in coalesce(buf, spans):
        try:
            os.writev(fd, parts)
        except OSError:
            failed += len(parts) - 1
            continue
        if parts[0] is not PLAIN:
            counters.rx_gso_writes += 1
            counters.rx_gso_packets += len(parts) - 1
    return failed
