"""Issue 12, pushed split-tunnel routes, with the real daemon and the package's client in
network namespaces: ``sstpd connect --accept-routes`` installs exactly the configured
routes on its TUN (read back with ``ip -j route``) and reports domain and DNS; a
DHCPINFORM that is not the session's (foreign ciaddr, truncated, oversized) is dropped and
counted, answered by nothing and never written to the daemon's TUN."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.netns import (
    DNS,
    TUNNEL_IP,
    Daemon,
    Netns,
    namespaces,
    running,
    sstpd_connect,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

ROUTES = ["10.90.0.0/16", "192.168.77.0/24", "172.20.5.128/25", "10.91.3.4/32"]
DOMAIN = "corp.example"


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpdr") as n:
        yield n


@pytest.fixture(scope="module")
def daemon(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    pushed = f'routes = {json.dumps(ROUTES)}\ndomain = "{DOMAIN}"'
    with running(Daemon(net, tmp_path_factory.mktemp("daemon"), tunnel_config=pushed)) as d:
        yield d


def _tun_rx_packets(net: Netns) -> int:
    """Packets the daemon wrote into its TUN (the kernel counts them as received)."""
    r = net.run(net.srv, "ip", "-s", "-j", "link", "show", "sstp0")
    return int(json.loads(r.stdout)[0]["stats64"]["rx"]["packets"])


def test_accept_routes_installs_exactly_the_pushed_routes(
    daemon: Daemon, net: Netns, tmp_path: Path
) -> None:
    before = daemon.stats()
    with sstpd_connect(net, daemon, tmp_path, "sstpc0", "--accept-routes") as (client, info):
        assert info["routes"] == ROUTES
        assert info["domain"] == DOMAIN and info["dhcp_dns"] == DNS
        r = net.run(net.cli, "ip", "-j", "-4", "route", "show", "dev", "sstpc0")
        got = {e["dst"] for e in json.loads(r.stdout)}
        # exactly the pushed routes, plus the kernel's own route to the point-to-point peer
        assert got - {TUNNEL_IP} == {p.removesuffix("/32") for p in ROUTES}, r.stdout
        # and they carry traffic: an address inside one is reached through the tunnel
        route = net.run(net.cli, "ip", "-j", "route", "get", "192.168.77.9").stdout
        assert json.loads(route)[0]["dev"] == "sstpc0"
        after = daemon.stats()
        assert after["dhcp_answered"] == before["dhcp_answered"] + 1
        assert after["dropped_dhcp"] == before["dropped_dhcp"]
    assert client.returncode == 0
    # the routes went with the TUN device
    r = net.run(net.cli, "ip", "-j", "-4", "route", "show", "192.168.77.0/24")
    assert json.loads(r.stdout or "[]") == []


def test_foreign_truncated_and_oversized_informs_are_dropped_and_counted(
    daemon: Daemon, net: Netns
) -> None:
    before = daemon.stats()
    tun_before = _tun_rx_packets(net)
    res = net.client_tool("dhcp", *daemon.client_args())
    # nothing answered the bad ones; the good one after them got the configured answer
    assert res["answers_to_bad"] == 0
    assert res["routes"] == ROUTES and res["routers"] == [TUNNEL_IP]
    assert res["domain"] == DOMAIN and res["dns"] == DNS and res["server"] == TUNNEL_IP
    deadline = time.monotonic() + 5
    while True:  # the session's counters reach the totals when it closes
        after = daemon.stats()
        if after["dropped_dhcp"] >= before["dropped_dhcp"] + 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (
        after["dropped_dhcp"]
        == before["dropped_dhcp"] + res["sent_bad"]
        == before["dropped_dhcp"] + 3
    )
    assert after["dhcp_answered"] == before["dhcp_answered"] + 1
    assert _tun_rx_packets(net) == tun_before  # not one DHCP packet reached the TUN
    log = daemon.wait_log("DHCP packet dropped: DHCPINFORM ciaddr")
    assert "internal error" not in log


def test_client_ipv6_against_an_ipv4_only_daemon_stays_ipv4(
    daemon: Daemon, net: Netns, tmp_path: Path
) -> None:
    """--ipv6 with a server without IPv6: IPV6CP is Protocol-Rejected, the client does not
    wait for a Router Advertisement, and IPv4 works as before."""
    started = time.monotonic()
    with sstpd_connect(net, daemon, tmp_path, "sstpc1", "--ipv6") as (client, info):
        assert info["ipv6"] is None and info["ipv6_dns"] == []
        assert time.monotonic() - started < 8  # not the 10 s RA wait
        r = net.run(net.cli, "ping", "-c", "2", "-i", "0.2", "-W", "2", TUNNEL_IP)
        assert " 0% packet loss" in r.stdout
    assert client.returncode == 0
    assert client.stderr is not None
    assert "IPV6CP refused" in client.stderr.read()
