"""Debian's sstpc + pppd in the qemu guest, authenticated by a real FreeRADIUS.

The daemon (root namespace, as in test_sstpc.py) has ``auth.backends = ["radius"]`` and
asks a FreeRADIUS on 127.0.0.1; pppd's MS-CHAPv2 (plain or inside EAP) is answered with
the MS-CHAP2-Success from RADIUS and the crypto binding is checked with the HLAK from the
MS-MPPE keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.freeradius import SECRET, FreeRadius
from tests.integration.netns import Daemon, RootNamespace

from . import sstpc
from .guest import SERVER_IP, Guest

pytestmark = pytest.mark.realclient

TUNNEL_IP = "10.79.0.1"
POOL = "10.79.0.0/24"
AUTH_PORT, ACCT_PORT = 18120, 18130


@pytest.fixture(scope="module")
def freeradius(guest: Guest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreeRadius]:
    fr = FreeRadius(
        tmp_path_factory.mktemp("rc-raddb"),
        "127.0.0.1",
        clients="127.0.0.1",
        auth_port=AUTH_PORT,
        acct_port=ACCT_PORT,
    )
    fr.start(RootNamespace(), "")
    yield fr
    fr.stop()


@pytest.fixture(scope="module")
def daemon(
    guest: Guest, freeradius: FreeRadius, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    d = Daemon(
        RootNamespace(),
        tmp_path_factory.mktemp("rc-rad-daemon"),
        listen=SERVER_IP,
        tunnel_ip=TUNNEL_IP,
        pool=POOL,
        interface="sstprc1",
    )
    d.prepare()
    text = d.config.read_text().replace(
        '[auth]\nusers_file = "users"', '[auth]\nusers_file = "users"\nbackends = ["radius"]'
    )
    d.config.write_text(
        text
        + f"""
[radius]
timeout = 2.0

[[radius.server]]
address = "127.0.0.1"
port = {AUTH_PORT}
secret = "{SECRET}"

[[radius.accounting_server]]
address = "127.0.0.1"
port = {ACCT_PORT}
secret = "{SECRET}"
"""
    )
    d.start()
    yield d
    d.stop()


@pytest.mark.parametrize("auth", ["eap-mschapv2", "mschapv2", "pap"])
def test_sstpc_through_radius(
    guest: Guest, daemon: Daemon, freeradius: FreeRadius, auth: str
) -> None:
    info = sstpc.connect(
        guest, SERVER_IP, 443, "ruser", "ruser-pass", auth=auth, ca_cert=Path(daemon.cert),
        timeout=30,
    )  # fmt: skip
    try:
        assert info["peer"] == TUNNEL_IP, sstpc.explain(guest, daemon.log)
        sstpc.ping(guest, TUNNEL_IP, daemon.log)
        log = sstpc.wait_server_log(guest, daemon, f"user 'ruser' ({auth}) connected")
        assert re.search(rf"user 'ruser' \({auth}\) connected: .*crypto binding verified", log), (
            sstpc.explain(guest, daemon.log)
        )
        assert "RADIUS Access-Accept for 'ruser'" in log, sstpc.explain(guest, daemon.log)
    finally:
        sstpc.disconnect(guest)
    sstpc.wait_server_log(guest, daemon, "accounting Stop acknowledged")
    stops = [r for r in freeradius.records() if r.get("Acct-Status-Type") == "Stop"]
    assert stops and stops[-1]["User-Name"] == "ruser"


def test_sstpc_wrong_password_through_radius(guest: Guest, daemon: Daemon) -> None:
    with pytest.raises(sstpc.SstpcError) as err:
        sstpc.connect(
            guest, SERVER_IP, 443, "ruser", "wrong", auth="mschapv2",
            ca_cert=Path(daemon.cert), timeout=20, attempts=1,
        )  # fmt: skip
    assert "691" in str(err.value) or "691" in err.value.pppd_log, (
        f"{err.value}\n{sstpc.explain(guest, daemon.log)}"
    )
    sstpc.wait_server_log(guest, daemon, "RADIUS Access-Reject")
