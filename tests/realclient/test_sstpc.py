"""Debian's sstpc + pppd (in a qemu guest whose kernel has PPP) against the real daemon.

The daemon runs in the host's root namespace on the harness's server address, with its own
TUN device and a pool outside the harness's networks. This is the interop proof: a client
we did not write negotiates SSTP, crypto binding, LCP, MS-CHAPv2 or PAP and IPCP with us,
then moves IP traffic both ways.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.netns import ROOT, USERS, Daemon, RootNamespace

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
    try:  # in the root namespace: a leftover would hold sstprc0 for every later run
        d.prepare()
        d.start()
        yield d
    finally:
        d.stop()


def _connect(guest: Guest, d: Daemon, user: str, auth: str) -> dict[str, object]:
    return sstpc.connect(
        guest, SERVER_IP, 443, user, USERS[user], auth=auth, ca_cert=Path(d.cert), timeout=30
    )


def test_mschapv2_address_dns_ping_iperf(guest: Guest, daemon: Daemon) -> None:
    info = _connect(guest, daemon, "alice", "mschapv2")
    try:
        assert info["peer"] == TUNNEL_IP, sstpc.explain(guest, daemon.log)
        assert re.fullmatch(r"10\.78\.0\.\d+", str(info["local"])), sstpc.explain(guest, daemon.log)
        assert info["dns"] == DNS, sstpc.explain(guest, daemon.log)
        sstpc.ping(guest, TUNNEL_IP, daemon.log)
        with sstpc.iperf_server(TUNNEL_IP):
            rates = sstpc.iperf(guest, TUNNEL_IP, 4)
        print(f"iperf3 through sstpc: {rates}")
        assert rates["guest_to_server"] > 1.0
        assert rates["server_to_guest"] > 1.0
        log = sstpc.wait_server_log(guest, daemon, "user 'alice' (mschapv2) connected")
        assert "crypto binding verified (SHA256)" in log, sstpc.explain(guest, daemon.log)
    finally:
        sstpc.disconnect(guest)
    sstpc.wait_server_log(guest, daemon, "closed: PPP terminated")


def test_pap_address_and_ping(guest: Guest, daemon: Daemon) -> None:
    info = _connect(guest, daemon, "bob", "pap")
    try:
        assert info["peer"] == TUNNEL_IP, sstpc.explain(guest, daemon.log)
        sstpc.ping(guest, TUNNEL_IP, daemon.log)
        log = sstpc.wait_server_log(guest, daemon, "user 'bob' (pap) connected")
        # PAP has no keys: the binding is made with the all-zero HLAK, and still verified
        assert re.search(
            r"user 'bob' \(pap\) connected: .*crypto binding verified \(SHA256\)", log
        ), sstpc.explain(guest, daemon.log)
    finally:
        sstpc.disconnect(guest)


def test_eap_mschapv2_binding_verified(guest: Guest, daemon: Daemon) -> None:
    """pppd 2.4.9's EAP-MS-CHAP-V2 peer (refuse-* leaves only EAP), keys from EAP."""
    info = _connect(guest, daemon, "alice", "eap-mschapv2")
    try:
        assert info["peer"] == TUNNEL_IP, sstpc.explain(guest, daemon.log)
        sstpc.ping(guest, TUNNEL_IP, daemon.log)
        pppd_log = str(info["pppd_log"])
        assert "rcvd [EAP Request" in pppd_log and "sent [EAP Response" in pppd_log, (
            sstpc.explain(guest, daemon.log)
        )
        log = sstpc.wait_server_log(guest, daemon, "user 'alice' (eap-mschapv2) connected")
        # the binding was checked with the HLAK from the EAP-MS-CHAP-V2 keys
        assert re.search(
            r"user 'alice' \(eap-mschapv2\) connected: .*crypto binding verified \(SHA256\)", log
        ), sstpc.explain(guest, daemon.log)
    finally:
        sstpc.disconnect(guest)


def test_pppd_without_auth_options_connects_with_the_defaults(
    guest: Guest, daemon: Daemon
) -> None:
    """No refuse-*/require-* at all: pppd takes the server's first offer, EAP."""
    _connect(guest, daemon, "bob", "default")
    try:
        sstpc.ping(guest, TUNNEL_IP, daemon.log, count=2)
        sstpc.wait_server_log(guest, daemon, "user 'bob' (eap-mschapv2) connected")
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
    assert "E=691" in str(err.value) or "691" in err.value.pppd_log, (
        f"{err.value}\n{sstpc.explain(guest, daemon.log)}"
    )
    sstpc.wait_server_log(guest, daemon, "user 'alice' authentication failed (mschapv2, E=691")


# A network behind the server that only the profile's route sends into the tunnel.
PROFILE_ROUTE = "10.78.5.0/24"
PROFILE_TARGET = "10.78.5.1"


def test_generated_sstpc_profile_connects_routes_and_pings(guest: Guest, daemon: Daemon) -> None:
    """`sstpd profile sstpc` from the daemon's configuration (plus a split-tunnel route),
    executed as is in the guest: it writes the CA for --ca-cert and the ip-up hook, sstpc
    verifies the certificate and name, the tunnel opens, the hook routes PROFILE_ROUTE into
    ppp0, and a ping to an address there (on the server's TUN) is answered."""
    text = daemon.config.read_text()
    conf = daemon.workdir / "profile.toml"  # same directory: relative paths stay valid
    conf.write_text(text.replace("[tunnel]\n", f'[tunnel]\nroutes = ["{PROFILE_ROUTE}"]\n', 1))
    made = subprocess.run(
        [sys.executable, "-m", "sstpd", "profile", "sstpc", "--config", str(conf), "--user",
         "alice"],
        capture_output=True, text=True, cwd=str(ROOT), check=True,
    )  # fmt: skip
    script = made.stdout
    assert 'sstpc --ca-cert "$CA"' in script and f"{SERVER_IP}:443" in script
    assert USERS["alice"] not in script
    guest.run(f"mkdir -p {sstpc.WORK} && cat > {sstpc.WORK}/profile.sh", input=script, check=True)
    subprocess.run(["ip", "addr", "add", f"{PROFILE_TARGET}/32", "dev", "sstprc0"], check=True)
    argv = [
        "env",
        f"SSTP_PASSWORD={USERS['alice']}",
        "SSTPC_OPTIONS=--log-stderr --log-level 4",  # the harness reads sstpc's log
        "sh",
        f"{sstpc.WORK}/profile.sh",
        "logfile",  # extra arguments go to pppd
        f"{sstpc.WORK}/pppd.log",
        "debug",
    ]
    try:
        info = sstpc.run_client(guest, SERVER_IP, argv, what="the sstpc profile", timeout=30)
        assert info["peer"] == TUNNEL_IP, sstpc.explain(guest, daemon.log)
        # pppd runs ip-up.d right after it configures ppp0
        route = sstpc.wait_for(
            guest, f"ip -4 route show {PROFILE_ROUTE}", lambda out: "dev ppp0" in out
        )
        assert "dev ppp0" in route, f"{route}\n{sstpc.explain(guest, daemon.log)}"
        sstpc.ping(guest, PROFILE_TARGET, daemon.log)
        log = sstpc.wait_server_log(guest, daemon, "user 'alice' (mschapv2) connected")
        assert "crypto binding verified (SHA256)" in log, sstpc.explain(guest, daemon.log)
    finally:
        sstpc.disconnect(guest)
        subprocess.run(["ip", "addr", "del", f"{PROFILE_TARGET}/32", "dev", "sstprc0"], check=False)
        guest.run("rm -rf /etc/ppp/sstpd /etc/ppp/ip-up.d/sstpd-*")
