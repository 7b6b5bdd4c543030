"""Hostile clients against a real daemon (issue 11): every finding is one test here.

The daemon has a small pool (13 addresses) so a leak shows within a few connections, and
a short handshake timeout. After each hostile sequence the accounting must be back where
it was: ``pool_in_use`` equals the open sessions, the daemon's fd count is the baseline.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sstpd import control
from tests.integration.netns import SERVER_IP, Daemon, Netns

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

SMALL_POOL = "10.77.0.0/28"  # 14 hosts minus the server's own address: 13


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    n = Netns("sstpab")
    n.up()
    yield n
    n.down()


@pytest.fixture(scope="module")
def daemon(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(net, tmp_path_factory.mktemp("abuse-daemon"), pool=SMALL_POOL)
    d.prepare()
    d.config.write_text(
        d.config.read_text().replace("handshake_timeout = 20.0", "handshake_timeout = 4.0")
    )
    d.start()
    yield d
    d.stop()




def settled(d: Daemon, baseline_fds: int, timeout: float = 15.0) -> dict[str, Any]:
    """Wait until no handshake is in progress and the fds are back; return the stats."""
    deadline = time.monotonic() + timeout
    st = d.stats()
    while time.monotonic() < deadline:
        st = d.stats()
        if st["handshakes_in_progress"] == 0 and d.open_fds() == baseline_fds:
            break
        time.sleep(0.2)
    assert st["handshakes_in_progress"] == 0, st
    assert d.open_fds() == baseline_fds
    assert st["pool_in_use"] == st["sessions"], st
    assert st["authenticated"] == st["sessions"] and st["pending"] == 0, st
    return st


def hostile(net: Netns, d: Daemon, scenario: str, *args: str, timeout: float = 120) -> Any:
    r = net.run(
        net.cli,
        sys.executable,
        "-m",
        "tests.integration.hostile",
        scenario,
        "--host",
        SERVER_IP,
        "--ca-file",
        str(d.cert),
        *args,
        check=False,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def legit_ping(net: Netns, d: Daemon) -> None:
    res = net.client_tool("ping", *d.client_args(), "--count", "1")
    assert res["replies"] == 1


@pytest.fixture()
def baseline(daemon: Daemon) -> int:
    st = daemon.stats()
    assert st["sessions"] == 0 and st["pool_in_use"] == 0, st
    return daemon.open_fds()


def test_auth_then_drop_before_ipcp_releases_the_address(
    daemon: Daemon, net: Netns, baseline: int
) -> None:
    """Finding 1: twice the pool size of "authenticate, cut at CHAP Success"."""
    res = hostile(net, daemon, "auth-drop", "--count", "26")
    assert res["authenticated"] == 26
    st = settled(daemon, baseline)
    assert st["pool_in_use"] == 0
    legit_ping(net, daemon)  # the pool is not exhausted
    settled(daemon, baseline)


@pytest.mark.parametrize("ending", ["disconnect", "cut"])
def test_lcp_renegotiation_keeps_one_address(
    daemon: Daemon, net: Netns, baseline: int, ending: str
) -> None:
    """Finding 1: each LCP renegotiation re-authenticates; the address stays the same."""
    args = ["--count", "15"] + (["--cut"] if ending == "cut" else [])
    res = hostile(net, daemon, "reneg", *args)
    assert res["opened"] is True
    assert res["rounds"] == 15
    assert set(res["addresses"]) == {res["first"]}  # no new address, no stale route
    assert res["replies"] == 2  # the route still points at this session
    st = settled(daemon, baseline)
    assert st["pool_in_use"] == 0
    legit_ping(net, daemon)


def test_authenticated_then_silent_is_released_at_the_timeout(
    daemon: Daemon, net: Netns, baseline: int
) -> None:
    """Finding 1: authenticated, IPCP never answered: the handshake timeout frees it."""
    res = hostile(net, daemon, "auth-stall", "--wait", "15")
    assert res["authenticated"] is True
    assert res["closed_by_server"] is True
    assert res["after"] < 10
    st = settled(daemon, baseline)
    assert st["pool_in_use"] == 0
    assert st["handshakes"]["timeout"] >= 1


def test_ipv6_in_an_ipv4_frame_is_dropped_and_counted(
    daemon: Daemon, net: Netns, baseline: int
) -> None:
    """Finding 2: IPv6 with PPP protocol 0x0021 and the client's IPv4 address at bytes
    12..16 (the IPv4 source field) never reaches the TUN, fast path or slow path."""
    rx = "/sys/class/net/sstp0/statistics/rx_packets"
    before_rx = int(net.run(net.srv, "cat", rx).stdout)
    before = daemon.stats()["dropped_spoofed"]
    res = hostile(net, daemon, "v6-in-v4", "--count", "3")
    assert res["opened"] is True
    assert res["replies"] == 2
    after_rx = int(net.run(net.srv, "cat", rx).stdout)
    assert after_rx - before_rx == 2  # the two IPv4 echo requests, nothing else
    settled(daemon, baseline)
    assert daemon.stats()["dropped_spoofed"] - before == res["sent"]


def test_oversized_code_and_protocol_reject_are_truncated(
    daemon: Daemon, net: Netns, baseline: int
) -> None:
    """Finding 6: MRU 65535, a maximal unknown LCP code and unknown protocol: the
    Code-Reject and Protocol-Reject fit one SSTP packet, the session goes on."""
    res = hostile(net, daemon, "big-reject")
    codes = sorted(r["code"] for r in res["rejects"])
    assert codes == [7, 8], res
    assert all(r["sstp_length"] <= 4095 for r in res["rejects"])
    assert res["opened"] is True and res["replies"] == 2
    settled(daemon, baseline)
    log = daemon.log_text()
    assert "Traceback" not in log and "Fatal error" not in log


def test_users_file_readable_by_others_is_refused(daemon: Daemon, net: Netns) -> None:
    """Finding 7: reload and serve refuse a users file other users can read."""
    users = daemon.workdir / "users"
    assert users.stat().st_mode & 0o777 == 0o600  # as `sstpd user add` wrote it
    users.chmod(0o644)
    try:
        answer = control.request(str(daemon.workdir / "control.sock"), "reload")
        assert answer["ok"] is False
        assert answer["error"] == (
            f"{users}: mode 0644 lets other users read it; it must be 0600 (or 0640 with "
            f"the daemon's group): chmod 600 {users}"
        )
        r = net.run(
            net.srv,
            sys.executable,
            "-m",
            "sstpd",
            "serve",
            "--config",
            str(daemon.config),
            check=False,
            timeout=30,
        )
        assert r.returncode == 1 and "mode 0644 lets other users read it" in r.stderr
    finally:
        users.chmod(0o600)
    legit_ping(net, daemon)  # the running daemon kept its users


def test_no_traceback_and_accounting_at_the_end(daemon: Daemon) -> None:
    assert daemon.proc is not None and daemon.proc.poll() is None
    st = daemon.stats()
    assert st["pool_in_use"] == st["sessions"] == 0
    assert st["internal_errors"] == 0
    assert "Traceback" not in daemon.log_text()
