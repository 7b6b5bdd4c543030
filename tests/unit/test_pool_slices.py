"""Pool slicing for server.workers: every client address in exactly one worker's slice,
routes that cover exactly the slice, each worker allocating from its own slice only."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, summarize_address_range

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sstpd.config import TunnelConfig, parse_config
from sstpd.proto.pool import AddressPool, PoolSlice, fit_slices, slice_pool, usable_hosts

NET = IPv4Network("10.77.0.0/24")
SERVER = IPv4Address("10.77.0.1")


def test_two_workers_get_one_half_prefix_each() -> None:
    a, b = slice_pool(NET, 2, [SERVER])
    assert a.routes == [IPv4Network("10.77.0.0/25")]
    assert b.routes == [IPv4Network("10.77.0.128/25")]
    assert (a.index, b.index) == (0, 1)


def test_four_workers_on_a_slash_22() -> None:
    parts = slice_pool(IPv4Network("10.8.0.0/22"), 4)
    assert [p.routes for p in parts] == [[IPv4Network(f"10.8.{i}.0/24")] for i in range(4)]


def test_three_workers_cover_the_pool_without_overlap() -> None:
    parts = slice_pool(NET, 3, [SERVER])
    hosts = usable_hosts(NET, [SERVER])
    owners = {h: [p.index for p in parts if h in p] for h in hosts}
    assert all(len(o) == 1 for o in owners.values())
    sizes = [sum(1 for h in hosts if h in p) for p in parts]
    assert max(sizes) - min(sizes) <= 2  # the network, broadcast and server address
    # the routes of a slice cover exactly its range: nothing of a neighbour
    for p in parts:
        covered = {a for net in p.routes for a in net}
        assert min(covered) == p.first and max(covered) == p.last
        assert len(covered) == int(p.last) - int(p.first) + 1


@given(
    prefix=st.integers(min_value=20, max_value=30),
    count=st.integers(min_value=1, max_value=9),
    offset=st.integers(min_value=0, max_value=2**12),
)
def test_every_client_address_in_exactly_one_slice(prefix: int, count: int, offset: int) -> None:
    net = IPv4Network((0x0A000000 + (offset << (32 - prefix)) % 2**24, prefix), strict=False)
    server = next(net.hosts())
    try:
        parts = slice_pool(net, count, [server])
    except ValueError:
        assert count > 1
        assert fit_slices(net, count, [server]) < count
        return
    assert len(parts) == count
    for h in usable_hosts(net, [server]):
        assert sum(1 for p in parts if h in p) == 1
    for p in parts:
        assert list(summarize_address_range(p.first, p.last)) == p.routes
        assert any(h in p for h in usable_hosts(net, [server]))
    assert parts[0].first == net.network_address
    assert parts[-1].last == net.broadcast_address


def test_too_many_workers_for_a_tiny_pool() -> None:
    tiny = IPv4Network("10.9.0.0/30")  # hosts .1 and .2; .1 is the server
    with pytest.raises(ValueError, match="too few client addresses"):
        slice_pool(tiny, 2, [IPv4Address("10.9.0.1")])
    assert fit_slices(tiny, 2, [IPv4Address("10.9.0.1")]) == 1
    assert fit_slices(NET, 2, [SERVER]) == 2
    with pytest.raises(ValueError):
        slice_pool(NET, 0)


def test_a_worker_allocates_from_its_slice_only() -> None:
    parts = slice_pool(NET, 2, [SERVER])
    pools = [AddressPool(NET, exclude=[SERVER], part=p) for p in parts]
    assert pools[0].size + pools[1].size == AddressPool(NET, exclude=[SERVER]).size == 253
    for pool, part in zip(pools, parts, strict=True):
        got = [pool.allocate() for _ in range(pool.size)]
        assert all(a is not None and a in part for a in got)
        assert pool.allocate() is None  # its slice is exhausted, the other is not touched
    assert SERVER in parts[0] and pools[0].size == 126  # .0, .1 (server) and .127 not handed out


def test_static_addresses_anywhere_and_reserved_in_every_slice() -> None:
    parts = slice_pool(NET, 2, [SERVER])
    static = IPv4Address("10.77.0.200")  # in worker 1's slice
    w0 = AddressPool(NET, exclude=[SERVER], part=parts[0], reserved=[static])
    w1 = AddressPool(NET, exclude=[SERVER], part=parts[1], reserved=[static])
    # the static user's session may land on worker 0: it gets the address all the same
    assert w0.allocate(static) == static
    assert w0.allocate(static) is None  # held once per worker (across workers: a route)
    got = [w1.allocate() for _ in range(w1.size)]
    assert static not in got  # dynamic allocation never hands out a reserved address
    w0.release(static)
    assert w0.allocate(static) == static


def test_slice_is_a_value() -> None:
    p = PoolSlice(0, IPv4Address("10.0.0.0"), IPv4Address("10.0.0.3"))
    assert IPv4Address("10.0.0.3") in p and IPv4Address("10.0.0.4") not in p
    assert "10.0.0.1" not in p


# ---------------------------------------------------------------- reserved addresses


def _tunnel(lines: str) -> TunnelConfig:
    return parse_config(
        '[server]\ncertificate = "/c.pem"\nkey = "/k.pem"\n[tunnel]\n' + lines
    ).tunnel


def test_dns_and_nbns_servers_inside_the_pool_are_never_handed_out() -> None:
    tc = _tunnel(
        'pool = "10.77.0.0/28"\naddress = "10.77.0.1"\n'
        'dns = ["10.77.0.5", "10.9.9.9"]\nnbns = ["10.77.0.6", "10.77.0.1"]\n'
    )
    # the tunnel address first, then the servers inside the pool, each once
    assert tc.reserved_addresses() == tuple(
        IPv4Address(a) for a in ("10.77.0.1", "10.77.0.5", "10.77.0.6")
    )
    pool = AddressPool(tc.pool, exclude=tc.reserved_addresses())
    given_out = []
    while (a := pool.allocate()) is not None:
        given_out.append(a)
    assert len(given_out) == pool.size == 14 - 3
    assert not {IPv4Address("10.77.0.5"), IPv4Address("10.77.0.6")} & set(given_out)
    # and every worker's slice leaves them out too
    parts = slice_pool(tc.pool, 2, tc.reserved_addresses())
    dynamic = [AddressPool(tc.pool, exclude=tc.reserved_addresses(), part=p) for p in parts]
    assert sum(p.size for p in dynamic) == 11


def test_servers_outside_the_pool_reserve_nothing() -> None:
    tc = _tunnel('dns = ["10.9.9.9"]\n')
    assert tc.reserved_addresses() == (tc.address,)
