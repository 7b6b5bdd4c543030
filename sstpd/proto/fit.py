"""How many workers a pool can be divided among: the one loop both slicers share.

``sstpd.proto.pool.slice_pool`` (IPv4 addresses) and ``sstpd.proto.pool6.slice_prefixes``
(IPv6 /64s) raise ValueError when a pool is too small for the count asked; with
``server.workers`` the supervisor runs as many workers as both pools can serve, so it asks
``fit`` for the largest count each slicer accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

Net = TypeVar("Net")
Addr = TypeVar("Addr")

# (network, count, exclude) -> the slices; ValueError when ``count`` do not fit
Slicer = Callable[[Net, int, list[Addr]], object]


def fit(slicer: Slicer[Net, Addr], network: Net, wanted: int, exclude: Iterable[Addr] = ()) -> int:
    """The largest count <= ``wanted`` (and >= 1) that ``slicer`` accepts for
    ``network`` and ``exclude``; 1 needs no slicing, so it is never tried."""
    excluded = list(exclude)
    for n in range(max(wanted, 1), 1, -1):
        try:
            slicer(network, n, excluded)
        except ValueError:
            continue
        return n
    return 1
