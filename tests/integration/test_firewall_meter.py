"""The firewall role's optional per-source meter: the template rendered with jinja2, checked
with ``nft -c``, loaded into a throwaway network namespace and read back with
``nft -j list ruleset``; then a burst of connections shows the meter dropping them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "sstpd_firewall"
NS = "sstpfw-meter"

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]


def render(**overrides: Any) -> str:
    sys.path.insert(0, str(ROLE / "filter_plugins"))
    try:
        import sstpd_firewall_filters as f  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")))
    env.filters.update(f.FilterModule().filters())
    variables: dict[str, Any] = {
        "ansible_managed": "test",
        "sstpd_firewall__listener_port": 443,
        "sstpd_firewall__public_port": 443,
        "sstpd_firewall__allowed_sources": ["0.0.0.0/0", "::/0"],
        "sstpd_firewall__status_port": 8080,
        "sstpd_firewall__status_sources": [],
        "sstpd_firewall__ssh_port": 22,
        "sstpd_firewall__ssh_sources": ["0.0.0.0/0", "::/0"],
        "sstpd_firewall__uplink_interface": "lo",
        "sstpd_firewall__tunnel_interface": "sstp0",
        "sstpd_firewall__pool": "10.77.0.0/24",
        "sstpd_firewall__masquerade": True,
        "sstpd_firewall__forward_policy": "full",
        "sstpd_firewall__forward_networks": [],
        "sstpd_firewall__client_to_client": False,
        "sstpd_firewall__tunnel_to_host": False,
        "sstpd_firewall__input_policy": "accept",
        "sstpd_firewall__extra_input_rules": [],
        "sstpd_firewall__new_connections_per_source": 0,
        "sstpd_firewall__new_connections_burst": 30,
        "sstpd_firewall__dae_port": 0,
        "sstpd_firewall__dae_sources": [],
        "sstpd_firewall__acme_http_port": 0,
    }
    variables.update(overrides)
    return env.get_template("etc/nftables.conf.j2").render(**variables)


def nft(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", NS, "nft", *args],
        input=stdin,
        text=True,
        capture_output=True,
        check=True,
    )


CLI = NS + "-c"


@pytest.fixture()
def ns() -> Any:
    """The firewall's namespace (10.231.99.1) and a client namespace (10.231.99.2)."""
    for n in (NS, CLI):
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
        subprocess.run(["ip", "netns", "add", n], check=True)
        subprocess.run(["ip", "-n", n, "link", "set", "lo", "up"], check=True)
    for cmd in (
        f"link add fwm-s netns {NS} type veth peer name fwm-c netns {CLI}",
        f"-n {NS} addr add 10.231.99.1/24 dev fwm-s",
        f"-n {CLI} addr add 10.231.99.2/24 dev fwm-c",
        f"-n {NS} link set fwm-s up",
        f"-n {CLI} link set fwm-c up",
    ):
        subprocess.run(["ip", *cmd.split()], check=True)
    yield NS
    for n in (NS, CLI):
        subprocess.run(["ip", "netns", "del", n], capture_output=True)


def test_meter_absent_by_default(ns: str) -> None:
    text = render()
    assert "sstp_new_v4" not in text
    nft("-c", "-f", "-", stdin=text)


def test_meter_renders_checks_loads_and_drops(ns: str) -> None:
    text = render(
        sstpd_firewall__new_connections_per_source=6,
        sstpd_firewall__new_connections_burst=3,
    )
    nft("-c", "-f", "-", stdin=text)
    nft("-f", "-", stdin=text)
    data = json.loads(nft("-j", "list", "ruleset").stdout)["nftables"]
    sets = {i["set"]["name"]: i["set"] for i in data if "set" in i}
    assert {"sstp_new_v4", "sstp_new_v6"} <= set(sets)
    assert "timeout" in sets["sstp_new_v4"]["flags"] and sets["sstp_new_v4"]["timeout"] == 60
    rules = [json.dumps(i["rule"]) for i in data if "rule" in i]
    meter = [r for r in rules if "sstpd-meter" in r]
    assert len(meter) == 2
    assert all('"rate": 6' in r and '"per": "minute"' in r and '"burst": 3' in r for r in meter)
    assert all('"drop"' in r for r in meter)
    # 10 connection attempts at once from one address: rate 6/min, burst 3: most dropped
    listener = subprocess.Popen(
        ["ip", "netns", "exec", NS, sys.executable, "-c",
         "import socket, time\ns = socket.socket(); s.bind(('10.231.99.1', 443)); s.listen(64)\n"
         "print('ready', flush=True)\ntime.sleep(20)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        r = subprocess.run(
            ["ip", "netns", "exec", CLI, sys.executable, "-c", """
import socket
ok = 0
for _ in range(10):
    c = socket.socket(); c.settimeout(0.3)
    try:
        c.connect(("10.231.99.1", 443)); ok += 1
    except OSError:
        pass
    c.close()
print(ok)
"""],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        listener.kill()
        listener.wait()
    assert int(r.stdout) <= 5  # the burst, not the 10 tried
    counters = json.loads(nft("-j", "list", "ruleset").stdout)["nftables"]
    dropped = [
        e["counter"]["packets"]
        for i in counters
        if "rule" in i and "sstpd-meter" in json.dumps(i["rule"])
        for e in i["rule"]["expr"]
        if "counter" in e
    ]
    assert sum(dropped) >= 5, dropped
