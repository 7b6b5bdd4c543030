"""The roles' controller-side code without Ansible: the filter plugins (loaded as Ansible
loads them, with its exception type stubbed) and the templates that consume the published
facts, rendered with jinja2 as the template module would. The roles themselves run
against real systemd and nftables in tests/ansible."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2
import pytest

from sstpd.config import parse_config
from sstpd.proto.mschap import nt_password_hash

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"


class FilterError(Exception):
    """Stands in for ansible.errors.AnsibleFilterError."""


def plugin(path: Path) -> ModuleType:
    errors = types.ModuleType("ansible.errors")
    errors.AnsibleFilterError = FilterError  # type: ignore[attr-defined]
    sys.modules.setdefault("ansible", types.ModuleType("ansible"))
    sys.modules["ansible.errors"] = errors
    spec = importlib.util.spec_from_file_location(f"plugin_{path.stem}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sstpd_filters() -> ModuleType:
    return plugin(ROLES / "sstpd" / "filter_plugins" / "sstpd_filters.py")


# --------------------------------------------------------------------------- sstpd_nt_hash


def test_nt_hash_is_the_packages_own(sstpd_filters: ModuleType) -> None:
    # RFC 2759 §9.2: "clientPass" -> 44EBBA8D5312B8D611474411F56989AE
    assert sstpd_filters.sstpd_nt_hash("clientPass") == "44ebba8d5312b8d611474411f56989ae"
    for password in ("alice-Secret-1", "ünïcødé €", "x" * 200):
        assert sstpd_filters.sstpd_nt_hash(password) == nt_password_hash(password).hex()
    for bad in ("", None, 12):
        with pytest.raises(FilterError, match="non-empty string"):
            sstpd_filters.sstpd_nt_hash(bad)


def test_plugin_imports_the_checkout_package_only(tmp_path: Path) -> None:
    """In a fresh controller process (no sstpd installed, no PYTHONPATH, another working
    directory) the plugin finds the package in the checkout it lives in, and exposes
    nothing else of the checkout (no ``tests``, ``bench``... on sys.path)."""
    code = f"""
import importlib.util, sys, types
errors = types.ModuleType("ansible.errors")
errors.AnsibleFilterError = ValueError
sys.modules["ansible"] = types.ModuleType("ansible")
sys.modules["ansible.errors"] = errors
# a controller without sstpd installed: drop the finder an editable install (tests/run's
# .venv) puts on sys.meta_path, so the check below means what it says
sys.meta_path[:] = [
    f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
]
sys.path[:] = [p for p in sys.path if "__editable__" not in p]
try:
    import sstpd
    raise SystemExit("sstpd importable before the plugin ran")
except ImportError:
    pass
spec = importlib.util.spec_from_file_location(
    "f", {str(ROLES / "sstpd" / "filter_plugins" / "sstpd_filters.py")!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
print(mod.sstpd_nt_hash("clientPass"))
print(sys.modules["sstpd"].__file__)
print(sys.modules["sstpd.proto.mschap"].__file__)
print(importlib.util.find_spec("tests") is None and importlib.util.find_spec("bench") is None)
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    digest, package, module, isolated = r.stdout.split()
    assert digest == "44ebba8d5312b8d611474411f56989ae"
    assert package == str(ROOT / "sstpd" / "__init__.py")
    assert module == str(ROOT / "sstpd" / "proto" / "mschap.py")
    assert isolated == "True"


# --------------------------------------------------------------------------- sstpd_overlaps


def test_one_overlap_filter_for_both_families(sstpd_filters: ModuleType) -> None:
    overlaps = sstpd_filters.sstpd_overlaps
    networks = [
        "192.0.2.11/255.255.255.0 (up0)",
        "10.77.0.200/25 (eth1)",
        "2001:db8:0:1::5/64 (up0)",
        "fd00:77:0:ff::1/64 (eth2)",
        "not an address (x)",
    ]
    assert overlaps("10.77.0.0/24", networks) == ["10.77.0.200/25 (eth1)"]
    assert overlaps("192.0.2.0/25", networks) == ["192.0.2.11/255.255.255.0 (up0)"]
    assert overlaps("10.99.0.0/24", networks) == []
    assert overlaps("fd00:77::/56", networks) == ["fd00:77:0:ff::1/64 (eth2)"]
    assert overlaps("2001:db8::/48", networks) == ["2001:db8:0:1::5/64 (up0)"]
    assert overlaps("2001:db8:1::/48", networks) == []
    # an IPv4 pool never overlaps an IPv6 network and the other way round
    assert overlaps("0.0.0.0/0", ["::/0"]) == [] and overlaps("::/0", ["0.0.0.0/0"]) == []
    assert overlaps("10.0.0.0/8", None) == []
    with pytest.raises(FilterError, match="not a network"):
        overlaps("10.77.0.0/33", networks)


def test_ip_problem(sstpd_filters: ModuleType) -> None:
    problem = sstpd_filters.sstpd_ip_problem
    assert problem("10.77.0.1") == "" and problem("10.77.0.0/24", 4, "network") == ""
    assert problem("fd00::/56", 6, "network") == "" and problem("fd00::53", 6) == ""
    assert "is not an IPv4 network" in problem("10.77.0.1/24", 4, "network")  # host bits
    assert "is not an IPv6 network" in problem("10.77.0.0/24", 6, "network")
    assert "is not an IPv4 address" in problem("fd00::1")
    assert "is not an IPv6 address" in problem("10.0.0.1", 6)


# --------------------------------------------------------------------------- templates


def render(role: str, template: str, filters: dict[str, Any], **variables: Any) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROLES / role / "templates")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,  # as Ansible's template module
    )
    env.filters.update(filters)
    return env.get_template(template).render(ansible_managed="test", **variables)


def daemon_defaults() -> dict[str, Any]:
    """The sstpd role's defaults as plain values (the templated ones given here)."""
    import yaml

    data = yaml.safe_load((ROLES / "sstpd" / "defaults" / "main.yml").read_text())
    data.update(
        sstpd__certificate="/etc/sstpd/tls/server.crt",
        sstpd__key="/etc/sstpd/tls/server.key",
        sstpd__chain="",
        sstpd__radius_nas_identifier="node1",
    )
    return data  # type: ignore[no-any-return]


def test_dual_stack_variables_become_tunnel_keys(sstpd_filters: ModuleType) -> None:
    filters = sstpd_filters.FilterModule().filters()
    plain = render("sstpd", "etc/sstpd/sstpd.toml.j2", filters, **daemon_defaults())
    for key in ("ipv6_pool", "ipv6_address", "ipv6_dns", "routes", "domain"):
        assert key not in plain  # IPv4-only deployments are written as before
    assert parse_config(plain).tunnel.ipv6_pool is None
    text = render(
        "sstpd",
        "etc/sstpd/sstpd.toml.j2",
        filters,
        **{
            **daemon_defaults(),
            "sstpd__ipv6_pool": "2001:db8:100::/56",
            "sstpd__ipv6_address": "2001:db8:1ff::1",
            "sstpd__ipv6_dns": ["2001:db8::53", "2001:db8::54"],
            "sstpd__routes": ["10.1.0.0/16", "192.168.7.0/24"],
            "sstpd__domain": "corp.example",
        },
    )
    tunnel = parse_config(text).tunnel
    assert str(tunnel.ipv6_pool) == "2001:db8:100::/56"
    assert str(tunnel.ipv6_address) == "2001:db8:1ff::1"
    assert [str(a) for a in tunnel.ipv6_dns] == ["2001:db8::53", "2001:db8::54"]
    assert [str(n) for n in tunnel.routes] == ["10.1.0.0/16", "192.168.7.0/24"]
    assert tunnel.domain == "corp.example"
    config = parse_config(text)
    assert config.server.control_socket == "/run/sstpd/control.sock"


def firewall_variables(**overrides: Any) -> dict[str, Any]:
    """The firewall role's variables with the published facts resolved."""
    published = {
        "port": 4433,
        "interface": "sstp0",
        "pool": "10.77.0.0/24",
        "ipv6_pool": "",
        "dae_port": 0,
        "dae_sources": [],
        "acme_http_port": 0,
        "acme_tls_alpn": False,
        "offline": False,
    }
    variables: dict[str, Any] = {
        "sstpd_firewall__listener_port": published["port"],
        "sstpd_firewall__public_port": 443,
        "sstpd_firewall__allowed_sources": ["0.0.0.0/0", "::/0"],
        "sstpd_firewall__status_port": 0,
        "sstpd_firewall__status_sources": [],
        "sstpd_firewall__ssh_port": 22,
        "sstpd_firewall__ssh_sources": ["0.0.0.0/0", "::/0"],
        "sstpd_firewall__uplink_interface": "up0",
        "sstpd_firewall__tunnel_interface": published["interface"],
        "sstpd_firewall__pool": published["pool"],
        "sstpd_firewall__ipv6_pool": published["ipv6_pool"],
        "sstpd_firewall__ipv6_masquerade": False,
        "sstpd_firewall__include_dir": "",
        "sstpd_firewall__masquerade": True,
        "sstpd_firewall__forward_policy": "full",
        "sstpd_firewall__forward_networks": [],
        "sstpd_firewall__client_to_client": False,
        "sstpd_firewall__tunnel_to_host": False,
        "sstpd_firewall__input_policy": "drop",
        "sstpd_firewall__extra_input_rules": [],
        "sstpd_firewall__new_connections_per_source": 0,
        "sstpd_firewall__new_connections_burst": 30,
        "sstpd_firewall__dae_port": published["dae_port"],
        "sstpd_firewall__dae_sources": published["dae_sources"],
        "sstpd_firewall__acme_http_port": published["acme_http_port"],
    }
    variables.update(overrides)
    return variables


@pytest.fixture(scope="module")
def firewall_filters() -> dict[str, Any]:
    mod = plugin(ROLES / "sstpd_firewall" / "filter_plugins" / "sstpd_firewall_filters.py")
    return mod.FilterModule().filters()  # type: ignore[no-any-return]


def ipv6_lines(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if "sstp_pool_v6" in line or "ip6 saddr fd" in line
    ]


def test_ipv4_only_ruleset_has_no_ipv6_forwarding(firewall_filters: dict[str, Any]) -> None:
    text = render(
        "sstpd_firewall", "etc/nftables.conf.j2", firewall_filters, **firewall_variables()
    )
    assert "sstpd-ipv6" not in text and ipv6_lines(text) == []
    assert 'include "' not in text


def test_ipv6_pool_is_forwarded_routed_unless_masquerade_is_chosen(
    firewall_filters: dict[str, Any],
) -> None:
    routed = render(
        "sstpd_firewall",
        "etc/nftables.conf.j2",
        firewall_filters,
        **firewall_variables(
            sstpd_firewall__ipv6_pool="fd00:77::/56", sstpd_firewall__tunnel_to_host=True
        ),
    )
    assert ipv6_lines(routed) == [
        "set sstp_pool_v6 { type ipv6_addr; flags interval; elements = { fd00:77::/56 }; }",
        'iifname { "sstp0", "sstp0w*" } ip6 saddr @sstp_pool_v6 accept',
        'iifname { "sstp0", "sstp0w*" } oifname "up0" ip6 saddr @sstp_pool_v6 accept'
        ' comment "sstpd-ipv6"',
    ]
    assert "masquerade" not in "".join(ipv6_lines(routed))
    nat66 = render(
        "sstpd_firewall",
        "etc/nftables.conf.j2",
        firewall_filters,
        **firewall_variables(
            sstpd_firewall__ipv6_pool="fd00:77::/56", sstpd_firewall__ipv6_masquerade=True
        ),
    )
    assert 'oifname "up0" ip6 saddr fd00:77::/56 masquerade comment "sstpd-ipv6"' in ipv6_lines(
        nat66
    )


def test_include_dir_gives_an_empty_ipv6_set_to_fill(firewall_filters: dict[str, Any]) -> None:
    """The appliance: no pool at build time; its user-data's pool is added by a file."""
    text = render(
        "sstpd_firewall",
        "etc/nftables.conf.j2",
        firewall_filters,
        **firewall_variables(sstpd_firewall__include_dir="/etc/sstpd/nftables.d"),
    )
    assert "set sstp_pool_v6 { type ipv6_addr; flags interval; }" in text
    assert 'ip6 saddr @sstp_pool_v6 accept comment "sstpd-ipv6"' in text
    assert text.rstrip().endswith('include "/etc/sstpd/nftables.d/*.nft"')


def test_forward_networks_per_family(firewall_filters: dict[str, Any]) -> None:
    text = render(
        "sstpd_firewall",
        "etc/nftables.conf.j2",
        firewall_filters,
        **firewall_variables(
            sstpd_firewall__ipv6_pool="fd00:77::/56",
            sstpd_firewall__forward_policy="networks",
            sstpd_firewall__forward_networks=["2001:db8:5::/48"],
        ),
    )
    forward = text.split("chain forward")[1].split("chain output")[0]
    # no IPv4 network listed: no IPv4 rule (an empty set would not even parse)
    assert "ip saddr" not in forward
    assert "ip6 saddr @sstp_pool_v6 ip6 daddr { 2001:db8:5::/48 } accept" in forward


# --------------------------------------------------------------------------- sstpd_haproxy


@pytest.fixture(scope="module")
def haproxy() -> ModuleType:
    return plugin(ROLES / "sstpd_haproxy" / "filter_plugins" / "haproxy.py")


def test_haproxy_reads_the_published_ports(haproxy: ModuleType) -> None:
    hv = {
        "inventory_hostname": "vpn1",
        "ansible_host": "203.0.113.10",
        "sstpd__published": {"port": 4433},
        "sstpd_status__published": {"enabled": True, "port": 9090},
    }
    assert haproxy.sstpd_haproxy_server(hv) == {
        "name": "vpn1",
        "address": "203.0.113.10",
        "port": 4433,
        "check_port": 9090,
    }


def test_haproxy_refuses_to_guess(haproxy: ModuleType) -> None:
    with pytest.raises(FilterError, match="vpn1: sstpd__published"):
        haproxy.sstpd_haproxy_server({"inventory_hostname": "vpn1", "sstpd__port": 443})
    hv = {
        "inventory_hostname": "vpn1",
        "sstpd__published": {"port": 443},
        "sstpd_status__published": {"enabled": False, "port": 8080},
    }
    with pytest.raises(FilterError, match="health-checks"):
        haproxy.sstpd_haproxy_server(hv)


# --------------------------------------------------------------------------- argument specs


@pytest.mark.parametrize("role", sorted(p.name for p in ROLES.iterdir() if p.is_dir()))
def test_every_default_is_documented_with_the_same_value(role: str) -> None:
    """Each variable of defaults/main.yml is an option of meta/argument_specs.yml, and a
    literal default (not a template) is the documented one."""
    import yaml

    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(options), set(defaults) - set(options)
    for name, value in defaults.items():
        assert options[name].get("description"), name
        if isinstance(value, str) and "{{" in value:
            continue  # derived (from the published facts, say): described, not literal
        assert options[name].get("default") == value, name
