"""IPv6 prefix pool: one /64 per session out of a shorter prefix (``[tunnel] ipv6_pool``).

Each session gets a whole /64 because Windows forms random and temporary addresses in it
(docs/protocol/ipv6-dhcp.md §5). The pool may be as large as the configuration allows (a /32 holds
four billion /64s), so nothing is enumerated: a /64 is an index ``0 .. size-1`` below the
pool prefix, and only handed-out, reserved and excluded indices are stored. Dynamic
allocation walks round-robin from where it last stopped, so a just-released prefix is not
handed to the next client at once, and the walk is bounded by the number of stored
(unavailable) prefixes, not by the pool size.

``exclude`` names addresses whose /64 is never handed out: the server's own tunnel
address when it lies inside the pool. Static per-user prefixes work as for IPv4
(:mod:`sstpd.proto.pool`): they are reserved so dynamic allocation skips them, and a
static prefix is held by at most one session.

With ``server.workers`` > 1 the pool is divided like the IPv4 pool
(:func:`sstpd.proto.pool.slice_pool`): ``slice_prefixes`` cuts the pool's /64s into
contiguous runs, one per worker, whose ``routes`` point at that worker's TUN; a worker's
``PrefixPool`` given its ``part`` hands out dynamic /64s from that run only (static ones
may lie anywhere in the pool).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network, summarize_address_range

from sstpd.proto.fit import fit

__all__ = ["SESSION_PREFIXLEN", "PrefixPool", "PrefixSlice", "fit_prefix_slices", "slice_prefixes"]

SESSION_PREFIXLEN = 64


@dataclass(frozen=True)
class PrefixSlice:
    """Worker ``index``'s part of the IPv6 pool: the /64s number ``first`` .. ``last``
    below ``network`` (0 is the pool's first /64)."""

    index: int
    network: IPv6Network
    first: int
    last: int

    def __contains__(self, prefix: object) -> bool:
        if not isinstance(prefix, IPv6Network) or prefix.prefixlen != SESSION_PREFIXLEN:
            return False
        if not prefix.subnet_of(self.network):
            return False
        return self.first <= _index_in(self.network, prefix) <= self.last

    @property
    def routes(self) -> list[IPv6Network]:
        """The fewest prefixes that cover exactly this slice's /64s."""
        base = int(self.network.network_address)
        low = IPv6Address(base + (self.first << 64))
        high = IPv6Address(base + ((self.last + 1) << 64) - 1)
        return list(summarize_address_range(low, high))


def _index_in(network: IPv6Network, prefix: IPv6Network) -> int:
    return (int(prefix.network_address) - int(network.network_address)) >> 64


def slice_prefixes(
    network: IPv6Network, count: int, exclude: Iterable[IPv6Address] = ()
) -> list[PrefixSlice]:
    """``count`` disjoint contiguous runs of /64s covering ``network``, each with at least
    one /64 that is not excluded. Raises ValueError when the pool has too few."""
    if count < 1:
        raise ValueError("at least one slice")
    if network.prefixlen > SESSION_PREFIXLEN:
        raise ValueError(f"{network} is longer than /{SESSION_PREFIXLEN}: no /64 fits")
    size = 1 << (SESSION_PREFIXLEN - network.prefixlen)
    if count > size:
        raise ValueError(f"{network} has fewer than {count} /64s")
    excluded = {
        _index_in(network, IPv6Network((a, 64), strict=False)) for a in exclude if a in network
    }
    base, extra = divmod(size, count)
    start = 0
    out: list[PrefixSlice] = []
    for i in range(count):
        end = start + base + (1 if i < extra else 0) - 1
        if sum(1 for x in excluded if start <= x <= end) >= end - start + 1:
            raise ValueError(
                f"{network} has too few /64s for {count} workers (slice {i} would have none)"
            )
        out.append(PrefixSlice(i, network, start, end))
        start = end + 1
    return out


def fit_prefix_slices(
    network: IPv6Network, wanted: int, exclude: Iterable[IPv6Address] = ()
) -> int:
    """The largest count <= ``wanted`` (and >= 1) that ``slice_prefixes`` accepts."""
    return fit(slice_prefixes, network, wanted, exclude)


class PrefixPool:
    def __init__(
        self,
        network: IPv6Network,
        *,
        exclude: Iterable[IPv6Address] = (),
        reserved: Iterable[IPv6Network] = (),
        part: PrefixSlice | None = None,
    ) -> None:
        """``part``: dynamic /64s come from this slice only (a worker's share); static
        ones may lie anywhere in ``network``."""
        if network.prefixlen > SESSION_PREFIXLEN:
            raise ValueError(f"{network} is longer than /{SESSION_PREFIXLEN}: no /64 fits")
        self.network = network
        self.part = part
        self._base = int(network.network_address) >> 64
        self._shift = SESSION_PREFIXLEN - network.prefixlen
        self._excluded = {
            self._index(p)
            for p in (IPv6Network((a, SESSION_PREFIXLEN), strict=False) for a in exclude)
            if p in self
        }
        self._reserved: set[int] = set()
        self._in_use: set[IPv6Network] = set()
        self._in_use_index: set[int] = set()
        # the dynamic range: indices _low .. _low + _span - 1
        self._low = part.first if part is not None else 0
        self._span = part.last - part.first + 1 if part is not None else 1 << self._shift
        self._cursor = 0
        self.set_reserved(reserved)

    @property
    def size(self) -> int:
        """How many /64s the pool (its part) can hand out (excluded ones not counted)."""
        low, span = self._low, self._span
        return span - sum(1 for x in self._excluded if low <= x < low + span)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def __contains__(self, prefix: IPv6Network) -> bool:
        return prefix.prefixlen == SESSION_PREFIXLEN and prefix.subnet_of(self.network)

    def set_reserved(self, reserved: Iterable[IPv6Network]) -> None:
        """Replace the set of static /64s that dynamic allocation must skip."""
        self._reserved = {self._index(p) for p in reserved if p in self}

    def allocate(self, static: IPv6Network | None = None) -> IPv6Network | None:
        """Hand out ``static`` (a /64) if given and free, else the next free dynamic /64.

        Returns None when nothing is free, or the static prefix is taken or excluded.
        """
        if static is not None:
            if static.prefixlen != SESSION_PREFIXLEN:
                raise ValueError(f"a session prefix is a /64, not {static}")
            if static in self._in_use or (static in self and self._index(static) in self._excluded):
                return None
            self._take(static)
            return static
        n, low = self._span, self._low
        used, reserved, excluded = self._in_use_index, self._reserved, self._excluded
        # Among any k+1 consecutive indices at least one is free when k are unavailable.
        for step in range(min(n, len(used) + len(reserved) + len(excluded) + 1)):
            index = low + (self._cursor + step) % n
            if index not in used and index not in reserved and index not in excluded:
                self._cursor = (index - low + 1) % n
                prefix = self._prefix(index)
                self._take(prefix)
                return prefix
        return None

    def release(self, prefix: IPv6Network) -> None:
        if prefix in self._in_use:
            self._in_use.discard(prefix)
            if prefix in self:
                self._in_use_index.discard(self._index(prefix))

    # ------------------------------------------------------------------ index arithmetic

    def _take(self, prefix: IPv6Network) -> None:
        self._in_use.add(prefix)
        if prefix in self:
            self._in_use_index.add(self._index(prefix))

    def _index(self, prefix: IPv6Network) -> int:
        return (int(prefix.network_address) >> 64) - self._base

    def _prefix(self, index: int) -> IPv6Network:
        return IPv6Network(((self._base + index) << 64, SESSION_PREFIXLEN))
