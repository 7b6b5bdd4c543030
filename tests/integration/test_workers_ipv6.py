"""server.workers = 2 with an IPv6 pool and a RADIUS Disconnect listener, real daemon.

Topology as in ``test_ipv6``: client and server namespaces plus a host behind the server
(IPv6 only). The supervisor runs two workers; each owns a TUN (``sstp0``, ``sstp0w1``)
with its half of the /56 routed to it, hands out /64s from that half, and routes a static
per-user /64 exclusively to itself while a session holds it. The host pings every
session's address: the echo reaches the tunnel only if the kernel routes its /64 to the
TUN of the worker that holds the session. The supervisor alone listens for
Disconnect-Requests (radclient from the server namespace) and asks the workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest

from sstpd import control
from tests.integration.ipv6_held import Held
from tests.integration.netns import (
    ROOT,
    SERVER_IP,
    USERS,
    Daemon,
    Netns,
    sh,
    wait_for,
    with_ipv6_host,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

POOL6 = IPv6Network("2001:db8:77::/56")
SLICES6 = {0: IPv6Network("2001:db8:77::/57"), 1: IPv6Network("2001:db8:77:80::/57")}
TUNS = {0: "sstp0", 1: "sstp0w1"}
SERVER6 = "2001:db8:77::1"
LAN_SERVER6, LAN_HOST6 = "2001:db8:ff::1", "2001:db8:ff::2"
STATIC6 = "2001:db8:77:42::/64"  # carol's: in worker 0's slice, wherever her session lands
DAE_PORT = 3799
DAE_SECRET = "dae-workers-secret"


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with with_ipv6_host("sstpw6", LAN_SERVER6, LAN_HOST6) as n:
        yield n


def _add_static_user(d: Daemon) -> None:
    sh(
        *(sys.executable, "-m", "sstpd", "user", "add", "carol", "--password-stdin"),
        *("--ipv6-prefix", STATIC6, "--users-file", str(d.workdir / "users")),
        input="carol-secret\n",
        cwd=str(ROOT),
    )


@pytest.fixture(scope="module")
def daemon(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(
        net,
        tmp_path_factory.mktemp("workers6"),
        workers=2,
        tunnel_config=f'ipv6_pool = "{POOL6}"',
        extra_config=(
            f'\n[radius]\ndae_listen = "{SERVER_IP}:{DAE_PORT}"\n\n'
            f'[[radius.dae_client]]\naddress = "{SERVER_IP}"\nsecret = "{DAE_SECRET}"\n'
        ),
    )
    try:
        d.prepare()
        _add_static_user(d)
        d.start()
        yield d
    finally:
        d.stop()


def sock(d: Daemon) -> str:
    return str(d.workdir / "control.sock")


def sessions(d: Daemon) -> list[dict[str, Any]]:
    return control.call(sock(d), "sessions")["sessions"]  # type: ignore[no-any-return]


def routes6(net: Netns) -> list[tuple[str, str]]:
    out = net.run(net.srv, "ip", "-6", "-j", "route").stdout
    return sorted(
        (r["dst"], r.get("dev", ""))
        for r in json.loads(out)
        if not r["dst"].startswith("fe80") and r["dst"] != "multicast"
    )


def route6_dev(net: Netns, address: str) -> str:
    out = net.run(net.srv, "ip", "-6", "route", "get", address).stdout.split()
    return out[out.index("dev") + 1]


def radclient(net: Netns, attrs: str) -> str:
    r = net.run(
        net.srv,
        "sh",
        "-c",
        f'echo "{attrs}" | radclient -x -r 1 -t 3 {SERVER_IP}:{DAE_PORT} disconnect {DAE_SECRET}',
        check=False,
        timeout=30,
    )
    return r.stdout + r.stderr


# ---------------------------------------------------------------------------------------


def test_each_worker_tun_routes_its_half_of_the_ipv6_pool(net: Netns, daemon: Daemon) -> None:
    ready = [m for m in daemon.notify_messages if "READY=1" in m]
    assert len(ready) == 1 and "2 workers" in ready[0], daemon.notify_messages
    for w, tun in TUNS.items():
        out = net.run(net.srv, "ip", "-6", "-j", "route", "show", "dev", tun).stdout
        routed = [r["dst"] for r in json.loads(out) if r.get("protocol") != "kernel"]
        assert routed == [str(SLICES6[w])], out
        addrs = net.run(net.srv, "ip", "-6", "-j", "addr", "show", "dev", tun).stdout
        assert [a["local"] for i in json.loads(addrs) for a in i["addr_info"]] == [SERVER6]
    daemon.wait_log(f"IPv6: {SERVER6} on sstp0, one /64 per session from {SLICES6[0]} (127")
    daemon.wait_log(f"IPv6: {SERVER6} on sstp0w1, one /64 per session from {SLICES6[1]} (128")
    st = daemon.stats()
    assert st["pool6_size"] == 255 and st["pool6_in_use"] == 0  # as one process: /56 less ::/64
    # only the supervisor listens for Disconnect-Requests
    assert daemon.proc is not None
    udp = net.run(net.srv, "ss", "-Hlunp", "sport", f"= :{DAE_PORT}").stdout
    assert udp.count("users:") == 1 and f"pid={daemon.proc.pid}," in udp, udp


def test_sessions_on_both_workers_reachable_from_behind_the_server(
    net: Netns, daemon: Daemon
) -> None:
    baseline = routes6(net)
    held = Held(net, daemon, "many6", "--sessions", "16")
    try:
        addresses = [IPv6Address(a) for a in held.first["addresses"]]
        assert held.first["open"] == 16 and len(addresses) == 16
        rows = sessions(daemon)
        by_worker = {w: [r for r in rows if r["worker"] == w] for w in (0, 1)}
        assert by_worker[0] and by_worker[1], {w: len(r) for w, r in by_worker.items()}
        for w, mine in by_worker.items():
            for r in mine:
                assert IPv6Network(r["ipv6_prefix"]).subnet_of(SLICES6[w]), (w, r)
                assert route6_dev(net, r["ipv6_prefix"].split("/")[0]) == TUNS[w]
        assert daemon.stats()["pool6_in_use"] == 16
        # the host behind the server pings every session's address
        host = net.host  # type: ignore[attr-defined]
        for a in addresses:
            r = net.run(host, "ping", "-6", "-c", "1", "-W", "3", str(a), check=False)
            assert r.returncode == 0, (a, r.stdout, r.stderr)
        result = held.finish()
    finally:
        held.kill()
    assert result["v6_replies"] == 16 and result["v4_replies"] == 16
    assert result["answered"] == 16
    wait_for("the sessions to end", lambda: daemon.stats()["sessions"] == 0)
    st = daemon.stats()
    assert st["pool6_in_use"] == 0 and st["pool_in_use"] == 0
    assert routes6(net) == baseline


def test_ipv6_only_sessions_that_open_ipcp_later_are_routed_on_their_worker(
    net: Netns, daemon: Daemon
) -> None:
    """IPv6-only clients (IPCP Protocol-Rejected) that open IPCP later, on both workers:
    each address is listed with its worker, routed to that worker's TUN, and answers a
    ping from the server's namespace; both pools and the routes are whole afterwards."""
    baseline = routes6(net)
    held: list[Held] = []
    try:
        # SO_REUSEPORT spreads connections by hash: go on until both workers hold some
        while len(held) < 12 and (
            len(held) < 4 or len({r["worker"] for r in sessions(daemon)}) < 2
        ):
            held.append(Held(net, daemon, "v6then4", "--count", "1", "--v4-after", "0.2"))
        for h in held:
            assert h.first["v4_replies"] == 1 and h.first["host6_replies_after"] == 1, h.first
        rows = {r["address"]: r for r in sessions(daemon)}
        assert sorted(rows) == sorted(h.first["address"] for h in held)
        workers = set()
        for address, row in rows.items():
            workers.add(int(row["worker"]))
            out = net.run(net.srv, "ip", "route", "get", address).stdout.split()
            assert out[out.index("dev") + 1] == TUNS[int(row["worker"])], (address, row)
            r = net.run(net.srv, "ping", "-c", "1", "-W", "3", address, check=False)
            assert r.returncode == 0, (address, r.stdout, r.stderr)
        assert workers == {0, 1}, rows
        for h in held:
            h.finish()
    finally:
        for h in held:
            h.kill()
    wait_for("the sessions to end", lambda: daemon.stats()["sessions"] == 0)
    st = daemon.stats()
    assert st["pool6_in_use"] == 0 and st["pool_in_use"] == 0
    assert routes6(net) == baseline


def test_a_static_64_is_held_by_one_worker_at_a_time(net: Netns, daemon: Daemon) -> None:
    baseline = routes6(net)
    first = Held(net, daemon, "ping6", "--user", "carol", "--password", "carol-secret")
    seen_refused_elsewhere = False
    try:
        assert first.first["prefix"] == STATIC6 and first.first["host6_replies"] == 3
        [row] = sessions(daemon)
        owner = int(row["worker"])
        # the /64 is routed to the owner's TUN, whichever slice it lies in
        assert (STATIC6, TUNS[owner]) in routes6(net)
        assert route6_dev(net, "2001:db8:77:42::5") == TUNS[owner]
        # further sessions of carol get no IPv6 (IPv4 only), on either worker; go on
        # until one has landed on the other worker, where the exclusive route refused it
        for _ in range(12):
            res = json.loads(
                net.run(
                    net.cli,
                    *(sys.executable, "-m", "tests.integration.ipv6_tool", "exhaust6"),
                    *daemon.client_args(),
                    *("--user", "carol", "--password", "carol-secret", "--sessions", "1"),
                    timeout=60,
                ).stdout.splitlines()[-1]
            )
            assert res["ipv6"] == 0 and res["v4_replies"] == 1, res
            if f"IPv6 prefix {STATIC6} is held by a session of another worker" in (
                daemon.log_text()
            ):
                seen_refused_elsewhere = True
                break
        assert seen_refused_elsewhere, "no second session of carol landed on the other worker"
        assert route6_dev(net, "2001:db8:77:42::5") == TUNS[owner]  # still the owner's
        assert first.finish()["prefix"] == STATIC6
    finally:
        first.kill()
    wait_for("carol's sessions to end", lambda: not sessions(daemon))
    wait_for("the /64 route to go", lambda: routes6(net) == baseline)
    assert daemon.stats()["pool6_in_use"] == 0


def test_disconnect_request_reaches_the_worker_that_holds_the_session(
    net: Netns, daemon: Daemon
) -> None:
    pool = subprocess.Popen(
        [
            *("ip", "netns", "exec", net.cli, sys.executable, "-m"),
            *("tests.integration.client_tool", "pool", "--host", SERVER_IP),
            *("--ca-file", str(daemon.cert), "--user", "bob", "--password", USERS["bob"]),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
    )
    assert pool.stdin is not None and pool.stdout is not None

    def say(cmd: str) -> dict[str, Any]:
        assert pool.stdin is not None and pool.stdout is not None
        pool.stdin.write(cmd + "\n")
        pool.stdin.flush()
        return json.loads(pool.stdout.readline())  # type: ignore[no-any-return]

    try:
        rows: list[dict[str, Any]] = []
        for _ in range(6):  # until a session landed on worker 1 (and one on worker 0)
            assert say("open 2")["opened"]
            rows = sessions(daemon)
            if {r["worker"] for r in rows} == {0, 1}:
                break
        assert {r["worker"] for r in rows} == {0, 1}, rows
        target = next(r for r in rows if r["worker"] == 1)
        out = radclient(net, "Framed-IP-Address = 10.77.0.250")  # nobody has it
        assert "Disconnect-NAK" in out and "Session-Context-Not-Found" in out, out
        out = radclient(net, f"Framed-IP-Address = {target['address']}")
        assert "Received Disconnect-ACK" in out, out
        wait_for("the session to close", lambda: len(sessions(daemon)) == len(rows) - 1)
        left = sessions(daemon)
        assert target["id"] not in {r["id"] for r in left}
        daemon.wait_log("user 'bob' disconnected by RADIUS")
        out = radclient(net, "User-Name = nobody")
        assert "Disconnect-NAK" in out, out
        # by user name: every remaining session of bob, on both workers
        out = radclient(net, "User-Name = bob")
        assert "Received Disconnect-ACK" in out, out
        wait_for("bob's sessions to close", lambda: not sessions(daemon))
    finally:
        if pool.stdin is not None:
            pool.stdin.close()
        try:
            pool.wait(20)
        except subprocess.TimeoutExpired:
            pool.kill()
            pool.wait()
    wait_for("the pool to be whole", lambda: daemon.stats()["pool_in_use"] == 0)


@pytest.fixture(scope="module")
def small(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """Two workers on a /62: four /64s, the server's in worker 0's half, so worker 0
    can hand out one and worker 1 two."""
    d = Daemon(
        net,
        tmp_path_factory.mktemp("workers6-small"),
        workers=2,
        port=444,
        interface="sstp1",
        tunnel_ip="10.78.0.1",
        pool="10.78.0.0/24",
        tunnel_config='ipv6_pool = "2001:db8:78::/62"',
    )
    try:
        d.prepare()
        d.start()
        yield d
    finally:
        d.stop()


def test_the_ipv6_pool_past_its_bound_on_each_worker(net: Netns, small: Daemon) -> None:
    sizes = {0: 1, 1: 2}
    baseline = routes6(net)
    st = small.stats()
    assert st["pool6_size"] == 3 and st["pool6_in_use"] == 0
    held = Held(net, small, "exhaust6", "--sessions", "8", "--server6", "2001:db8:78::1")
    try:
        rows = sessions(small)
        assert len(rows) == 8
        for w in (0, 1):
            mine = [r for r in rows if r["worker"] == w]
            with6 = [r for r in mine if r["ipv6_prefix"]]
            # a worker gives IPv6 to as many sessions as its slice has /64s, no more
            assert len(with6) == min(len(mine), sizes[w]), (w, mine)
        assert held.first["ipv6"] == sum(1 for r in rows if r["ipv6_prefix"])
        assert small.stats()["pool6_in_use"] == held.first["ipv6"]
        small.wait_log("IPv6 prefix pool exhausted")
        result = held.finish()
    finally:
        held.kill()
    assert result["v4_replies"] == 8  # the sessions without IPv6 keep IPv4
    wait_for("the sessions to end", lambda: small.stats()["sessions"] == 0)
    st = small.stats()
    assert st["pool6_in_use"] == 0 and st["pool_in_use"] == 0
    assert routes6(net) == baseline
