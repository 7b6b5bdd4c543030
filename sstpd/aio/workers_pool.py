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
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from sstpd.aio import route
from sstpd.proto.pool import AddressPool, PoolSlice
from sstpd.proto.pool6 import PrefixPool, PrefixSlice

log = logging.getLogger("sstpd")

H = TypeVar("H")  # what a session holds: an IPv4Address, an IPv6Network (its /64)
N = TypeVar("N")  # the pool's network
X = TypeVar("X")  # an address excluded from the pool (the server's own)
S = TypeVar("S")  # this worker's slice of the pool


class _Pool(Generic[H, N, X, S]):
    """What ``_Routed`` uses of the pool that follows it in a class's bases
    (``AddressPool``, ``PrefixPool``). Declared for the type checker only: at run time
    the class is empty, so ``super()`` in ``_Routed`` reaches the pool's own methods."""

    if TYPE_CHECKING:

        def __init__(self, network: N, *, exclude: list[X], part: S) -> None: ...

        @property
        def size(self) -> int:
            raise NotImplementedError

        def allocate(self, static: H | None = None) -> H | None:
            raise NotImplementedError

        def release(self, held: H) -> None:
            raise NotImplementedError


class _Routed(_Pool[H, N, X, S]):
    """The route claims ``RoutedPool`` and ``RoutedPrefixPool`` share: what a session asks
    for by name (and while ``claim_dynamic()`` is true, every dynamic one too) is held
    with an exclusive route to this worker's TUN, given up on release. A class names its
    routes with ``_add_route`` (FileExistsError: another worker holds that one) and
    ``_del_route``, and how the log speaks of them with ``_held`` and ``_suffix``."""

    _held: ClassVar[str]  # what one is in the log: "address", "IPv6 prefix"
    _suffix: ClassVar[str]  # what its route's destination adds to it: "/32" or nothing

    def __init__(
        self,
        network: N,
        *,
        exclude: list[X],
        part: S,
        ifname: str,
        claim_dynamic: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(network, exclude=exclude, part=part)
        self.ifindex = socket.if_nametoindex(ifname)
        self.ifname = ifname
        self.claim_dynamic = claim_dynamic
        self._routed: set[H] = set()

    def _add_route(self, held: H) -> None:
        raise NotImplementedError

    def _del_route(self, held: H) -> None:
        raise NotImplementedError

    def allocate(self, static: H | None = None) -> H | None:
        if static is None and self.claim_dynamic():
            for _ in range(self.size):
                got = super().allocate()
                if got is None:
                    return None
                if self._claim(got, quiet=True):
                    return got
            return None
        got = super().allocate(static)
        if got is None or static is None:
            return got
        return got if self._claim(got) else None

    def _claim(self, held: H, quiet: bool = False) -> bool:
        """Route ``held`` here unless another worker has; on failure it is released."""
        try:
            self._add_route(held)
        except FileExistsError:
            if not quiet:
                log.warning("%s %s is held by a session of another worker", self._held, held)
            super().release(held)
            return False
        except OSError as exc:
            log.error("cannot route %s%s to %s: %s", held, self._suffix, self.ifname, exc)
            super().release(held)
            return False
        self._routed.add(held)
        return True

    def release(self, held: H) -> None:
        if held in self._routed:
            self._routed.discard(held)
            try:
                self._del_route(held)
            except OSError as exc:
                log.warning(
                    "removing the route %s%s via %s: %s", held, self._suffix, self.ifname, exc
                )
        super().release(held)


class RoutedPool(_Routed[IPv4Address, IPv4Network, IPv4Address, PoolSlice], AddressPool):
    """A worker's pool: dynamic addresses from its slice (routed to its TUN at start);
    any address asked for by name (static, Framed-IP-Address) gets an exclusive /32
    route to this worker's TUN while it is held.

    Static addresses of the users file are reserved in every worker, so no dynamic
    allocation can collide with them. A RADIUS Framed-IP-Address can lie in another
    worker's dynamic range: while ``claim_dynamic()`` is true (RADIUS is a backend) every
    dynamic address is claimed with a /32 too, and one another worker holds is skipped."""

    _held, _suffix = "address", "/32"

    def _add_route(self, held: IPv4Address) -> None:
        route.add_host_route(held, self.ifindex)

    def _del_route(self, held: IPv4Address) -> None:
        route.del_host_route(held, self.ifindex)


class RoutedPrefixPool(_Routed[IPv6Network, IPv6Network, IPv6Address, PrefixSlice], PrefixPool):
    """A worker's IPv6 pool: dynamic /64s from its slice (routed to its TUN at start); a
    static per-user /64 gets an exclusive route to this worker's TUN while it is held, so
    one session at a time holds it across the workers. Static /64s of the users file are
    reserved in every worker: no dynamic allocation collides with them.

    A RADIUS Framed-IPv6-Prefix can lie in another worker's dynamic run: while
    ``claim_dynamic()`` is true (RADIUS is a backend) every dynamic /64 is claimed with a
    route of its own too, and one another worker holds is skipped (as ``RoutedPool``
    does for Framed-IP-Address)."""

    _held, _suffix = "IPv6 prefix", ""

    def _add_route(self, held: IPv6Network) -> None:
        route.add_prefix_route(held, self.ifindex)

    def _del_route(self, held: IPv6Network) -> None:
        route.del_prefix_route(held, self.ifindex)
