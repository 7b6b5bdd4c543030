"""A worker's address pools (``server.workers``, see ``sstpd.aio.workers``): its slice of
``tunnel.pool`` and ``tunnel.ipv6_pool``, where an address or /64 asked for by name
(static, RADIUS Framed-IP-Address / Framed-IPv6-Prefix) gets an exclusive route to this
worker's TUN (``sstpd.aio.route``, NLM_F_EXCL) while a session holds it, so one session
at a time holds it across all workers.

Separate from ``sstpd.aio.workers`` because it is the part that changes the kernel's
routing table; the pools' arithmetic is ``sstpd.proto.pool`` / ``sstpd.proto.pool6``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from sstpd.aio import route
from sstpd.proto.pool import AddressPool, PoolSlice
from sstpd.proto.pool6 import PrefixPool, PrefixSlice

log = logging.getLogger("sstpd")


class RoutedPool(AddressPool):
    """A worker's pool: dynamic addresses from its slice (routed to its TUN at start);
    any address asked for by name (static, Framed-IP-Address) gets an exclusive /32
    route to this worker's TUN while it is held.

    Static addresses of the users file are reserved in every worker, so no dynamic
    allocation can collide with them. A RADIUS Framed-IP-Address can lie in another
    worker's dynamic range: while ``claim_dynamic()`` is true (RADIUS is a backend) every
    dynamic address is claimed with a /32 too, and one another worker holds is skipped."""

    def __init__(
        self,
        network: IPv4Network,
        *,
        exclude: list[IPv4Address],
        part: PoolSlice,
        ifname: str,
        claim_dynamic: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(network, exclude=exclude, part=part)
        self.ifindex = socket.if_nametoindex(ifname)
        self.ifname = ifname
        self.claim_dynamic = claim_dynamic
        self._routed: set[IPv4Address] = set()

    def allocate(self, static: IPv4Address | None = None) -> IPv4Address | None:
        if static is None and self.claim_dynamic():
            for _ in range(self.size):
                addr = super().allocate()
                if addr is None:
                    return None
                if self._claim(addr, quiet=True):
                    return addr
            return None
        addr = super().allocate(static)
        if addr is None or static is None:
            return addr
        return addr if self._claim(addr) else None

    def _claim(self, addr: IPv4Address, quiet: bool = False) -> bool:
        """Route ``addr``/32 here unless another worker has; on failure it is released."""
        try:
            route.add_host_route(addr, self.ifindex)
        except FileExistsError:
            if not quiet:
                log.warning("address %s is held by a session of another worker", addr)
            super().release(addr)
            return False
        except OSError as exc:
            log.error("cannot route %s/32 to %s: %s", addr, self.ifname, exc)
            super().release(addr)
            return False
        self._routed.add(addr)
        return True

    def release(self, address: IPv4Address) -> None:
        if address in self._routed:
            self._routed.discard(address)
            try:
                route.del_host_route(address, self.ifindex)
            except OSError as exc:
                log.warning("removing the route %s/32 via %s: %s", address, self.ifname, exc)
        super().release(address)


class RoutedPrefixPool(PrefixPool):
    """A worker's IPv6 pool: dynamic /64s from its slice (routed to its TUN at start); a
    static per-user /64 gets an exclusive route to this worker's TUN while it is held, so
    one session at a time holds it across the workers. Static /64s of the users file are
    reserved in every worker: no dynamic allocation collides with them.

    A RADIUS Framed-IPv6-Prefix can lie in another worker's dynamic run: while
    ``claim_dynamic()`` is true (RADIUS is a backend) every dynamic /64 is claimed with a
    route of its own too, and one another worker holds is skipped (as ``RoutedPool``
    does for Framed-IP-Address)."""

    def __init__(
        self,
        network: IPv6Network,
        *,
        exclude: list[IPv6Address],
        part: PrefixSlice,
        ifname: str,
        claim_dynamic: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(network, exclude=exclude, part=part)
        self.ifindex = socket.if_nametoindex(ifname)
        self.ifname = ifname
        self.claim_dynamic = claim_dynamic
        self._routed: set[IPv6Network] = set()

    def allocate(self, static: IPv6Network | None = None) -> IPv6Network | None:
        if static is None and self.claim_dynamic():
            for _ in range(self.size):
                prefix = super().allocate()
                if prefix is None:
                    return None
                if self._claim(prefix, quiet=True):
                    return prefix
            return None
        prefix = super().allocate(static)
        if prefix is None or static is None:
            return prefix
        return prefix if self._claim(prefix) else None

    def _claim(self, prefix: IPv6Network, quiet: bool = False) -> bool:
        """Route ``prefix`` here unless another worker has; on failure it is released."""
        try:
            route.add_prefix_route(prefix, self.ifindex)
        except FileExistsError:
            if not quiet:
                log.warning("IPv6 prefix %s is held by a session of another worker", prefix)
            super().release(prefix)
            return False
        except OSError as exc:
            log.error("cannot route %s to %s: %s", prefix, self.ifname, exc)
            super().release(prefix)
            return False
        self._routed.add(prefix)
        return True

    def release(self, prefix: IPv6Network) -> None:
        if prefix in self._routed:
            self._routed.discard(prefix)
            try:
                route.del_prefix_route(prefix, self.ifindex)
            except OSError as exc:
                log.warning("removing the route %s via %s: %s", prefix, self.ifname, exc)
        super().release(prefix)
