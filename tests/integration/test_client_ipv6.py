"""``sstpd connect --ipv6`` against the real dual-stack daemon in network namespaces: the
client negotiates IPV6CP, takes the /64 of the daemon's Router Advertisement, puts
``prefix::<IID>/64`` and ``fe80::<IID>/64`` on its TUN (read back with ``ip -j``), and the
kernel's ``ping -6`` reaches the server's IPv6 address through the tunnel; IPv4 too."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.netns import TUNNEL_IP, Daemon, Netns, namespaces, running, sstpd_connect

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

IPV6_POOL = ipaddress.IPv6Network("fd00:77::/56")
SERVER6 = IPV6_POOL[1]  # the default tunnel.ipv6_address: the first of the pool
SERVER_64 = ipaddress.IPv6Network("fd00:77::/64")  # the server's own, never handed out
DNS6 = "fd00:77::53"


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpd6c") as n:
        yield n


@pytest.fixture(scope="module")
def daemon(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    v6 = f'ipv6_pool = "{IPV6_POOL}"\nipv6_dns = ["{DNS6}"]'
    with running(Daemon(net, tmp_path_factory.mktemp("daemon6"), tunnel_config=v6)) as d:
        yield d


def test_client_gets_a_64_and_pings_the_server_over_ipv6(
    daemon: Daemon, net: Netns, tmp_path: Path
) -> None:
    options = ("--ipv6", "--route", str(IPV6_POOL))
    with sstpd_connect(net, daemon, tmp_path, "sstpc6", *options) as (client, info):
        assert info["ipv6"], info
        iface = ipaddress.IPv6Interface(info["ipv6"])
        assert iface.network.prefixlen == 64 and iface.network.subnet_of(IPV6_POOL)
        assert iface.network != SERVER_64
        assert info["ipv6_dns"] == [DNS6]
        r = net.run(net.cli, "ip", "-j", "-6", "addr", "show", "dev", "sstpc6")
        addrs = {
            (a["local"], a["prefixlen"], a["scope"]) for a in json.loads(r.stdout)[0]["addr_info"]
        }
        assert (str(iface.ip), 64, "global") in addrs, addrs
        link = [a for a in addrs if a[2] == "link"]
        # exactly one link-local, fe80::<the same IID> (no kernel-made random one)
        assert len(link) == 1, addrs
        assert ipaddress.IPv6Address(link[0][0]).packed[8:] == iface.ip.packed[8:]
        r = net.run(net.cli, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", str(SERVER6))
        assert " 0% packet loss" in r.stdout, r.stdout
        r = net.run(net.cli, "ping", "-c", "2", "-i", "0.2", "-W", "2", TUNNEL_IP)
        assert " 0% packet loss" in r.stdout, r.stdout
        sessions = daemon.stats()
        assert sessions["rx6_packets"] >= 3 and sessions["tx6_packets"] >= 3, sessions
    assert client.returncode == 0
