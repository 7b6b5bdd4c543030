"""The Ansible roles against real systemd and real nftables.

``site.yml`` runs from the repository root against Debian 12 containers booted with
systemd-nspawn (see harness.py for the topology). The tests run in file order on the
same containers: converge (dual stack: an IPv6 pool, split-tunnel routes and a DNS
suffix), idempotence, check mode, what was deployed (unit, IPv6 keys and forwarding,
ruleset, TLS through the 443 redirection, an SSTP session whose traffic reaches the
uplink host masqueraded), bad variables that must change nothing, a listener port
change, and a two-node inventory (IPv4 only) that must get one certificate.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible import harness
from tests.ansible.harness import CLIENT_IP, ROOT, WAN_IP, Lab, Node, sh

pytestmark = pytest.mark.ansible

PASSWORD = "alice-Secret-1"
RADIUS_SECRET = "radius-Secret-1"
UDP_PORT = 5555
IPV6_POOL = "fd00:77::/56"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, systemd-nspawn)"
    for tool in ("systemd-nspawn", "mmdebstrap", "socat", "ssh", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (tests/run installs it)"
    if harness.controller_python() is None:
        return "no Python >= 3.11 for the Ansible controller"
    return None


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    harness.controller_venv()
    lab = Lab()
    try:
        lab.up(["node1", "node2"])
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of the package source: the wheel the roles build stays the same for the
    whole module even if the checkout is edited meanwhile."""
    snap = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, snap / name)
    shutil.copytree(ROOT / "sstpd", snap / "sstpd", ignore=shutil.ignore_patterns("__pycache__"))
    return snap


class Inventory:
    """An inventory directory; the generated PKI lands in <dir>/sstpd-pki."""

    def __init__(
        self, path: Path, lab: Lab, source: Path, hosts: list[str], **group_vars: Any
    ) -> None:
        self.path = path
        self.lab = lab
        self.hosts = hosts
        self.group_vars: dict[str, Any] = {
            "sstpd__source_dir": str(source),
            "sstpd__controller_cache": str(harness.CACHE / "controller-cache"),
            "sstpd__port": 4433,
            "sstpd__users": [{"name": "alice", "password": PASSWORD}],
            **group_vars,
        }
        path.mkdir(parents=True, exist_ok=True)
        self.write()

    def write(self) -> None:
        inv = {
            "sstpd_servers": {
                "hosts": {h: self.lab.nodes[h].host_vars() for h in self.hosts},
                "vars": self.group_vars,
            }
        }
        (self.path / "hosts.yml").write_text(json.dumps(inv, indent=2))

    @property
    def ca(self) -> Path:
        return self.path / "sstpd-pki" / "ca.crt"

    def play(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(
            os.environ,
            ANSIBLE_HOST_KEY_CHECKING="False",
            ANSIBLE_PIPELINING="True",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_RETRY_FILES_ENABLED="False",
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        )
        cmd = [
            str(harness.VENV / "bin" / "ansible-playbook"),
            "-i",
            str(self.path / "hosts.yml"),
            "site.yml",
            *args,
        ]
        r = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=600)
        if check and r.returncode != 0:
            raise AssertionError(
                f"ansible-playbook {' '.join(args)} failed:\n{r.stdout[-8000:]}\n{r.stderr}"
            )
        return r


def recap(r: subprocess.CompletedProcess[str], host: str) -> dict[str, int]:
    m = re.search(rf"^{host}\s*:\s*(.*)$", r.stdout.split("PLAY RECAP")[-1], re.M)
    assert m, r.stdout[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def changed_tasks(r: subprocess.CompletedProcess[str]) -> list[str]:
    """The task headers followed by a "changed:" line (for assertion messages)."""
    out, task = [], ""
    for line in r.stdout.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line
        elif line.startswith("changed:"):
            out.append(task)
    return out


def state(node: Node) -> str:
    """What a deployment changes on a node, as one string (files, ruleset, service)."""
    files = node.run(
        "sh",
        "-c",
        "sha256sum /etc/sstpd/sstpd.toml /etc/sstpd/users /etc/sstpd/tls/* /etc/nftables.conf "
        "/etc/systemd/system/sstpd.service /etc/sysctl.d/60-sstpd.conf 2>&1; "
        "nft list ruleset; systemctl show -p MainPID,ActiveState sstpd.service",
        check=False,
    ).stdout
    return files


def ruleset(node: Node) -> list[dict[str, Any]]:
    data = json.loads(node.run("nft", "-j", "list", "ruleset").stdout)
    return [item["rule"] for item in data["nftables"] if "rule" in item]


def rules_in(rules: list[dict[str, Any]], table: str, chain: str) -> list[str]:
    """The rules of a chain, each as its JSON expression text (for simple matching)."""
    return [json.dumps(r["expr"]) for r in rules if r["table"] == table and r["chain"] == chain]


def tls_probe(
    host: str, port: int, ca: Path | None, timeout: float = 5, name: str | None = None
) -> bytes:
    """TLS handshake from the client namespace (verifying ``name``, default ``host``);
    return the DER certificate served and check the daemon's answer to a plain GET (an
    HTTP error)."""
    code = f"""
import socket, ssl, sys
ctx = ssl.create_default_context(cafile={str(ca) if ca else None!r})
if {ca is None!r}:
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(({host!r}, {port}), timeout={timeout}) as raw:
    with ctx.wrap_socket(raw, server_hostname={name or host!r}) as s:
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        status = s.recv(200).split(b"\\r\\n")[0].decode()
        sys.stdout.write(s.getpeercert(binary_form=True).hex() + " " + status)
"""
    r = sh(
        "ip", "netns", "exec", harness.Lab.cli, sys.executable, "-c", code, check=False, timeout=30
    )
    if r.returncode != 0:
        raise ConnectionError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed")
    der, status = r.stdout.split(" ", 1)
    assert status.startswith("HTTP/1.1 4"), status
    return bytes.fromhex(der)


def port_closed(host: str, port: int) -> bool:
    code = f"""
import socket
try:
    socket.create_connection(({host!r}, {port}), timeout=2).close()
    print("open")
except OSError as e:
    print("closed", e)
"""
    r = sh("ip", "netns", "exec", harness.Lab.cli, sys.executable, "-c", code, timeout=30)
    return r.stdout.startswith("closed")


@pytest.fixture(scope="module")
def inv(lab: Lab, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    # RADIUS configured but unreachable: alice is in the users file, which decides first.
    # Dual stack: so the idempotence and check-mode tests cover the IPv6 parts too.
    return Inventory(
        tmp_path_factory.mktemp("inventory-single"),
        lab,
        source,
        ["node1"],
        sstpd__ipv6_pool=IPV6_POOL,
        sstpd__ipv6_dns=["fd00:77::53"],
        sstpd__routes=["10.1.0.0/16", "192.168.7.0/24"],
        sstpd__domain="corp.example",
        sstpd__ipv6_accept_ra_interfaces=["up0"],
        sstpd__auth_backends=["users", "radius"],
        sstpd__radius_servers=[{"address": "192.0.2.10", "secret": RADIUS_SECRET}],
        sstpd__radius_accounting_servers=[{"address": "192.0.2.10", "secret": RADIUS_SECRET}],
        sstpd__radius_dae_listen="0.0.0.0:3799",
        sstpd__radius_dae_clients=[{"address": "192.0.2.10", "secret": RADIUS_SECRET}],
    )


@pytest.fixture(scope="module")
def converged(inv: Inventory) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    r = inv.play()
    print(f"first converge: {time.monotonic() - t0:.1f} s")
    return r


def test_converge(converged: subprocess.CompletedProcess[str], inv: Inventory) -> None:
    assert recap(converged, "node1")["changed"] > 0
    fingerprint = re.search(r"SHA-256 fingerprint: ([0-9A-F:]{95})", converged.stdout)
    assert fingerprint, "the fingerprint is printed"
    assert f"{inv.ca} (on the controller)" in converged.stdout, "the CA path is printed"
    assert "alice-Secret" not in converged.stdout + converged.stderr


def test_second_run_changes_nothing(
    converged: subprocess.CompletedProcess[str], inv: Inventory
) -> None:
    r = inv.play()
    assert recap(r, "node1")["changed"] == 0, changed_tasks(r)


def test_check_mode_reports_no_change(
    converged: subprocess.CompletedProcess[str], inv: Inventory
) -> None:
    r = inv.play("--check", "--diff")
    assert recap(r, "node1")["changed"] == 0, changed_tasks(r)


def test_unit_is_active_ready_and_confined(
    converged: subprocess.CompletedProcess[str], lab: Lab
) -> None:
    node = lab.nodes["node1"]
    props = dict(
        line.split("=", 1)
        for line in node.run(
            "systemctl",
            "show",
            "sstpd.service",
            "-p",
            "ActiveState,SubState,Type,StatusText,NRestarts,CapabilityBoundingSet,"
            "ProtectSystem,ProtectHome,NoNewPrivileges,DeviceAllow,ExecReload,LimitNOFILE,"
            "MainPID,ProtectKernelTunables",
        ).stdout.splitlines()
    )
    assert props["ActiveState"] == "active" and props["SubState"] == "running", props
    assert props["Type"] == "notify"
    # set by the daemon over sd_notify once it listens: it was ready
    assert props["StatusText"].startswith("listening on"), props
    assert props["NRestarts"] == "0"
    assert set(props["CapabilityBoundingSet"].split()) == {"cap_net_admin", "cap_net_bind_service"}
    assert props["ProtectSystem"] == "strict" and props["ProtectHome"] == "yes"
    assert props["NoNewPrivileges"] == "yes" and props["ProtectKernelTunables"] == "yes"
    assert "/dev/net/tun" in props["DeviceAllow"]
    assert "-HUP" in props["ExecReload"]
    # a flood must not run the daemon out of descriptors at systemd's soft 1024
    assert props["LimitNOFILE"] == "65536"
    # the daemon raised its soft limit to the hard one (which the container's own limit
    # may cap below 65536)
    limits = node.run("cat", f"/proc/{props['MainPID']}/limits").stdout
    soft, hard = next(
        line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files")
    )
    assert soft == hard and 1024 < int(hard) <= 65536, limits
    # the TUN device exists and carries the tunnel address
    assert "10.77.0.1" in node.run("ip", "-4", "addr", "show", "dev", "sstp0").stdout
    assert node.run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    users = node.run("stat", "-c", "%a %n", "/etc/sstpd/users", "/etc/sstpd/tls/server.key").stdout
    assert users.split() == ["600", "/etc/sstpd/users", "600", "/etc/sstpd/tls/server.key"]
    assert PASSWORD not in node.run("cat", "/etc/sstpd/users", "/etc/sstpd/sstpd.toml").stdout


def test_radius_secrets_in_0600_files_only(
    converged: subprocess.CompletedProcess[str], lab: Lab
) -> None:
    node = lab.nodes["node1"]
    files = node.run("sh", "-c", "stat -c '%a %n' /etc/sstpd/radius /etc/sstpd/radius/*").stdout
    assert files.split() == [
        "700", "/etc/sstpd/radius",
        "600", "/etc/sstpd/radius/accounting_server-0.secret",
        "600", "/etc/sstpd/radius/dae_client-0.secret",
        "600", "/etc/sstpd/radius/server-0.secret",
    ], files  # fmt: skip
    assert node.run("cat", "/etc/sstpd/radius/server-0.secret").stdout == RADIUS_SECRET + "\n"
    toml = node.run("cat", "/etc/sstpd/sstpd.toml").stdout
    assert RADIUS_SECRET not in toml and 'backends = ["users", "radius"]' in toml
    assert RADIUS_SECRET not in converged.stdout + converged.stderr
    # the daemon took them: it listens for Disconnect-Requests
    assert "0.0.0.0:3799" in node.run("ss", "-unlp").stdout


def test_dae_port_open_to_the_radius_server_only(
    converged: subprocess.CompletedProcess[str], lab: Lab
) -> None:
    dae = [r for r in rules_in(ruleset(lab.nodes["node1"]), "filter", "input") if "3799" in r]
    assert len(dae) == 2 and all('"udp"' in r and "dae_sources" in r for r in dae), dae
    data = json.loads(
        lab.nodes["node1"]
        .run("nft", "-j", "list", "set", "inet", "filter", "dae_sources_v4")
        .stdout
    )
    elems = [i["set"].get("elem") for i in data["nftables"] if "set" in i]
    assert elems == [["192.0.2.10"]], elems


def test_ruleset_opens_redirects_and_masquerades(
    converged: subprocess.CompletedProcess[str], lab: Lab
) -> None:
    rules = ruleset(lab.nodes["node1"])
    sstp = [r for r in rules_in(rules, "filter", "input") if "4433" in r]
    # IPv4 and IPv6, accepted only when redirected from the public port
    assert len(sstp) == 2, sstp
    for r in sstp:
        assert '"accept"' in r and '"key": "proto-dst", "dir": "original"}}, "right": 443' in r, r
    assert any(
        '"dport"' in r and "22" in r and '"accept"' in r for r in rules_in(rules, "filter", "input")
    )
    for chain in ("prerouting", "output"):
        redirect = [r for r in rules_in(rules, "nat", chain) if '"redirect"' in r]
        assert len(redirect) == 1 and '"port": 4433' in redirect[0] and "443" in redirect[0], (
            redirect
        )
    masq = [r for r in rules_in(rules, "nat", "postrouting") if '"masquerade"' in r]
    assert len(masq) == 1, masq
    assert '"up0"' in masq[0] and '"addr": "10.77.0.0"' in masq[0] and '"len": 24' in masq[0], masq
    forward = rules_in(rules, "filter", "forward")
    assert any('"sstp0"' in r and '"up0"' in r and '"accept"' in r for r in forward), forward


def test_dual_stack_keys_forwarding_and_ruleset(
    converged: subprocess.CompletedProcess[str], lab: Lab
) -> None:
    node = lab.nodes["node1"]
    # the daemon's own view of what the role wrote (sstpd config show, on the node)
    shown = json.loads(
        node.run("/opt/sstpd/venv/bin/sstpd", "config", "show", "--json", "--config",
                 "/etc/sstpd/sstpd.toml").stdout
    )  # fmt: skip
    tunnel = shown["tunnel"]
    assert tunnel["ipv6_pool"] == IPV6_POOL and tunnel["ipv6_address"] == "fd00:77::1"
    assert tunnel["ipv6_dns"] == ["fd00:77::53"] and tunnel["domain"] == "corp.example"
    assert tunnel["routes"] == ["10.1.0.0/16", "192.168.7.0/24"]
    assert RADIUS_SECRET not in json.dumps(shown)
    for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
        assert node.run("sysctl", "-n", key).stdout.strip() == "1", key
    # the uplink keeps taking Router Advertisements despite forwarding
    assert node.run("sysctl", "-n", "net.ipv6.conf.up0.accept_ra").stdout.strip() == "2"
    # the confined daemon could set its TUN's IPv6 settings (ProtectKernelTunables stays)
    tun = {
        key: node.run("cat", f"/proc/sys/net/ipv6/conf/sstp0/{key}").stdout.strip()
        for key in ("addr_gen_mode", "accept_dad", "router_solicitations", "disable_ipv6")
    }
    assert tun == {
        "addr_gen_mode": "1",
        "accept_dad": "0",
        "router_solicitations": "0",
        "disable_ipv6": "0",
    }, tun
    assert "fe80:" not in node.run("ip", "-6", "addr", "show", "dev", "sstp0").stdout
    assert "fd00:77::1/128" in node.run("ip", "-6", "addr", "show", "dev", "sstp0").stdout
    assert "net.ipv6.conf.all.forwarding = 1" in node.run(
        "cat", "/etc/sysctl.d/60-sstpd.conf"
    ).stdout
    rules = ruleset(node)
    # the pool is the one element of the IPv6 forwarding set...
    data = json.loads(node.run("nft", "-j", "list", "set", "inet", "filter", "sstp_pool_v6").stdout)
    elems = [i["set"].get("elem") for i in data["nftables"] if "set" in i]
    assert elems == [[{"prefix": {"addr": "fd00:77::", "len": 56}}]], elems
    # ... which one forward rule accepts from the tunnel to the uplink
    forward = [r for r in rules_in(rules, "filter", "forward") if '"@sstp_pool_v6"' in r]
    assert len(forward) == 1, rules_in(rules, "filter", "forward")
    rule = forward[0]
    assert '"protocol": "ip6", "field": "saddr"' in rule and '"accept"' in rule
    assert '"sstp0"' in rule and '"up0"' in rule
    # routed, not masqueraded (NAT66 is an explicit option)
    assert not [r for r in rules_in(rules, "nat", "postrouting") if '"ip6"' in r]
    # the IPv4 pool is still masqueraded exactly once
    masq = [r for r in rules_in(rules, "nat", "postrouting") if '"masquerade"' in r]
    assert len(masq) == 1 and '"addr": "10.77.0.0"' in masq[0], masq


def test_tls_reaches_the_daemon_through_the_redirection(
    converged: subprocess.CompletedProcess[str], lab: Lab, inv: Inventory
) -> None:
    node = lab.nodes["node1"]
    der = tls_probe(node.ip, 443, inv.ca)  # verified against the generated CA and SAN
    deployed = node.run("cat", "/etc/sstpd/tls/server.crt").stdout
    assert ssl.DER_cert_to_PEM_cert(der).strip() == deployed.strip()
    assert port_closed(node.ip, 4433), "the listener port is not reachable directly"


def test_sstp_session_reaches_the_uplink_masqueraded(
    converged: subprocess.CompletedProcess[str], lab: Lab, inv: Inventory
) -> None:
    node = lab.nodes["node1"]
    echo = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.wan,
            sys.executable,
            "-m",
            "tests.ansible.uplink_client",
            "--echo",
            str(UDP_PORT),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        r = sh(
            "ip",
            "netns",
            "exec",
            lab.cli,
            sys.executable,
            "-m",
            "tests.ansible.uplink_client",
            "--host",
            node.ip,
            "--port",
            "443",
            "--ca-file",
            str(inv.ca),
            "--user",
            "alice",
            "--password",
            PASSWORD,
            "--target",
            WAN_IP,
            "--udp-port",
            str(UDP_PORT),
            cwd=ROOT,
            timeout=60,
        )
    finally:
        echo.kill()
        echo.wait()
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["local"].startswith("10.77.0."), result
    replies = result["replies"]
    assert len(replies) == 3, result
    # the uplink host saw the node's own address, not the client's pool address
    assert all(x["seen"].split(":")[0] == node.ip for x in replies), replies
    assert CLIENT_IP not in json.dumps(replies)


def test_certificate_change_reloads_without_restart(
    converged: subprocess.CompletedProcess[str], lab: Lab, inv: Inventory
) -> None:
    node = lab.nodes["node1"]
    pid = node.run("systemctl", "show", "-p", "MainPID", "--value", "sstpd.service").stdout
    old = tls_probe(node.ip, 443, inv.ca)
    # a new name re-issues the certificate (same CA, same key)
    r = inv.play("-e", json.dumps({"sstpd_pki__sans": ["renewed.example.test"]}))
    assert any("sstpd_pki : Install the server certificate" in t for t in changed_tasks(r))
    assert "RUNNING HANDLER [sstpd_pki : Reload sstpd after a certificate change]" in r.stdout
    assert "RUNNING HANDLER [sstpd : Restart sstpd]" not in r.stdout
    new = tls_probe(node.ip, 443, inv.ca)
    assert new != old, "the reloaded daemon serves the new certificate"
    assert b"renewed.example.test" in new
    after = node.run("systemctl", "show", "-p", "MainPID", "--value", "sstpd.service").stdout
    assert after == pid, "reloaded (SIGHUP), not restarted"
    inv.play()  # back to the names of the inventory


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"sstpd__port": 70000}, "sstpd__port: 70000 is out of range"),
        ({"sstpd__pool": "192.0.2.0/25"}, "sstpd__pool: 192.0.2.0/25 overlaps"),
        (
            {
                "sstpd_pki__mode": "import",
                "sstpd_pki__certificate": "/nonexistent/server.crt",
                "sstpd_pki__key": "/nonexistent/server.key",
            },
            "sstpd_pki__certificate: /nonexistent/server.crt is not a file on the controller",
        ),
        ({"sstpd_firewall__forward_policy": "sometimes"}, "sstpd_firewall__forward_policy"),
        ({"sstpd__ipv6_pool": "fd00:77::/72"}, "sstpd__ipv6_pool must be a prefix of /64"),
        (
            {"sstpd__extra_config": {"tunnel": {"routes": ["10.2.0.0/16"]}}},
            "sstpd__extra_config sets tunnel.routes",
        ),
    ],
    ids=[
        "port-out-of-range",
        "pool-overlaps-uplink",
        "missing-certificate",
        "bad-choice",
        "ipv6-prefix-too-long",
        "key-set-twice",
    ],
)
def test_bad_variables_fail_before_any_change(
    converged: subprocess.CompletedProcess[str],
    lab: Lab,
    inv: Inventory,
    extra: dict[str, Any],
    message: str,
) -> None:
    node = lab.nodes["node1"]
    before = state(node)
    r = inv.play("-e", json.dumps(extra), check=False)
    assert r.returncode != 0
    assert message in " ".join(r.stdout.split()), r.stdout[-4000:]
    assert "PLAY [Deploy sstpd]" not in r.stdout, "the deployment play did not start"
    assert recap(r, "node1")["changed"] == 0
    assert state(node) == before


def test_listener_port_change_moves_daemon_opening_and_redirection(
    converged: subprocess.CompletedProcess[str], lab: Lab, inv: Inventory
) -> None:
    node = lab.nodes["node1"]
    inv.group_vars["sstpd__port"] = 8443
    inv.write()
    try:
        r = inv.play()
        assert recap(r, "node1")["changed"] > 0
        listening = node.run("ss", "-Hltn").stdout
        assert ":8443 " in listening and ":4433 " not in listening, listening
        rules = ruleset(node)
        text = json.dumps(rules)
        assert "4433" not in text, "nothing refers to the old port"
        for chain in ("prerouting", "output"):
            assert any('"port": 8443' in x for x in rules_in(rules, "nat", chain))
        assert any("8443" in x and '"accept"' in x for x in rules_in(rules, "filter", "input"))
        tls_probe(node.ip, 443, inv.ca)
        assert port_closed(node.ip, 4433) and port_closed(node.ip, 8443)
        assert recap(inv.play(), "node1")["changed"] == 0
    finally:
        inv.group_vars["sstpd__port"] = 4433
        inv.write()


def test_two_nodes_get_the_same_certificate(
    lab: Lab, source: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    inv = Inventory(
        tmp_path_factory.mktemp("inventory-two"),
        lab,
        source,
        ["node1", "node2"],
        sstpd_pki__sans=["vpn.example.test"],
    )
    r = inv.play()
    assert recap(r, "node1")["failed"] == 0 and recap(r, "node2")["failed"] == 0
    digests = {}
    for name in ("node1", "node2"):
        node = lab.nodes[name]
        assert node.run("systemctl", "is-active", "sstpd.service").stdout.strip() == "active"
        digests[name] = node.run(
            "sha256sum", "/etc/sstpd/tls/server.crt", "/etc/sstpd/tls/server.key"
        ).stdout
        served = tls_probe(node.ip, 443, inv.ca)  # valid for the node's own address
        digests[name + "-served"] = hashlib.sha256(served).hexdigest()
    assert digests["node1"] == digests["node2"]
    assert digests["node1-served"] == digests["node2-served"]
    fingerprints = set(re.findall(r"SHA-256 fingerprint: ([0-9A-F:]{95})", r.stdout))
    assert len(fingerprints) == 1
    assert fingerprints.pop().replace(":", "").lower() == digests["node1-served"]
    assert recap(inv.play(), "node2")["changed"] == 0
