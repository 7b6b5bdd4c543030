"""Seed FAQ §6: HAProxy terminates TLS with its own certificate and forwards plain HTTP
to the daemon, with the PROXY protocol (v2) naming the real client.

    client 10.231.70.2 -- 10.231.70.1:443 [lb: haproxy, TLS] 10.231.71.1 -- 10.231.71.10:8080 [srv]

The daemon runs with ``tls = false`` and HAProxy's certificate hash for the crypto
binding; the client (which sees HAProxy's certificate) must bind to that hash.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sstpd import certs
from tests.integration.netns import Daemon, RootNamespace, sh
from tests.scenarios.topology import Topology, client_args

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

LB_PUBLIC, CLIENT_IP = "10.231.70.1", "10.231.70.2"
LB_INSIDE, SERVER_IP = "10.231.71.1", "10.231.71.10"

HAPROXY_CFG = """
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend sstp
    bind {lb}:443 ssl crt {pem}
    default_backend sstpd
backend sstpd
    server node1 {server}:{port} send-proxy-v2
"""


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    t = Topology("sstpdo", ["cli", "lb", "srv", "srv2"])
    try:
        t.up()
        t.link("cli", "eth0", f"{CLIENT_IP}/24", "lb", "pub0", f"{LB_PUBLIC}/24")
        t.link("lb", "lan0", f"{LB_INSIDE}/24", "srv", "eth0", f"{SERVER_IP}/24")
        yield t
    finally:
        t.down()


@pytest.fixture(scope="module")
def haproxy_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """HAProxy's own certificate (CN = its public address): PEM bundle, cert, SHA-256 hex."""
    d = tmp_path_factory.mktemp("haproxy")
    crt, key = d / "lb.crt", d / "lb.key"
    certs.generate_self_signed(str(crt), str(key), common_name=LB_PUBLIC, sans=[LB_PUBLIC])
    pem = d / "lb.pem"
    pem.write_bytes(crt.read_bytes() + key.read_bytes())
    sha256 = certs.fingerprints(certs.load_certificate_der(str(crt)))["sha256"]
    return pem, crt, sha256.replace(":", "").lower()


@contextlib.contextmanager
def _haproxy(topo: Topology, work: Path, pem: Path, port: int) -> Iterator[None]:
    """HAProxy in front of the server for one test; stopped however the test ends."""
    cfg = work / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(lb=LB_PUBLIC, pem=pem, server=SERVER_IP, port=port))
    sh("haproxy", "-c", "-f", str(cfg))
    lb = subprocess.Popen(
        ["ip", "netns", "exec", topo.ns("lb"), "haproxy", "-db", "-f", str(cfg)],
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        lb.terminate()
        lb.wait(10)


@contextlib.contextmanager
def _daemon(topo: Topology, work: Path, cert_hash: str) -> Iterator[Daemon]:
    """A daemon (and its TUN) for one test; stopped however the test ends, so the next
    test's daemon in the same namespace gets the interface name."""
    d = Daemon(
        RootNamespace(topo.ns("srv")),
        work,
        listen=SERVER_IP,
        port=8080,
        extra_config=f'tls = false\nproxy_protocol = true\ncert_hash_sha256 = "{cert_hash}"',
    )
    try:
        d.prepare()
        d.start()
        yield d
    finally:
        d.stop()


def test_offloaded_session_binds_to_haproxy_certificate(
    topo: Topology, haproxy_cert: tuple[Path, Path, str], tmp_path: Path
) -> None:
    pem, crt, sha256 = haproxy_cert
    with _daemon(topo, tmp_path, sha256) as d, _haproxy(topo, tmp_path, pem, 8080):
        res = topo.client_tool("cli", "ping", *client_args(d, LB_PUBLIC, 443, str(crt)))
        assert res["replies"] == 3 and res["hash"] == "SHA256"
        log = d.wait_log("crypto binding verified (SHA256)")
        assert "plain HTTP" in log
        # the PROXY header made the real client visible, not the balancer
        assert f"] {CLIENT_IP}:" in log and f"] {LB_INSIDE}:" not in log


def test_wrong_configured_hash_fails_binding_with_both_hashes_logged(
    topo: Topology, haproxy_cert: tuple[Path, Path, str], tmp_path: Path
) -> None:
    pem, crt, sha256 = haproxy_cert
    wrong = "ab" * 32
    with _daemon(topo, tmp_path, wrong) as d, _haproxy(topo, tmp_path, pem, 8080):
        res = topo.client_tool(
            "cli", "bad-binding", *client_args(d, LB_PUBLIC, 443, str(crt)), "--what", "none"
        )
        assert res["replies"] == 0
        log = d.wait_log("crypto binding failed")
        assert f"expected {wrong}" in log and f"received {sha256}" in log
