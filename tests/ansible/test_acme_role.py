"""The roles with ``sstpd__acme_*``: a node converged by ``site.yml`` obtains its
certificate from Debian's real pebble through TLS-ALPN-01, answered by the daemon behind
the firewall role's 443 redirection.

One Debian 12 container (node1, see harness.py). pebble and pebble-challtestsrv (its DNS,
which resolves the test name to node1) run in the uplink namespace on 192.0.2.1: the
node reaches the ACME directory there, and pebble's validation authority connects to
192.0.2.11:443 with ALPN ``acme-tls/1``, which nftables redirects to the daemon on 4433.
pebble's HTTPS certificate is put on the node before the converge (the administrator's
``sstpd__acme_ca_file``). One converge, one second run, one ``--check`` run for the
module; the other checks only read.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.ansible import harness, test_roles
from tests.ansible.harness import WAN_IP, Lab, Node
from tests.ansible.test_roles import (
    Inventory,
    _missing,
    changed_tasks,
    recap,
    rules_in,
    ruleset,
    tls_probe,
)
from tests.integration.netns import RootNamespace
from tests.integration.pebble import NAME, Pebble

pytestmark = pytest.mark.ansible

CA_ON_NODE = "/usr/local/share/ca-certificates/pebble-wfe.crt"
VENV = "/opt/sstpd/venv"

# the package snapshot the roles build the wheel from (fixture of test_roles)
source = test_roles.source


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = _missing()
    if reason is None and shutil.which("pebble") is None:
        reason = "needs Debian's pebble (tests/run installs it)"
    if reason:
        pytest.skip(reason)
    harness.controller_venv()
    lab = Lab()
    try:
        lab.up(["node1"])
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def pebble(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    p = Pebble(
        RootNamespace(),
        tmp_path_factory.mktemp("pebble"),
        address=WAN_IP,
        target=lab.nodes["node1"].ip,
        ns=lab.wan,
    )
    try:
        p.start()
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def inv(
    lab: Lab, pebble: Pebble, source: Path, tmp_path_factory: pytest.TempPathFactory
) -> Inventory:
    lab.nodes["node1"].run("sh", "-c", f"cat > {CA_ON_NODE}", input=pebble.tls_cert.read_text())
    return Inventory(
        tmp_path_factory.mktemp("inventory-acme"),
        lab,
        source,
        ["node1"],
        sstpd__acme_names=[NAME],
        sstpd__acme_directory=pebble.directory,
        sstpd__acme_email="admin@example.test",
        sstpd__acme_ca_file=CA_ON_NODE,
        # the first order may run before the ruleset redirects 443: retry soon
        sstpd__acme_retry_interval=2.0,
    )


@pytest.fixture(scope="module")
def converged(inv: Inventory) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    r = inv.play()
    print(f"first converge: {time.monotonic() - t0:.1f} s")
    return r


def cert_status(node: Node) -> dict[str, str]:
    """``sstpctl cert`` on the node, as its key/value lines ({} while it cannot answer)."""
    out = node.run(f"{VENV}/bin/sstpctl", "cert", check=False).stdout
    return {k: v.strip() for k, _, v in (line.partition("  ") for line in out.splitlines())}


@pytest.fixture(scope="module")
def issued(converged: subprocess.CompletedProcess[str], lab: Lab) -> dict[str, str]:
    """Wait for the daemon to install pebble's certificate; ``sstpctl cert`` then."""
    node = lab.nodes["node1"]
    deadline = time.monotonic() + 120
    status = cert_status(node)
    while "Pebble" not in status.get("issuer", "") and time.monotonic() < deadline:
        time.sleep(1)
        status = cert_status(node)
    assert "Pebble" in status.get("issuer", ""), status
    return status


def test_converge(converged: subprocess.CompletedProcess[str]) -> None:
    assert recap(converged, "node1")["changed"] > 0
    assert recap(converged, "node1")["failed"] == 0


def test_acme_extra_in_the_node_venv(converged: subprocess.CompletedProcess[str], lab: Lab) -> None:
    node = lab.nodes["node1"]
    r = node.run(f"{VENV}/bin/python", "-c", "import acme, josepy, sstpd.acmeclient")
    assert r.returncode == 0


def test_config_has_acme_section_and_passes_check(
    converged: subprocess.CompletedProcess[str], lab: Lab, pebble: Pebble
) -> None:
    node = lab.nodes["node1"]
    toml = node.run("cat", "/etc/sstpd/sstpd.toml").stdout
    assert "\n[acme]\n" in toml, toml
    assert NAME in toml and pebble.directory in toml and CA_ON_NODE in toml, toml
    assert 'certificate = "/var/lib/sstpd/tls/server.crt"' in toml, toml
    node.run(f"{VENV}/bin/sstpd", "check-config", "/etc/sstpd/sstpd.toml")


def test_node_obtains_pebble_certificate(
    issued: dict[str, str], lab: Lab, pebble: Pebble, tmp_path: Path
) -> None:
    assert issued["names"] == NAME, issued
    assert issued["issuer"].startswith("CN=Pebble Intermediate CA"), issued
    assert "(self-signed)" not in issued["issuer"]
    assert issued["certificate"] == "/var/lib/sstpd/tls/server.crt", issued
    assert issued["acme"].startswith(f"tls-alpn-01 via {pebble.directory}"), issued
    # obtained by this daemon (the in-memory "last success" is gone if the converge's
    # handler restarted it after the order): its journal says so
    journal = lab.nodes["node1"].run("journalctl", "-u", "sstpd.service", "--no-pager").stdout
    assert f"ACME: installed the certificate for {NAME}" in journal, journal[-3000:]
    # served through the 443 redirection, verified against pebble's root and the name
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(pebble.root())
    node = lab.nodes["node1"]
    served = x509.load_der_x509_certificate(tls_probe(node.ip, 443, root, name=NAME))
    on_disk = x509.load_pem_x509_certificate(
        node.run("cat", "/var/lib/sstpd/tls/server.crt").stdout.encode()
    )
    assert served == on_disk


def test_state_directory_is_private(issued: dict[str, str], lab: Lab) -> None:
    node = lab.nodes["node1"]
    out = node.run(
        "stat",
        "-c",
        "%a %n",
        "/var/lib/sstpd",
        "/var/lib/sstpd/acme",
        "/var/lib/sstpd/acme/account.key",
        "/var/lib/sstpd/acme/account.json",
        "/var/lib/sstpd/tls/server.key",
    ).stdout.split("\n")
    modes = [line.split()[0] for line in out if line]
    assert modes == ["700", "700", "600", "600", "600"], out


def test_unit_active_without_restarts(issued: dict[str, str], lab: Lab) -> None:
    props = dict(
        line.split("=", 1)
        for line in lab.nodes["node1"]
        .run("systemctl", "show", "sstpd.service", "-p", "ActiveState,NRestarts,StatusText")
        .stdout.splitlines()
    )
    assert props["ActiveState"] == "active" and props["NRestarts"] == "0", props


def test_ruleset_for_tls_alpn_01(converged: subprocess.CompletedProcess[str], lab: Lab) -> None:
    """tls-alpn-01 needs only the SSTP port (redirected from 443) open to everyone; no
    port 80."""
    rules = ruleset(lab.nodes["node1"])
    text = json.dumps(rules)
    assert "sstpd-acme" not in text, "no http-01 opening"
    assert not re.search(r'"right": 80[,}]', text), "nothing about port 80"
    sstp = [r for r in rules_in(rules, "filter", "input") if "4433" in r]
    assert len(sstp) == 2 and all('"accept"' in r for r in sstp), sstp
    redirect = [r for r in rules_in(rules, "nat", "prerouting") if '"redirect"' in r]
    assert len(redirect) == 1 and '"port": 4433' in redirect[0], redirect


def test_second_run_changes_nothing(issued: dict[str, str], inv: Inventory) -> None:
    """After the daemon wrote its own certificate: the roles leave it alone."""
    r = inv.play()
    assert recap(r, "node1")["changed"] == 0, changed_tasks(r)


def test_check_mode_reports_no_change(issued: dict[str, str], inv: Inventory, lab: Lab) -> None:
    before = lab.nodes["node1"].run("sha256sum", "/var/lib/sstpd/tls/server.crt").stdout
    r = inv.play("--check", "--diff")
    assert recap(r, "node1")["changed"] == 0, changed_tasks(r)
    after = lab.nodes["node1"].run("sha256sum", "/var/lib/sstpd/tls/server.crt").stdout
    assert after == before
