"""Debian's sstpc + pppd (in a qemu guest whose kernel has PPP) against the real daemon.

The daemon runs in the host's root namespace on the harness's server address, with its own
TUN device and a pool outside the harness's networks. This is the interop proof: a client
we did not write negotiates SSTP, crypto binding, LCP, MS-CHAPv2 or PAP and IPCP with us,
then moves IP traffic both ways.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.netns import USERS, Daemon, RootNamespace

from . import sstpc
from .guest import SERVER_IP, Guest

pytestmark = pytest.mark.realclient

TUNNEL_IP = "10.78.0.1"
POOL = "10.78.0.0/24"
DNS = ["10.78.0.53", "10.78.0.54"]


@pytest.fixture(scope="module")
def daemon(guest: Guest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    # the guest fixture has created the veth that carries SERVER_IP
    d = Daemon(
        RootNamespace(),
        tmp_path_factory.mktemp("rc-daemon"),
        listen=SERVER_IP,
        tunnel_ip=TUNNEL_IP,
        pool=POOL,
        dns=DNS,
        interface="sstprc0",
    )
    d.prepare()
    d.start()
    yield d
    d.stop()


def _connect(guest: Guest, d: Daemon, user: str, auth: str) -> dict[str, object]:
    return sstpc.connect(
        guest, SERVER_IP, 443, user, USERS[user], auth=auth, ca_cert=Path(d.cert), timeout=30
    )


def test_mschapv2_address_dns_ping_iperf(guest: Guest, daemon: Daemon) -> None:
    info = _connect(guest, daemon, "alice", "mschapv2")
    try:
        assert info["peer"] == TUNNEL_IP
        assert re.fullmatch(r"10\.78\.0\.\d+", str(info["local"]))
        assert info["dns"] == DNS
        r = guest.run(f"ping -c 3 -i 0.3 -W 3 {TUNNEL_IP}", timeout=60)
        assert " 0% packet loss" in r.stdout, r.stdout + r.stderr
        with sstpc.iperf_server(TUNNEL_IP):
            rates = sstpc.iperf(guest, TUNNEL_IP, 4)
        print(f"iperf3 through sstpc: {rates}")
        assert rates["guest_to_server"] > 1.0
        assert rates["server_to_guest"] > 1.0
        log = daemon.wait_log("user 'alice' (mschapv2) connected")
        assert "crypto binding verified (SHA256)" in log
    finally:
        sstpc.disconnect(guest)
    daemon.wait_log("closed: PPP terminated")


def test_pap_address_and_ping(guest: Guest, daemon: Daemon) -> None:
    info = _connect(guest, daemon, "bob", "pap")
    try:
        assert info["peer"] == TUNNEL_IP
        r = guest.run(f"ping -c 3 -i 0.3 -W 3 {TUNNEL_IP}", timeout=60)
        assert " 0% packet loss" in r.stdout, r.stdout + r.stderr
        log = daemon.wait_log("user 'bob' (pap) connected")
        # PAP has no keys: the binding is made with the all-zero HLAK, and still verified
        assert re.search(r"user 'bob' \(pap\) connected: .*crypto binding verified \(SHA256\)", log)
    finally:
        sstpc.disconnect(guest)


def test_eap_mschapv2_binding_verified(guest: Guest, daemon: Daemon) -> None:
    """pppd 2.4.9's EAP-MS-CHAP-V2 peer (refuse-* leaves only EAP), keys from EAP."""
    info = _connect(guest, daemon, "alice", "eap-mschapv2")
    try:
        assert info["peer"] == TUNNEL_IP
        r = guest.run(f"ping -c 3 -i 0.3 -W 3 {TUNNEL_IP}", timeout=60)
        assert " 0% packet loss" in r.stdout, r.stdout + r.stderr
        pppd_log = str(info["pppd_log"])
        assert "rcvd [EAP Request" in pppd_log and "sent [EAP Response" in pppd_log, pppd_log
        log = daemon.wait_log("user 'alice' (eap-mschapv2) connected")
        # the binding was checked with the HLAK from the EAP-MS-CHAP-V2 keys
        assert re.search(
            r"user 'alice' \(eap-mschapv2\) connected: .*crypto binding verified \(SHA256\)", log
        )
    finally:
        sstpc.disconnect(guest)


def test_pppd_without_auth_options_connects_with_the_defaults(
    guest: Guest, daemon: Daemon
) -> None:
    """No refuse-*/require-* at all: pppd takes the server's first offer, EAP."""
    _connect(guest, daemon, "bob", "default")
    try:
        r = guest.run(f"ping -c 2 -i 0.3 -W 3 {TUNNEL_IP}", timeout=60)
        assert " 0% packet loss" in r.stdout, r.stdout + r.stderr
        daemon.wait_log("user 'bob' (eap-mschapv2) connected")
    finally:
        sstpc.disconnect(guest)


def test_wrong_password_is_rejected(guest: Guest, daemon: Daemon) -> None:
    with pytest.raises(sstpc.SstpcError) as err:
        sstpc.connect(
            guest,
            SERVER_IP,
            443,
            "alice",
            "not-the-password",
            auth="mschapv2",
            ca_cert=Path(daemon.cert),
            timeout=20,
            attempts=1,
        )
    assert "E=691" in str(err.value) or "691" in err.value.pppd_log
    daemon.wait_log("user 'alice' authentication failed (mschapv2, E=691")
