"""Dual-stack daemon with a real TUN: a /64 per session, routed to a host behind the server.

Topology: the usual client and server namespaces (``netns.Netns``) plus a third one, the
host behind the server, on its own veth pair with IPv6 only::

    cli --(veth, IPv4: SSTP over TLS)-- srv [sstp0: 2001:db8:77::1, pool ...77::/56]
                                            --(veth 2001:db8:ff::/64)-- host ::2

The client is ``tests/integration/ipv6_tool.py`` (the package's Tunnel with IPV6CP on its
link, ICMPv6 built by hand), so the assertions are about the server: the RA it sends,
what it forwards, what it drops and counts, and that the prefix pool returns to baseline.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest

from sstpd import control
from tests.integration.ipv6_held import Held
from tests.integration.netns import Daemon, Netns, sh, with_ipv6_host

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

POOL6 = IPv6Network("2001:db8:77::/56")
SERVER6 = "2001:db8:77::1"
LAN_SERVER6, LAN_HOST6 = "2001:db8:ff::1", "2001:db8:ff::2"
STATIC6 = "2001:db8:77:42::/64"


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with with_ipv6_host("sstp6", LAN_SERVER6, LAN_HOST6) as n:
        yield n


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "offload"])
def daemon(
    net: Netns, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Daemon]:
    """Twice: the plain TUN, and with ``offload`` (IFF_VNET_HDR: every TUN read and write
    carries a virtio_net_hdr, so the IPv6 offsets and writes differ)."""
    d = Daemon(net, tmp_path_factory.mktemp("ipv6-daemon"))
    d.prepare()
    offload = "true" if request.param else "false"
    text = d.config.read_text().replace(
        "[tunnel]\n",
        f'[tunnel]\nipv6_pool = "{POOL6}"\nipv6_dns = ["2001:db8::53"]\noffload = {offload}\n',
    )
    d.config.write_text(text)
    sh(
        sys.executable,
        "-m",
        "sstpd",
        "user",
        "add",
        "carol",
        "--password-stdin",
        "--ipv6-prefix",
        STATIC6,
        "--users-file",
        str(d.workdir / "users"),
        input="carol-secret\n",
    )
    d.start()
    yield d
    d.stop()


def tool(
    net: Netns, daemon: Daemon, scenario: str, *args: str, timeout: float = 300
) -> dict[str, Any]:
    r = net.run(
        net.cli,
        sys.executable,
        "-m",
        "tests.integration.ipv6_tool",
        scenario,
        *daemon.client_args(),
        *args,
        check=False,
        timeout=timeout,
    )
    if r.returncode != 0:
        raise AssertionError(
            f"ipv6_tool {scenario} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        )
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def stats(daemon: Daemon) -> dict[str, Any]:
    return daemon.stats()


def icmp6_in_echos(net: Netns) -> int:
    snmp = net.run(net.host, "cat", "/proc/net/snmp6").stdout  # type: ignore[attr-defined]
    return int(re.search(r"^Icmp6InEchos\s+(\d+)", snmp, re.M).group(1))  # type: ignore[union-attr]


def test_tun_has_the_server_address_and_the_pool_route(daemon: Daemon, net: Netns) -> None:
    addrs = net.run(net.srv, "ip", "-6", "-j", "addr", "show", "dev", "sstp0").stdout
    local = [a["local"] for i in json.loads(addrs) for a in i["addr_info"]]
    assert local == [SERVER6]  # no kernel link-local: ND on the links is the daemon's
    routes = net.run(net.srv, "ip", "-6", "-j", "route", "show", "dev", "sstp0").stdout
    assert str(POOL6) in [r["dst"] for r in json.loads(routes)]
    daemon.wait_log(f"IPv6: {SERVER6} on sstp0, one /64 per session from {POOL6} (255 available)")


def test_a_session_gets_a_64_reaches_server_and_host_spoof_dropped(
    daemon: Daemon, net: Netns
) -> None:
    before = stats(daemon)
    echos_before = icmp6_in_echos(net)
    held = Held(net, daemon, "ping6")
    try:
        res = held.first
        prefix = IPv6Network(res["prefix"])
        assert prefix.prefixlen == 64 and prefix.subnet_of(POOL6)
        assert IPv6Address(SERVER6) not in prefix  # the server's /64 is never handed out
        assert res["server6_replies"] == 3 and res["host6_replies"] == 3
        assert res["spoofed_replies"] == 0 and res["v4_replies"] == 1
        assert 1 <= res["ras_after_rs_flood"] <= 1  # 50 RS in a second: one answer
        # while the session is open: sessions and stats show it
        [row] = control.call(str(daemon.workdir / "control.sock"), "sessions")["sessions"]
        assert row["ipv6_prefix"] == str(prefix)
        assert row["rx6_packets"] >= 6 and row["tx6_packets"] >= 6 and row["dropped"] >= 3
        ctl = sh(
            sys.executable,
            "-m",
            "sstpd.ctl",
            "--socket",
            str(daemon.workdir / "control.sock"),
            "sessions",
            check=False,
        )
        assert str(prefix) in ctl.stdout, ctl.stdout + ctl.stderr
        mid = stats(daemon)
        assert mid["pool6_in_use"] == before["pool6_in_use"] + 1
        held.finish()
    finally:
        held.kill()
    # the host saw exactly the legitimate echo requests: the spoofed ones never left
    assert icmp6_in_echos(net) - echos_before == 3
    after = stats(daemon)
    assert after["dropped_spoofed6"] - before["dropped_spoofed6"] == 3
    assert after["nd_rate_limited"] - before["nd_rate_limited"] >= 49
    assert after["rx6_packets"] - before["rx6_packets"] >= 6
    assert after["tx6_packets"] - before["tx6_packets"] >= 6
    log = daemon.wait_log(f"IPv6: prefix {prefix}")
    assert "IPv6 rx" in log
    deadline = time.monotonic() + 10
    while stats(daemon)["pool6_in_use"] != before["pool6_in_use"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stats(daemon)["pool6_in_use"] == before["pool6_in_use"]


def test_ipv6_only_client_counts_as_open_and_outlives_the_handshake_timeout(
    daemon: Daemon, net: Netns
) -> None:
    """A client that Protocol-Rejects IPCP and runs IPV6CP alone (IPv4 off on its VPN
    interface): listed as open with its /64 and no address, IPv6 both ways, still up
    past ``server.handshake_timeout`` (20 s here), and both pools whole afterwards."""
    before = stats(daemon)
    held = Held(net, daemon, "v6only", "--count", "2")
    try:
        first = held.first
        prefix = IPv6Network(first["prefix"])
        assert prefix.subnet_of(POOL6) and first["ipcp"] == "-"  # never ran IPCP
        assert first["server6_replies"] == 2 and first["host6_replies"] == 2
        [row] = control.call(str(daemon.workdir / "control.sock"), "sessions")["sessions"]
        assert row["ipv6_prefix"] == str(prefix) and row["address"] == ""
        daemon.wait_log(f"connected: address none (IPv6 only, {prefix})")
        time.sleep(21.0)  # past handshake_timeout: an unopened session is aborted by then
        [row] = control.call(str(daemon.workdir / "control.sock"), "sessions")["sessions"]
        assert row["ipv6_prefix"] == str(prefix)
        result = held.finish()
    finally:
        held.kill()
    assert result["host6_replies_after"] == 2
    deadline = time.monotonic() + 10
    while stats(daemon)["pool6_in_use"] != before["pool6_in_use"] and time.monotonic() < deadline:
        time.sleep(0.2)
    after = stats(daemon)
    assert after["pool6_in_use"] == before["pool6_in_use"]
    assert after["pool_in_use"] == before["pool_in_use"]


def test_static_prefix_from_the_users_file(daemon: Daemon, net: Netns) -> None:
    res = tool(
        net,
        daemon,
        "ping6",
        "--user",
        "carol",
        "--password",
        "carol-secret",
        "--count",
        "1",
        "--rs-flood",
        "1",
    )
    assert res["prefix"] == STATIC6 and res["server6_replies"] == 1


def test_fifty_dual_stack_sessions_and_pool_back_to_baseline(daemon: Daemon, net: Netns) -> None:
    before = stats(daemon)
    res = tool(net, daemon, "many6", "--sessions", "50", timeout=600)
    assert res["errors"] == [] and res["opened"] == res["configured"] == 50
    prefixes = [IPv6Network(p) for p in res["prefixes"]]
    assert len(prefixes) == 50 and all(p.subnet_of(POOL6) for p in prefixes)
    assert res["v6_replies"] == 50 and res["v4_replies"] == 50
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = stats(daemon)
        if now["pool6_in_use"] == before["pool6_in_use"] and now["sessions"] == 0:
            break
        time.sleep(0.3)
    assert now["pool6_in_use"] == before["pool6_in_use"] == 0
    assert now["pool_in_use"] == before["pool_in_use"] == 0


def test_windows_shaped_client_gets_ipv6_and_ipv4(daemon: Daemon, net: Netns) -> None:
    """The scripted Windows client (``windows_client.py``): its IPV6CP request acked, the
    RA read, an IPv6 ping to the server from prefix::IID, IPv4 still working."""
    r = net.run(
        net.cli,
        sys.executable,
        "-m",
        "tests.integration.windows_client",
        "settings-eap-ipv6",
        "--host",
        daemon.listen,
        "--ca-file",
        str(daemon.cert),
        check=False,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert "error" not in res, res
    assert res["iid"] == "1c2d3e4f50617283"  # Windows' own identifier, acked unchanged
    prefix = IPv6Network(res["prefix"])
    assert prefix.subnet_of(POOL6) and prefix.prefixlen == 64
    server_ll = IPv6Address(b"\xfe\x80" + bytes(6) + bytes.fromhex(res["server_iid"]))
    assert res["ra_from"] == str(server_ll)  # from the identifier of the server's IPV6CP
    assert res["ra_mtu"] == 1400 and res["ra_dns"] == ["2001:db8::53"]
    assert res["protocol_rejects"] == ["80FD"]  # CCP only: IPV6CP is negotiated
    assert res["ping6"] is True and res["pings"] == ["FF 03 00 21"]
    assert res["disconnected"] is True


@pytest.fixture(scope="module")
def small(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A second daemon beside the first (port 444, sstp1) whose IPv6 pool holds one /64:
    a /63 with the server's address in the other half."""
    d = Daemon(
        net,
        tmp_path_factory.mktemp("ipv6-small"),
        port=444,
        interface="sstp1",
        tunnel_ip="10.78.0.1",
        pool="10.78.0.0/24",
    )
    d.prepare()
    d.config.write_text(
        d.config.read_text().replace("[tunnel]\n", '[tunnel]\nipv6_pool = "2001:db8:78::/63"\n')
    )
    d.start()
    yield d
    d.stop()


def test_exhausted_prefix_pool_leaves_later_sessions_ipv4_only(small: Daemon, net: Netns) -> None:
    """The limit past its bound: the second and third session get no IPv6 (IPV6CP
    Protocol-Rejected, the client's automaton stopped) and keep IPv4; afterwards the
    pool is whole again and the next session gets the /64."""
    before = stats(small)
    assert before["pool6_size"] == 1 and before["pool6_in_use"] == 0
    res = tool(net, small, "exhaust6", "--sessions", "3", "--server6", "2001:db8:78::1")
    assert res == {"opened": 3, "ipv6": 1, "v4_replies": 3, "ipv6cp": ["OPENED", "STOPPED"]}
    small.wait_log("IPv6 prefix pool exhausted")
    deadline = time.monotonic() + 10
    while stats(small)["pool6_in_use"] and time.monotonic() < deadline:
        time.sleep(0.2)
    after = stats(small)
    assert after["pool6_in_use"] == 0 and after["pool_in_use"] == 0
    again = tool(net, small, "exhaust6", "--sessions", "1", "--server6", "2001:db8:78::1")
    assert again["ipv6"] == 1


def test_ipv6_only_client_that_opens_ipcp_later_is_routed_its_ipv4(
    daemon: Daemon, net: Netns
) -> None:
    """An IPv6-only client (IPCP Protocol-Rejected) opens IPCP after all: its address is
    listed, the server's reply to its ping comes back through the tunnel, a ping from the
    server's namespace to the address is answered by the client (the TUN delivers to the
    session), IPv6 keeps working, and both pools are whole afterwards."""
    before = stats(daemon)
    held = Held(net, daemon, "v6then4", "--count", "2")
    try:
        first = held.first
        prefix = IPv6Network(first["prefix"])
        assert first["host6_replies"] == 2 and first["host6_replies_after"] == 2
        address = first["address"]
        daemon.wait_log(f"connected: address none (IPv6 only, {prefix})")
        daemon.wait_log(f"IPv4 opened after IPv6 only: address {address}")
        assert first["v4_replies"] == 2  # the server's echo replies routed back by address
        [row] = control.call(str(daemon.workdir / "control.sock"), "sessions")["sessions"]
        assert row["address"] == address and row["ipv6_prefix"] == str(prefix)
        r = net.run(net.srv, "ping", "-c", "2", "-W", "3", address, check=False)
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout
        held.finish()
    finally:
        held.kill()
    deadline = time.monotonic() + 10
    while stats(daemon)["pool_in_use"] != before["pool_in_use"] and time.monotonic() < deadline:
        time.sleep(0.2)
    after = stats(daemon)
    assert after["pool_in_use"] == before["pool_in_use"]
    assert after["pool6_in_use"] == before["pool6_in_use"]
    assert control.call(str(daemon.workdir / "control.sock"), "sessions")["sessions"] == []
