"""The IPv6 prefix pool: one /64 per session, static prefixes, exclusion, exhaustion."""

from __future__ import annotations

import itertools
from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.proto.pool6 import PrefixPool, fit_prefix_slices, slice_prefixes

P56 = IPv6Network("2001:db8:0:100::/56")


def test_a_56_splits_into_256_distinct_64s_then_is_exhausted() -> None:
    pool = PrefixPool(P56)
    assert pool.size == 256
    got = [pool.allocate() for _ in range(256)]
    assert None not in got
    prefixes = {p for p in got if p is not None}
    assert len(prefixes) == 256 and pool.in_use == 256
    assert all(p.prefixlen == 64 and p.subnet_of(P56) for p in prefixes)
    assert got[0] == IPv6Network("2001:db8:0:100::/64")
    assert got[-1] == IPv6Network("2001:db8:0:1ff::/64")
    assert pool.allocate() is None
    pool.release(IPv6Network("2001:db8:0:142::/64"))
    assert pool.allocate() == IPv6Network("2001:db8:0:142::/64")
    assert pool.allocate() is None


def test_accounting_returns_to_baseline_after_releasing_everything() -> None:
    pool = PrefixPool(P56)
    got = [pool.allocate() for _ in range(256)]
    for p in got:
        assert p is not None
        pool.release(p)
    assert pool.in_use == 0
    assert len({pool.allocate() for _ in range(256)}) == 256


def test_round_robin_does_not_hand_out_a_just_released_prefix() -> None:
    pool = PrefixPool(P56)
    first = pool.allocate()
    assert first is not None
    pool.release(first)
    assert pool.allocate() != first


def test_the_servers_own_64_is_excluded() -> None:
    pool = PrefixPool(P56, exclude=[IPv6Address("2001:db8:0:100::1"), IPv6Address("2001:db8::1")])
    assert pool.size == 255
    got = {pool.allocate() for _ in range(255)}
    assert IPv6Network("2001:db8:0:100::/64") not in got and None not in got
    assert pool.allocate() is None
    assert pool.allocate(IPv6Network("2001:db8:0:100::/64")) is None


def test_static_prefixes_are_reserved_and_held_once() -> None:
    static = IPv6Network("2001:db8:0:100::/64")  # the first one dynamic allocation would pick
    outside = IPv6Network("2001:db8:ffff:1::/64")
    pool = PrefixPool(P56, reserved=[static, outside])
    assert pool.allocate() == IPv6Network("2001:db8:0:101::/64")
    assert pool.allocate(static) == static
    assert pool.allocate(static) is None  # a second session of the same user
    assert pool.allocate(outside) == outside  # static prefixes may lie outside the pool
    assert pool.in_use == 3
    pool.release(static)
    pool.release(outside)
    assert pool.allocate(static) == static and pool.allocate(outside) == outside
    # dynamic allocation never hands out the reserved one, even when everything else is gone
    pool.release(static)
    got = [pool.allocate() for _ in range(300)]
    assert static not in got and got.count(None) == 300 - 254
    pool.set_reserved([])
    assert pool.allocate() == static


def test_a_64_pool_holds_one_session_and_a_32_is_not_enumerated() -> None:
    single = PrefixPool(IPv6Network("2001:db8:0:7::/64"))
    assert single.size == 1
    assert single.allocate() == IPv6Network("2001:db8:0:7::/64") and single.allocate() is None
    big = PrefixPool(IPv6Network("2001:db8::/32"))
    assert big.size == 1 << 32
    got = [big.allocate() for _ in range(1000)]
    assert len(set(got)) == 1000 and big.in_use == 1000


def test_cursor_wraps_around_the_end_of_the_pool() -> None:
    pool = PrefixPool(IPv6Network("2001:db8:0:4::/62"))
    a, b, _c = (pool.allocate() for _ in range(3))
    assert a is not None and b is not None
    pool.release(a)
    assert pool.allocate() == IPv6Network("2001:db8:0:7::/64")  # the last one first
    assert pool.allocate() == a  # then past the end back to the start
    assert pool.allocate() is None


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no /64 fits"):
        PrefixPool(IPv6Network("2001:db8::/80"))
    with pytest.raises(ValueError, match="/64"):
        PrefixPool(P56).allocate(IPv6Network("2001:db8:0:100::/80"))


def test_releasing_an_unknown_prefix_is_harmless() -> None:
    pool = PrefixPool(P56)
    pool.release(IPv6Network("2001:db8:0:100::/64"))
    pool.release(IPv6Network("2001:db8:9::/64"))
    assert pool.in_use == 0


ops = st.lists(
    st.one_of(
        st.just(("alloc", None)),
        st.tuples(st.just("static"), st.integers(0, 20)),
        st.tuples(st.just("release"), st.integers(0, 20)),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_pool_against_a_model(script: list[tuple[str, int | None]]) -> None:
    network = IPv6Network("2001:db8:0:10::/60")  # 16 prefixes
    statics = [IPv6Network(f"2001:db8:0:1{i:x}::/64") for i in (3, 7)]
    pool = PrefixPool(network, reserved=statics, exclude=[IPv6Address("2001:db8:0:10::1")])
    held: list[IPv6Network] = []
    for op, arg in script:
        if op == "alloc":
            got = pool.allocate()
            free = 16 - 1 - len(statics) - len([p for p in held if p not in statics])
            assert (got is None) == (free == 0)
            if got is not None:
                assert got not in held and got not in statics
                assert got != IPv6Network("2001:db8:0:10::/64")
                held.append(got)
        elif op == "static":
            assert arg is not None
            prefix = statics[arg % 2]
            got = pool.allocate(prefix)
            assert got == (None if prefix in held else prefix)
            if got is not None:
                held.append(got)
        elif held:
            assert arg is not None
            pool.release(held.pop(arg % len(held)))
        assert pool.in_use == len(held)


# ------------------------------------------------------------------ server.workers slices


def test_two_workers_get_one_half_of_a_56_each() -> None:
    a, b = slice_prefixes(P56, 2, [IPv6Address("2001:db8:0:100::1")])
    assert a.routes == [IPv6Network("2001:db8:0:100::/57")]
    assert b.routes == [IPv6Network("2001:db8:0:180::/57")]
    assert IPv6Network("2001:db8:0:17f::/64") in a and IPv6Network("2001:db8:0:17f::/64") not in b
    assert IPv6Network("2001:db8:0:180::/64") in b
    assert IPv6Network("2001:db8:0:180::/65") not in b  # only /64s


@settings(deadline=None)
@given(
    prefixlen=st.integers(min_value=56, max_value=64),
    count=st.integers(min_value=1, max_value=7),
    excluded=st.booleans(),
)
def test_slices_cover_the_pool_once_with_exact_routes(
    prefixlen: int, count: int, excluded: bool
) -> None:
    net = IPv6Network(("2001:db8::", prefixlen))
    exclude = [IPv6Address("2001:db8::1")] if excluded else []
    size = 1 << (64 - prefixlen)
    try:
        parts = slice_prefixes(net, count, exclude)
    except ValueError:
        # too few /64s, or slice 0 would be the server's /64 alone
        assert count > size or (excluded and count == size)
        assert fit_prefix_slices(net, count, exclude) == max(min(count - 1, size - excluded), 1)
        return
    assert fit_prefix_slices(net, count, exclude) == count
    assert parts[0].first == 0 and parts[-1].last == size - 1
    for p, q in itertools.pairwise(parts):
        assert q.first == p.last + 1
    for p in parts:
        covered = sum(r.num_addresses for r in p.routes) >> 64
        assert covered == p.last - p.first + 1
        assert all(r.subnet_of(net) for r in p.routes)
        pool = PrefixPool(net, exclude=exclude, part=p)
        got = [pool.allocate() for _ in range(pool.size)]
        assert None not in got and all(g in p for g in got if g is not None)
        assert pool.allocate() is None  # the part is exhausted, the rest is another's


def test_a_part_pool_hands_out_statics_anywhere_and_dynamics_from_its_part_only() -> None:
    a, b = slice_prefixes(P56, 2, [IPv6Address("2001:db8:0:100::1")])
    static = IPv6Network("2001:db8:0:1a0::/64")
    assert static in b
    pool = PrefixPool(P56, exclude=[IPv6Address("2001:db8:0:100::1")], reserved=[static], part=a)
    assert pool.size == 127  # 128 /64s less the server's own
    assert pool.allocate(static) == static
    dynamic = [pool.allocate() for _ in range(127)]
    assert all(p is not None and p in a for p in dynamic)
    assert pool.allocate() is None and pool.in_use == 128
    for p in [static, *dynamic]:
        assert p is not None
        pool.release(p)
    assert pool.in_use == 0
