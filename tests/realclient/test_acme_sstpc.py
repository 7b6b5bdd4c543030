"""Debian's sstpc (in the qemu guest) against a daemon whose certificate came from an ACME
CA (Debian's pebble) through TLS-ALPN-01 on the SSTP listener: a client we did not write
verifies the chain against the CA's root and the name, and gets a tunnel.

pebble and its DNS run in the host's namespace on 127.0.0.1 and resolve the name to the
harness's server address, where the daemon listens; the guest resolves the name through
its /etc/hosts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.integration.netns import ROOT, USERS, Daemon, RootNamespace
from tests.integration.pebble import NAME, Pebble, acme_section

from . import sstpc
from .guest import SERVER_IP, Guest

pytestmark = [
    pytest.mark.realclient,
    pytest.mark.skipif(shutil.which("pebble") is None, reason="needs Debian's pebble"),
]


CTL = [sys.executable, "-m", "sstpd.ctl"]


@pytest.fixture(scope="module")
def pebble(guest: Guest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    p = Pebble(
        RootNamespace(),
        tmp_path_factory.mktemp("rc-pebble"),
        address="127.0.0.1",
        target=SERVER_IP,
    )
    try:
        p.start()
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def daemon(pebble: Pebble, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(
        RootNamespace(),
        tmp_path_factory.mktemp("rc-acme-daemon"),
        listen=SERVER_IP,
        tunnel_ip="10.79.0.1",
        pool="10.79.0.0/24",
        dns=[],
        interface="sstprc1",
        extra_config=acme_section(pebble),
    )
    d.prepare()
    (d.workdir / "tls" / "server.crt").unlink()
    (d.workdir / "tls" / "server.key").unlink()
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def named(guest: Guest) -> str:
    """The guest resolves the test name to the daemon (sstpc checks the name)."""
    guest.run(f"grep -q '{NAME}' /etc/hosts || echo '{SERVER_IP} {NAME}' >> /etc/hosts", check=True)
    return NAME


def test_sstpc_verifies_the_acme_certificate_and_connects(
    guest: Guest, pebble: Pebble, daemon: Daemon, named: str
) -> None:
    deadline = time.monotonic() + 90
    while True:
        r = subprocess.run(
            [*CTL, "--socket", str(daemon.workdir / "control.sock"), "--json", "cert"],
            text=True,
            capture_output=True,
            cwd=str(ROOT),
            check=True,
        )
        cert = json.loads(r.stdout)["certificate"]
        if cert and not cert["self_signed"]:
            break
        assert time.monotonic() < deadline, daemon.log_text()[-4000:]
        time.sleep(0.5)
    root = pebble.root().decode()
    info = sstpc.connect(
        guest, NAME, 443, "alice", USERS["alice"], ca_cert=root, timeout=30, address=SERVER_IP
    )
    try:
        assert info["peer"] == "10.79.0.1", sstpc.explain(guest, daemon.log)
        sstpc.wait_server_log(guest, daemon, "crypto binding verified")
    finally:
        sstpc.disconnect(guest)


def test_sstpc_refuses_without_the_ca_root(guest: Guest, daemon: Daemon, named: str) -> None:
    """The same client trusting some other root does not connect: the check is real."""
    wrong = (ROOT / "tests" / "unit" / "data" / "profiles" / "pki" / "ca.crt").read_text()
    with pytest.raises(sstpc.SstpcError) as info:
        sstpc.connect(
            guest,
            NAME,
            443,
            "alice",
            USERS["alice"],
            ca_cert=wrong,
            timeout=15,
            attempts=1,
            address=SERVER_IP,
        )
    log = info.value.sstpc_log.lower()
    assert "lookup host" not in log and "certif" in log, (
        f"{info.value}\n{sstpc.explain(guest, daemon.log)}"
    )
