"""``sstpd.proto.fit.fit``, the count of workers a pool can be divided among, and its two
users: ``pool.fit_slices`` (IPv4) and ``pool6.fit_prefix_slices`` (IPv6 /64s), each
checked against trying every count with its own slicer."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.proto.fit import fit
from sstpd.proto.pool import fit_slices, slice_pool
from sstpd.proto.pool6 import fit_prefix_slices, slice_prefixes


class Slicer:
    """Accepts at most ``most`` slices; records each count it was asked for and what it
    was given to exclude."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.asked: list[tuple[str, int, list[int]]] = []

    def __call__(self, network: str, count: int, exclude: list[int]) -> list[int]:
        self.asked.append((network, count, list(exclude)))
        if count > self.most:
            raise ValueError(f"{network}: too small for {count}")
        return list(range(count))


def test_fit_tries_from_wanted_down_and_stops_at_the_first_accepted() -> None:
    s = Slicer(most=3)
    assert fit(s, "net", 6, [7]) == 3
    assert [c for _, c, _ in s.asked] == [6, 5, 4, 3]
    assert all(n == "net" for n, _, _ in s.asked)


def test_fit_gives_every_try_the_whole_exclude_even_from_a_generator() -> None:
    s = Slicer(most=1)
    assert fit(s, "net", 4, (a for a in (1, 2))) == 1
    assert [e for _, _, e in s.asked] == [[1, 2]] * 3  # counts 4, 3, 2


def test_fit_never_slices_for_one_worker_or_fewer() -> None:
    for wanted in (-1, 0, 1):
        s = Slicer(most=0)  # would refuse anything
        assert fit(s, "net", wanted) == 1
        assert s.asked == []


def test_fit_lets_other_errors_through() -> None:
    def broken(network: str, count: int, exclude: list[int]) -> None:
        raise TypeError("not a network")

    with pytest.raises(TypeError):
        fit(broken, "net", 2)


def _refuses(slicer: Any, network: Any, count: int, exclude: list[Any]) -> bool:
    try:
        slicer(network, count, exclude)
    except ValueError:
        return True
    return False


@settings(deadline=None)
@given(
    prefix=st.integers(min_value=26, max_value=32), wanted=st.integers(min_value=1, max_value=12)
)
def test_fit_slices_is_the_largest_count_slice_pool_accepts(prefix: int, wanted: int) -> None:
    net = IPv4Network(("10.20.0.0", prefix))
    server = IPv4Address("10.20.0.1")
    got = fit_slices(net, wanted, [server])
    assert 1 <= got <= wanted
    assert got == 1 or len(slice_pool(net, got, [server])) == got
    assert all(_refuses(slice_pool, net, n, [server]) for n in range(got + 1, wanted + 1))


@settings(deadline=None)
@given(
    prefix=st.integers(min_value=60, max_value=64), wanted=st.integers(min_value=1, max_value=20)
)
def test_fit_prefix_slices_is_the_largest_count_slice_prefixes_accepts(
    prefix: int, wanted: int
) -> None:
    net = IPv6Network(("2001:db8::", prefix))
    server = IPv6Address("2001:db8::1")
    got = fit_prefix_slices(net, wanted, [server])
    assert 1 <= got <= min(wanted, 1 << (64 - prefix))
    assert got == 1 or len(slice_prefixes(net, got, [server])) == got
    assert all(_refuses(slice_prefixes, net, n, [server]) for n in range(got + 1, wanted + 1))


def test_fit_on_real_pools() -> None:
    # a /30 has two client addresses; one is the server's: one worker
    assert fit_slices(IPv4Network("10.9.0.0/30"), 2, [IPv4Address("10.9.0.1")]) == 1
    assert fit_slices(IPv4Network("10.9.0.0/24"), 4, [IPv4Address("10.9.0.1")]) == 4
    # a /63 has two /64s; the server's /64 alone cannot be a worker's slice
    p63 = IPv6Network("2001:db8::/63")
    assert fit_prefix_slices(p63, 4, [IPv6Address("2001:db8::1")]) == 1
    assert fit_prefix_slices(p63, 4) == 2
