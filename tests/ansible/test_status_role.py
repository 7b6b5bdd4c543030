"""The sstpd_status role: the status web app under gunicorn, reachable from a management
network only.

One Debian 12 container (node1, see harness.py) gets a second interface on a management
network, as a node with a separate management NIC would::

    netns sstpa-mgmt: mgmt0 198.51.100.1/24 ---- veth ---- node1: mgmt1 198.51.100.11/24

``site.yml`` converges it with the app bound to 198.51.100.11 and
``sstpd_status__management_networks: [198.51.100.0/24]``. The client namespace
(192.0.2.100) gets a route to the management network through the node, so its packets
do arrive there (SSH on that address answers it): only the firewall keeps it away from
the app. One converge, one second run; the other checks only read.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ansible import harness, test_roles
from tests.ansible.harness import NODE_IPS, Lab, Node, sh
from tests.ansible.test_roles import Inventory, _missing, changed_tasks, recap

pytestmark = pytest.mark.ansible

MGMT_NS = f"{harness.PREFIX}-mgmt"  # removed with the others by Lab.down()
MGMT_IP = "198.51.100.1"
MGMT_NODE_IP = "198.51.100.11"
MGMT_NET = "198.51.100.0/24"
PORT = 8080

# the package snapshot the roles build the wheel from (fixture of test_roles)
source = test_roles.source


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    harness.controller_venv()
    lab = Lab()
    try:
        lab.up(["node1"])
        node_ns = lab.nodes["node1"].ns
        sh("ip", "netns", "add", MGMT_NS)
        sh("ip", "-n", MGMT_NS, "link", "set", "lo", "up")
        sh("ip", "-n", MGMT_NS, "link", "add", "mgmt0", "type", "veth", "peer", "name", "mgmt1")
        sh("ip", "-n", MGMT_NS, "link", "set", "mgmt1", "netns", node_ns)
        sh("ip", "-n", MGMT_NS, "addr", "add", f"{MGMT_IP}/24", "dev", "mgmt0")
        sh("ip", "-n", MGMT_NS, "link", "set", "mgmt0", "up")
        sh("ip", "-n", node_ns, "addr", "add", f"{MGMT_NODE_IP}/24", "dev", "mgmt1")
        sh("ip", "-n", node_ns, "link", "set", "mgmt1", "up")
        # the VPN client's side may route to the management address: the firewall decides
        sh("ip", "-n", lab.cli, "route", "add", MGMT_NET, "via", NODE_IPS["node1"])
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def inv(lab: Lab, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    return Inventory(
        tmp_path_factory.mktemp("inventory-status"),
        lab,
        source,
        ["node1"],
        sstpd_status__address=MGMT_NODE_IP,
        sstpd_status__port=PORT,
        sstpd_status__management_networks=[MGMT_NET],
    )


@pytest.fixture(scope="module")
def converged(inv: Inventory) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    r = inv.play()
    print(f"converge with the status app: {time.monotonic() - t0:.1f} s")
    return r


def http_get(ns: str, url: str, timeout: float = 5) -> tuple[int, str]:
    """GET from a namespace (no proxy from the environment): status and body."""
    code = f"""
import json, sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
try:
    with opener.open({url!r}, timeout={timeout}) as r:
        status, body = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read().decode()
sys.stdout.write(json.dumps([status, body]))
"""
    r = sh("ip", "netns", "exec", ns, sys.executable, "-c", code, timeout=30)
    status, body = json.loads(r.stdout)
    return int(status), str(body)


def tcp_open(ns: str, host: str, port: int) -> bool:
    code = f"""
import socket
try:
    socket.create_connection(({host!r}, {port}), timeout=2).close()
    print("open")
except OSError as e:
    print("closed", e)
"""
    r = sh("ip", "netns", "exec", ns, sys.executable, "-c", code, timeout=30)
    return r.stdout.startswith("open")


def unit_props(node: Node, unit: str, props: str) -> dict[str, str]:
    out = node.run("systemctl", "show", unit, "-p", props).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def sample(families: dict[str, Any], family: str) -> float:
    found = [s.value for s in families[family].samples if not s.name.endswith("_created")]
    assert len(found) == 1, (family, families[family].samples)
    return float(found[0])


def test_converge_runs_the_app_confined(
    converged: subprocess.CompletedProcess[str], lab: Lab
) -> None:
    assert recap(converged, "node1")["failed"] == 0
    node = lab.nodes["node1"]
    props = unit_props(
        node,
        "sstpd-status.service",
        "ActiveState,SubState,Type,MainPID,NRestarts,User,SupplementaryGroups,Environment,"
        "NoNewPrivileges,ProtectSystem,ProtectHome,PrivateTmp,CapabilityBoundingSet,After",
    )
    assert props["ActiveState"] == "active" and props["SubState"] == "running", props
    assert props["Type"] == "notify" and props["NRestarts"] == "0", props
    assert props["User"] == "sstpd-status" and props["SupplementaryGroups"] == "sstpd", props
    assert "SSTPD_CONTROL_SOCKET=/run/sstpd/control.sock" in props["Environment"]
    assert props["NoNewPrivileges"] == "yes" and props["ProtectSystem"] == "strict", props
    assert props["ProtectHome"] == "yes" and props["PrivateTmp"] == "yes", props
    assert props["CapabilityBoundingSet"] == "", props
    assert "sstpd.service" in props["After"].split()
    # gunicorn's arbiter and its 2 workers, all as the unprivileged user
    pid = props["MainPID"]
    users = node.run("ps", "-o", "user:20=", "--ppid", pid, "-p", pid).stdout.split()
    assert users == ["sstpd-status"] * 3, users
    # on the management address only
    listening = node.run("ss", "-Hltn", f"sport = :{PORT}").stdout.split("\n")
    assert [line.split()[3] for line in listening if line] == [f"{MGMT_NODE_IP}:{PORT}"]
    # the daemon gives its control socket to the group, in a directory others may enter
    assert 'control_group = "sstpd"' in node.run("cat", "/etc/sstpd/sstpd.toml").stdout
    modes = node.run("stat", "-c", "%a %U %G", "/run/sstpd", "/run/sstpd/control.sock").stdout
    assert modes.splitlines() == ["755 root root", "660 root sstpd"], modes


def test_healthz_and_metrics_from_the_management_network(
    converged: subprocess.CompletedProcess[str], lab: Lab
) -> None:
    base = f"http://{MGMT_NODE_IP}:{PORT}"
    assert http_get(MGMT_NS, f"{base}/healthz") == (200, "ok\n")
    status, body = http_get(MGMT_NS, f"{base}/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert sample(families, "sstpd_up") == 1
    assert sample(families, "sstpd_sessions") == 0
    assert sample(families, "sstpd_accepting") == 1
    assert families["sstpd_handshake_duration_seconds"].type == "histogram"
    status, body = http_get(MGMT_NS, f"{base}/api/sessions")
    assert status == 200 and json.loads(body)["sessions"] == []
    # what a load balancer sees while the node drains
    sstpctl = "/opt/sstpd/venv/bin/sstpctl"
    node = lab.nodes["node1"]
    node.run(sstpctl, "drain")
    try:
        assert http_get(MGMT_NS, f"{base}/healthz") == (503, "draining\n")
    finally:
        node.run(sstpctl, "undrain")
    assert http_get(MGMT_NS, f"{base}/healthz") == (200, "ok\n")


def test_port_is_closed_to_other_sources(
    converged: subprocess.CompletedProcess[str], lab: Lab
) -> None:
    # the client reaches the management address (SSH answers there) but not the app
    assert tcp_open(lab.cli, MGMT_NODE_IP, 22), "the route to the management address works"
    assert not tcp_open(lab.cli, MGMT_NODE_IP, PORT)
    assert tcp_open(MGMT_NS, MGMT_NODE_IP, PORT)
    ruleset = lab.nodes["node1"].run("nft", "list", "ruleset").stdout
    rules = [line.strip() for line in ruleset.splitlines() if '"sstpd-status"' in line]
    assert len(rules) == 2 and all(f"tcp dport {PORT}" in r for r in rules), rules
    assert f"elements = {{ {MGMT_NET} }}" in ruleset


def test_status_on_the_vpn_port_fails_before_any_change(
    converged: subprocess.CompletedProcess[str], inv: Inventory
) -> None:
    r = inv.play("-e", json.dumps({"sstpd_status__port": 4433}), check=False)
    assert r.returncode != 0
    assert "sstpd_status__port: 4433 is out of range (1-65535) or taken" in " ".join(
        r.stdout.split()
    ), r.stdout[-4000:]
    assert "PLAY [Deploy sstpd]" not in r.stdout, "the deployment play did not start"


def test_second_run_changes_nothing(
    converged: subprocess.CompletedProcess[str], inv: Inventory, lab: Lab
) -> None:
    node = lab.nodes["node1"]
    pid = unit_props(node, "sstpd-status.service", "MainPID")["MainPID"]
    r = inv.play()
    assert recap(r, "node1")["changed"] == 0, changed_tasks(r)
    assert unit_props(node, "sstpd-status.service", "MainPID")["MainPID"] == pid
