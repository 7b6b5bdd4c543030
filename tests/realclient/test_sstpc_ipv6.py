"""Debian's sstpc + pppd with ``+ipv6`` in the qemu guest against a dual-stack daemon.

pppd negotiates IPV6CP next to IPCP and puts ``fe80::<IID>`` on ppp0; the guest kernel
(not pppd: pppd 2.4.9 carries no prefix) takes the daemon's Router Advertisement, forms
``prefix::<IID>/64`` by SLAAC (the IID inherited from the link-local address, as the
kernel does on PPP devices) and installs the default route through the server's
link-local address. The proof is a global address on ppp0 inside the session's /64 and a
``ping -6`` to the server's own IPv6 address; IPv4 keeps working on the same link.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sstpd import control
from tests.integration.netns import USERS, Daemon, RootNamespace

from . import sstpc
from .guest import SERVER_IP, Guest

pytestmark = pytest.mark.realclient

TUNNEL_IP = "10.80.0.1"
POOL = "10.80.0.0/24"
IPV6_POOL = ipaddress.IPv6Network("fd00:80::/56")
SERVER_IPV6 = IPV6_POOL[1]  # the daemon's default ipv6_address: first of the pool
SERVER_64 = ipaddress.IPv6Network(f"{IPV6_POOL.network_address}/64")  # never handed out


@pytest.fixture(scope="module")
def daemon(guest: Guest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(
        RootNamespace(),
        tmp_path_factory.mktemp("rc-ipv6-daemon"),
        listen=SERVER_IP,
        tunnel_ip=TUNNEL_IP,
        pool=POOL,
        interface="sstprc6",
    )
    try:
        d.prepare()
        text = d.config.read_text()
        d.config.write_text(text.replace("[tunnel]\n", f'[tunnel]\nipv6_pool = "{IPV6_POOL}"\n', 1))
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture
def guest_ra(guest: Guest) -> Iterator[Guest]:
    """The guest's ppp0 (created later) inherits ``default``: take RAs and autoconfigure
    (accept_ra=2 also when forwarding is on), and have IPv6 enabled at all."""
    keys = ("disable_ipv6", "accept_ra", "autoconf")
    before = guest.run(
        " ; ".join(f"sysctl -n net.ipv6.conf.default.{k}" for k in keys), check=True
    ).stdout.split()
    guest.run(
        "sysctl -qw net.ipv6.conf.default.disable_ipv6=0 net.ipv6.conf.default.accept_ra=2 "
        "net.ipv6.conf.default.autoconf=1",
        check=True,
    )
    yield guest
    guest.run(
        "sysctl -qw "
        + " ".join(f"net.ipv6.conf.default.{k}={v}" for k, v in zip(keys, before, strict=True))
    )


def _ipv6_addresses(guest: Guest, dev: str = "ppp0") -> list[dict[str, Any]]:
    r = guest.run(f"ip -j -6 addr show dev {dev}")
    try:
        return list(json.loads(r.stdout)[0]["addr_info"])
    except (ValueError, IndexError, KeyError):
        return []


def _wait_global(guest: Guest, daemon: Daemon, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for a in _ipv6_addresses(guest):
            if a.get("scope") == "global":
                return a
        time.sleep(0.5)
    raise AssertionError(
        "no global IPv6 address on ppp0 after the RA:\n"
        + guest.run("ip -6 addr; ip -6 route; sysctl net.ipv6.conf.ppp0").stdout
        + sstpc.explain(guest, daemon.log)
    )


def test_pppd_ipv6_gets_a_slaac_address_and_pings_the_server(
    guest_ra: Guest, daemon: Daemon
) -> None:
    guest = guest_ra
    info = sstpc.connect(
        guest,
        SERVER_IP,
        443,
        "alice",
        USERS["alice"],
        auth="mschapv2",
        ca_cert=Path(daemon.cert),
        timeout=30,
        pppd_options=["+ipv6"],
    )
    try:
        assert info["peer"] == TUNNEL_IP, sstpc.explain(guest, daemon.log)
        addr = _wait_global(guest, daemon)
        pppd_log = guest.run(f"cat {sstpc.WORK}/pppd.log").stdout
        assert "local  LL address fe80::" in pppd_log, sstpc.explain(guest, daemon.log)
        link_locals = [a for a in _ipv6_addresses(guest) if a.get("scope") == "link"]
        assert link_locals, f"{_ipv6_addresses(guest)}\n{sstpc.explain(guest, daemon.log)}"
        ll = ipaddress.IPv6Address(link_locals[0]["local"])
        glob = ipaddress.IPv6Address(addr["local"])
        # SLAAC: the session's /64 from the RA, inside the pool, not the server's own /64,
        # and the interface identifier IPV6CP agreed (the kernel inherits it on ppp0)
        assert addr["prefixlen"] == 64
        assert glob in IPV6_POOL and glob not in SERVER_64, glob
        assert glob.packed[8:] == ll.packed[8:], (glob, ll)
        # the RA made the server the guest's default router on ppp0
        routes = guest.run("ip -6 route show default").stdout
        assert "dev ppp0" in routes and "via fe80::" in routes, (
            f"{routes}\n{sstpc.explain(guest, daemon.log)}"
        )
        sstpc.ping(guest, str(SERVER_IPV6), daemon.log, v6=True)
        # and IPv4 still works on the same link
        sstpc.ping(guest, TUNNEL_IP, daemon.log)
        sstpc.wait_server_log(guest, daemon, "user 'alice' (mschapv2) connected")
        # the daemon routes exactly that /64 to this session
        listed = control.call(str(daemon.workdir / "control.sock"), "sessions")["sessions"]
        prefixes = [x["ipv6_prefix"] for x in listed if x["user"] == "alice"]
        assert prefixes == [str(ipaddress.IPv6Network(f"{glob}/64", strict=False))], listed
        print(f"guest ppp0: {glob}/64, {ll}; daemon: {prefixes}")
    finally:
        sstpc.disconnect(guest)
    sstpc.wait_server_log(guest, daemon, "closed: PPP terminated")
