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
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv6Address, IPv6Network

__all__ = ["SESSION_PREFIXLEN", "PrefixPool"]

SESSION_PREFIXLEN = 64


class PrefixPool:
    def __init__(
        self,
        network: IPv6Network,
        *,
        exclude: Iterable[IPv6Address] = (),
        reserved: Iterable[IPv6Network] = (),
    ) -> None:
        if network.prefixlen > SESSION_PREFIXLEN:
            raise ValueError(f"{network} is longer than /{SESSION_PREFIXLEN}: no /64 fits")
        self.network = network
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
        self._cursor = 0
        self.set_reserved(reserved)

    @property
    def size(self) -> int:
        """How many /64s the pool can hand out (excluded ones not counted)."""
        return (1 << self._shift) - len(self._excluded)

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
        n = 1 << self._shift
        used, reserved, excluded = self._in_use_index, self._reserved, self._excluded
        # Among any k+1 consecutive indices at least one is free when k are unavailable.
        for step in range(min(n, len(used) + len(reserved) + len(excluded) + 1)):
            index = (self._cursor + step) % n
            if index not in used and index not in reserved and index not in excluded:
                self._cursor = (index + 1) % n
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
