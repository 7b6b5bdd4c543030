"""IPv4 address pool for client sessions.

Pure bookkeeping: which addresses of the pool are handed out. Static per-user addresses
(from the users file) are reserved, so the dynamic allocator never gives them to someone
else, and a static address is held by at most one session at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network


class AddressPool:
    def __init__(
        self,
        network: IPv4Network,
        *,
        exclude: Iterable[IPv4Address] = (),
        reserved: Iterable[IPv4Address] = (),
    ) -> None:
        self.network = network
        self._excluded = set(exclude)
        self._reserved: set[IPv4Address] = set()
        self._in_use: set[IPv4Address] = set()
        self._hosts = [a for a in network.hosts() if a not in self._excluded]
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
