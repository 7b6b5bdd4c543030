"""IPv4 address pool for client sessions, and its division among worker processes.

Pure bookkeeping: which addresses of the pool are handed out. Static per-user addresses
(from the users file) are reserved, so the dynamic allocator never gives them to someone
else, and a static address is held by at most one session at a time.

With ``server.workers`` > 1 each worker hands out dynamic addresses from its own
``PoolSlice`` only: a contiguous part of the pool whose ``routes`` point at that worker's
TUN device, so that the kernel delivers downlink packets to the process that owns the
session. ``slice_pool`` cuts the pool's whole address range (network and broadcast
address included) into equal parts, so a power-of-two number of workers gets one prefix
each (two workers on a /24: a /25 each).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, summarize_address_range

from sstpd.proto.fit import fit


@dataclass(frozen=True)
class PoolSlice:
    """Worker ``index``'s part of the pool: the addresses ``first`` .. ``last``."""

    index: int
    first: IPv4Address
    last: IPv4Address

    def __contains__(self, address: object) -> bool:
        return isinstance(address, IPv4Address) and self.first <= address <= self.last

    @property
    def routes(self) -> list[IPv4Network]:
        """The fewest prefixes that cover exactly ``first`` .. ``last``."""
        return list(summarize_address_range(self.first, self.last))


def usable_hosts(network: IPv4Network, exclude: Iterable[IPv4Address] = ()) -> list[IPv4Address]:
    excluded = set(exclude)
    return [a for a in network.hosts() if a not in excluded]


def _usable_in(network: IPv4Network, first: int, last: int, excluded: set[int]) -> int:
    """How many of the addresses ``first`` .. ``last`` are client addresses."""
    unusable = set(excluded)
    if network.prefixlen <= 30:  # /31 and /32: every address is a host (RFC 3021)
        unusable |= {int(network.network_address), int(network.broadcast_address)}
    return last - first + 1 - sum(1 for a in unusable if first <= a <= last)


def slice_pool(
    network: IPv4Network, count: int, exclude: Iterable[IPv4Address] = ()
) -> list[PoolSlice]:
    """``count`` disjoint contiguous slices covering ``network``, each with at least one
    client address (``network.hosts()`` minus ``exclude``). Raises ValueError when the
    pool has too few."""
    if count < 1:
        raise ValueError("at least one slice")
    size = network.num_addresses
    if count > size:
        raise ValueError(f"{network} has fewer than {count} addresses")
    excluded = {int(a) for a in exclude}
    base, extra = divmod(size, count)
    start = int(network.network_address)
    out: list[PoolSlice] = []
    for i in range(count):
        end = start + base + (1 if i < extra else 0) - 1
        part = PoolSlice(i, IPv4Address(start), IPv4Address(end))
        if _usable_in(network, start, end, excluded) < 1:
            raise ValueError(
                f"{network} has too few client addresses for {count} workers "
                f"({part.first}-{part.last} would have none)"
            )
        out.append(part)
        start = end + 1
    return out


def fit_slices(network: IPv4Network, wanted: int, exclude: Iterable[IPv4Address] = ()) -> int:
    """The largest count <= ``wanted`` (and >= 1) that ``slice_pool`` accepts."""
    return fit(slice_pool, network, wanted, exclude)


class AddressPool:
    def __init__(
        self,
        network: IPv4Network,
        *,
        exclude: Iterable[IPv4Address] = (),
        reserved: Iterable[IPv4Address] = (),
        part: PoolSlice | None = None,
    ) -> None:
        """``part``: dynamic addresses come from this slice only (a worker's share);
        static addresses may lie anywhere."""
        self.network = network
        self.part = part
        self._excluded = set(exclude)
        self._reserved: set[IPv4Address] = set()
        self._in_use: set[IPv4Address] = set()
        self._hosts = [
            a for a in usable_hosts(network, self._excluded) if part is None or a in part
        ]
        self._cursor = 0
        self.set_reserved(reserved)

    @property
    def size(self) -> int:
        return len(self._hosts)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def set_reserved(self, reserved: Iterable[IPv4Address]) -> None:
        """Replace the set of static addresses that dynamic allocation must skip."""
        self._reserved = {a for a in reserved if a in self.network}

    def allocate(self, static: IPv4Address | None = None) -> IPv4Address | None:
        """Hand out ``static`` if given and free, else the next free dynamic address.

        Dynamic allocation walks the pool round-robin from where it last stopped, so an
        address that was just released is not handed to the next client at once.
        Returns None when nothing is free (or the static address is taken).
        """
        if static is not None:
            if static in self._in_use or static in self._excluded:
                return None
            self._in_use.add(static)
            return static
        n = len(self._hosts)
        for i in range(n):
            addr = self._hosts[(self._cursor + i) % n]
            if addr not in self._in_use and addr not in self._reserved:
                self._cursor = (self._cursor + i + 1) % n
                self._in_use.add(addr)
                return addr
        return None

    def release(self, address: IPv4Address) -> None:
        self._in_use.discard(address)
