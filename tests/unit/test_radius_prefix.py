"""Framed-IPv6-Prefix from an Access-Accept: that /64 or no IPv6 (``Server._radius_prefix``),
and across workers one holder per /64 (``RoutedPrefixPool`` with ``claim_dynamic``)."""

from __future__ import annotations

import functools
import logging
from ipaddress import IPv6Address, IPv6Network
from types import SimpleNamespace
from typing import Any

import pytest

from sstpd import users
from sstpd.aio.server import Server
from sstpd.aio.workers_pool import RoutedPrefixPool
from sstpd.proto.aaa import Grant
from sstpd.proto.pool6 import PrefixPool, slice_prefixes

from .test_workers import FakeRoutes

NET = IPv6Network("2001:db8:77::/56")
SERVER6 = IPv6Address("2001:db8:77::1")


def fake_server(user_map: dict[str, users.User] | None = None) -> Any:
    srv = SimpleNamespace(pool6=PrefixPool(NET, exclude=[SERVER6]), users=user_map or {})
    srv.assign_prefix = functools.partial(Server.assign_prefix, srv)
    return srv


def radius_prefix(srv: Any, grant: Grant | None, name: str = "alice") -> IPv6Network | None:
    return Server._radius_prefix(srv, name, grant)


def test_the_accepts_prefix_is_the_sessions() -> None:
    srv = fake_server()
    want = IPv6Network("2001:db8:77:42::/64")
    assert radius_prefix(srv, Grant(framed_ipv6_prefix=want)) == want
    assert srv.pool6.in_use == 1
    # and no dynamic allocation hands it out while it is held
    got = [srv.pool6.allocate() for _ in range(srv.pool6.size - 1)]
    assert want not in got and None not in got


def test_radius_prefix_wins_over_the_users_file() -> None:
    static = IPv6Network("2001:db8:77:5::/64")
    srv = fake_server({"alice": users.User("alice", b"h" * 16, None, static)})
    want = IPv6Network("2001:db8:77:6::/64")
    assert radius_prefix(srv, Grant(framed_ipv6_prefix=want)) == want
    # an Accept without the attribute: the users file's static /64, as before
    assert radius_prefix(srv, Grant()) == static
    assert radius_prefix(srv, None, "bob") not in (None, static, want)


@pytest.mark.parametrize(
    ("grant", "logged"),
    [
        (Grant(framed_ipv6_prefix=IPv6Network("2001:db8:77:40::/60")), "is not a /64"),
        (Grant(framed_ipv6_prefix=IPv6Network("2001:db8:78::/64")), "outside tunnel.ipv6_pool"),
        (Grant(framed_ipv6_malformed=True), "malformed"),
    ],
)
def test_a_bad_prefix_refuses_ipv6_and_says_why(
    grant: Grant, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    srv = fake_server()
    with caplog.at_level(logging.WARNING, logger="sstpd"):
        assert radius_prefix(srv, grant) is None
    assert srv.pool6.in_use == 0  # never a dynamic /64 in its place
    assert "Framed-IPv6-Prefix for 'alice': " in caplog.text and logged in caplog.text
    assert "IPv6 refused, IPv4 only" in caplog.text


def test_a_prefix_in_use_or_the_servers_own_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    srv = fake_server()
    want = IPv6Network("2001:db8:77:42::/64")
    assert radius_prefix(srv, Grant(framed_ipv6_prefix=want)) == want
    with caplog.at_level(logging.WARNING, logger="sstpd"):
        assert radius_prefix(srv, Grant(framed_ipv6_prefix=want), "bob") is None
        own = IPv6Network((SERVER6, 64), strict=False)
        assert radius_prefix(srv, Grant(framed_ipv6_prefix=own), "carol") is None
    assert f"no IPv6 for 'bob': static prefix {want} in use" in caplog.text
    assert srv.pool6.in_use == 1
    srv.pool6.release(want)
    assert radius_prefix(srv, Grant(framed_ipv6_prefix=want), "bob") == want


def test_workers_a_framed_prefix_in_another_run_is_skipped_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = FakeRoutes.install(monkeypatch, "prefix")
    w0, w1 = (
        RoutedPrefixPool(NET, exclude=[SERVER6], part=p, ifname=f"t{i}", claim_dynamic=lambda: True)
        for i, p in enumerate(slice_prefixes(NET, 2, [SERVER6]))
    )
    framed = IPv6Network("2001:db8:77:80::/64")  # the first /64 of worker 1's run
    assert framed in w1.part  # type: ignore[operator]
    assert w0.allocate(framed) == framed and kernel.routes == {framed: 10}
    got = w1.allocate()
    assert got is not None and got != framed and kernel.routes[got] == 11
    assert w1.in_use == 1  # the skipped /64 is not held by worker 1
    w0.release(framed)
    assert framed not in kernel.routes
    rest = [w1.allocate() for _ in range(w1.size - 1)]
    assert framed in rest and kernel.routes[framed] == 11
    assert w1.allocate() is None  # exhausted
    for p in [got, *rest]:
        assert p is not None
        w1.release(p)
    assert kernel.routes == {}  # every claimed route goes with its /64
