"""Which pushed routes ``sstpd connect --accept-routes`` installs (the netlink part runs in
tests/integration/test_split_routes.py)."""

from __future__ import annotations

from ipaddress import IPv4Network

from sstpd.aio.clientnet import split_routes

N = IPv4Network


def test_routes_containing_the_sstp_server_are_refused() -> None:
    routes = [N("0.0.0.0/0"), N("10.90.0.0/16"), N("203.0.113.0/24"), N("203.0.113.7/32")]
    install, refused = split_routes(routes, "203.0.113.7")
    assert install == [N("10.90.0.0/16")]
    assert refused == [N("0.0.0.0/0"), N("203.0.113.0/24"), N("203.0.113.7/32")]


def test_duplicates_once_and_nothing_refused_without_an_ipv4_server() -> None:
    routes = [N("10.90.0.0/16"), N("10.90.0.0/16"), N("0.0.0.0/0")]
    assert split_routes(routes, None) == ([N("10.90.0.0/16"), N("0.0.0.0/0")], [])
    assert split_routes(routes, "2001:db8::1") == ([N("10.90.0.0/16"), N("0.0.0.0/0")], [])
    assert split_routes(routes, "fe80::1%eth0")[1] == []
