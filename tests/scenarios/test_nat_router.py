"""Seed FAQ §3-4: the server sits on a private network behind an edge router that
redirects its public TCP 443 to the server's private address and listener port 8443.

    client ns 10.231.60.2 --- 10.231.60.1 [router ns, examples/edge-router.nft] 192.168.50.1
                                                                   |
                                          server ns 192.168.50.10, sstpd on :8443, TUN

The client connects to the router's public address on 443, gets a tunnel and pings the
server's tunnel address; conntrack un-NATs the replies.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator

import pytest

from tests.integration.netns import ROOT, Daemon, RootNamespace, sh
from tests.scenarios.topology import Topology

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

TOPO = Topology("sstpdn", ["cli", "rtr", "srv"])
CLI, ROUTER, SRV = TOPO.ns("cli"), TOPO.ns("rtr"), TOPO.ns("srv")
PUBLIC_IP, CLIENT_IP = "10.231.60.1", "10.231.60.2"
PRIVATE_GW, SERVER_IP = "192.168.50.1", "192.168.50.10"


def _topology_up() -> None:
    TOPO.up()
    TOPO.link("cli", "eth0", f"{CLIENT_IP}/24", "rtr", "pub0", f"{PUBLIC_IP}/24")
    TOPO.link("rtr", "lan0", f"{PRIVATE_GW}/24", "srv", "eth0", f"{SERVER_IP}/24")
    TOPO.route("srv", "default", PRIVATE_GW)
    TOPO.forward("rtr")


def edge_ruleset(public_if: str, server: str, port: int) -> str:
    """examples/edge-router.nft with its defines set, as an administrator would."""
    text = (ROOT / "examples" / "edge-router.nft").read_text()
    values = {"PUBLIC_IF": f'"{public_if}"', "SERVER_ADDR": server, "SERVER_PORT": str(port)}
    for name, value in values.items():
        text, n = re.subn(rf"^define {name} = .*$", f"define {name} = {value}", text, flags=re.M)
        assert n == 1, name
    return text


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    work = tmp_path_factory.mktemp("edge")
    d = Daemon(RootNamespace(SRV), work, listen=SERVER_IP, port=8443, cert_names=[PUBLIC_IP])
    try:
        _topology_up()
        rules = work / "edge.nft"
        rules.write_text(edge_ruleset("pub0", SERVER_IP, 8443))
        sh("ip", "netns", "exec", ROUTER, "nft", "-c", "-f", str(rules))
        sh("ip", "netns", "exec", ROUTER, "nft", "-f", str(rules))
        d.prepare()
        d.start()
        yield d
    finally:
        d.stop()
        TOPO.down()


def _client(d: Daemon, *args: str) -> dict[str, object]:
    r = sh(
        "ip",
        "netns",
        "exec",
        CLI,
        sys.executable,
        "-m",
        "tests.integration.client_tool",
        *args,
        "--ca-file",
        str(d.cert),
        check=False,
        cwd=str(ROOT),
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_client_reaches_server_through_the_redirect(edge: Daemon) -> None:
    res = _client(edge, "ping", "--host", PUBLIC_IP, "--port", "443")
    assert res["replies"] == 3 and res["peer"] == "10.77.0.1"
    # the server saw the client's real address: DNAT keeps the source
    edge.wait_log(f"{CLIENT_IP}:")
    assert "user 'alice' (mschapv2) connected" in edge.log_text()


def test_only_redirected_connections_are_forwarded(edge: Daemon) -> None:
    # even a client that routes the private network via the router cannot reach the
    # listener directly: the router forwards only what it redirected itself
    sh("ip", "-n", CLI, "route", "replace", "192.168.50.0/24", "via", PUBLIC_IP)
    try:
        code = f"import socket; socket.create_connection(('{SERVER_IP}', 8443), 3)"
        r = sh("ip", "netns", "exec", CLI, "python3", "-c", code, check=False)
        assert r.returncode != 0 and "timed out" in r.stderr
    finally:
        sh("ip", "-n", CLI, "route", "del", "192.168.50.0/24", check=False)


def test_ruleset_as_loaded(edge: Daemon) -> None:
    out = sh("ip", "netns", "exec", ROUTER, "nft", "-j", "list", "table", "ip", "sstpd_edge").stdout
    rules = [e["rule"] for e in json.loads(out)["nftables"] if "rule" in e]
    dnat = [r for r in rules if r["chain"] == "prerouting"]
    assert len(dnat) == 1
    expr = dnat[0]["expr"]
    assert {"dnat": {"addr": SERVER_IP, "port": 8443}} in expr
    assert any(e.get("match", {}).get("right") == 443 for e in expr)
