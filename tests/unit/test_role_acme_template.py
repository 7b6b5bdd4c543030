"""The sstpd role's configuration template with and without sstpd__acme_* (rendered with
jinja2 and the role's own filter, as Ansible would; the roles themselves run in
tests/ansible). The result must be a configuration sstpd accepts."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from sstpd.config import parse_config

ROLE = Path(__file__).resolve().parents[2] / "roles" / "sstpd"


def filters() -> dict[str, Any]:
    # the plugin imports ansible.errors for its exception type only
    errors = types.ModuleType("ansible.errors")
    errors.AnsibleFilterError = ValueError  # type: ignore[attr-defined]
    sys.modules.setdefault("ansible", types.ModuleType("ansible"))
    sys.modules.setdefault("ansible.errors", errors)
    spec = importlib.util.spec_from_file_location(
        "sstpd_filters", ROLE / "filter_plugins" / "sstpd_filters.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.FilterModule().filters()  # type: ignore[no-any-return]


BASE: dict[str, Any] = {
    "ansible_managed": "test",
    "sstpd__extra_config": {},
    "sstpd__listen": ["0.0.0.0"],
    "sstpd__port": 443,
    "sstpd__certificate": "/var/lib/sstpd/tls/server.crt",
    "sstpd__key": "/var/lib/sstpd/tls/server.key",
    "sstpd__chain": "",
    "sstpd__hash_protocols": ["sha256", "sha1"],
    "sstpd__tls_min_version": "1.2",
    "sstpd__max_sessions": 1000,
    "sstpd__workers": 0,
    "sstpd__control_group": "sstpd",
    "sstpd__control_socket": "/run/sstpd/control.sock",
    "sstpd__interface": "sstp0",
    "sstpd__tunnel_address": "10.77.0.1",
    "sstpd__pool": "10.77.0.0/24",
    "sstpd__dns": [],
    "sstpd__nbns": [],
    "sstpd__mtu": 1400,
    "sstpd__ipv6_pool": "",
    "sstpd__ipv6_address": "",
    "sstpd__ipv6_dns": [],
    "sstpd__routes": [],
    "sstpd__domain": "",
    "sstpd__auth_methods": ["mschapv2", "pap"],
    "sstpd__users_file": "/etc/sstpd/users",
    "sstpd__auth_retries": 0,
    "sstpd__log_level": "info",
    # the role's defaults
    "sstpd__acme_names": [],
    "sstpd__acme_directory": "https://acme-v02.api.letsencrypt.org/directory",
    "sstpd__acme_email": "",
    "sstpd__acme_key_type": "ec",
    "sstpd__acme_ca_file": "",
    "sstpd__acme_challenge": "tls-alpn-01",
    "sstpd__acme_http_port": 80,
    "sstpd__acme_retry_interval": 60.0,
    "sstpd__auth_backends": ["users"],
    "sstpd__radius_servers": [],
    "sstpd__radius_accounting_servers": [],
    "sstpd__radius_nas_identifier": "node1",
    "sstpd__radius_nas_ip_address": "",
    "sstpd__radius_timeout": 3.0,
    "sstpd__radius_retries": 2,
    "sstpd__radius_dead_time": 30.0,
    "sstpd__radius_require_message_authenticator": "yes",
    "sstpd__radius_interim_interval": 0,
    "sstpd__radius_dae_listen": "",
    "sstpd__radius_dae_clients": [],
    "sstpd__radius_secret_dir": "/etc/sstpd/radius",
}


def render(**overrides: Any) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROLE / "templates")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,  # as Ansible's template module
    )
    env.filters.update(filters())
    return env.get_template("etc/sstpd/sstpd.toml.j2").render(**{**BASE, **overrides})


def test_without_acme_no_section() -> None:
    text = render()
    assert "[acme]" not in text
    assert not parse_config(text).acme.enabled


def test_acme_variables_become_the_section() -> None:
    text = render(
        sstpd__acme_names=["vpn.example.com"],
        sstpd__acme_email="ops@example.com",
        sstpd__acme_challenge="http-01",
        sstpd__acme_http_port=8080,
        sstpd__acme_retry_interval=30,
        sstpd__extra_config={"acme": {"key_type": "rsa"}},
    )
    acme = parse_config(text).acme
    assert acme.names == ("vpn.example.com",)
    assert acme.email == "ops@example.com"
    assert acme.challenge == "http-01" and acme.http_port == 8080
    assert acme.retry_interval == 30.0
    assert acme.key_type == "rsa"  # extra keys of the section still apply
    assert text.count("[acme]") == 1


def test_bad_acme_values_are_caught_by_check_config() -> None:
    from sstpd.errors import ConfigError

    with pytest.raises(ConfigError, match=r"acme\.names"):
        parse_config(render(sstpd__acme_names=["*.example.com"]))


def test_radius_variables_become_the_section(tmp_path: Path) -> None:
    for name in ("server-0", "server-1", "accounting_server-0", "dae_client-0"):
        (tmp_path / f"{name}.secret").write_text(f"{name}-secret\n")
    server = {"address": "192.0.2.10", "secret": "not-written-here"}
    text = render(
        sstpd__auth_backends=["users", "radius"],
        sstpd__radius_servers=[server, {**server, "address": "192.0.2.11", "port": 11812}],
        sstpd__radius_accounting_servers=[server],
        sstpd__radius_dae_listen="0.0.0.0:3799",
        sstpd__radius_dae_clients=[server],
        sstpd__radius_secret_dir=str(tmp_path),
    )
    assert "not-written-here" not in text  # secrets go to the files, never the config
    config = parse_config(text)
    r = config.radius
    assert config.auth.backends == ("users", "radius")
    assert [(s.address, s.port, s.secret) for s in r.servers] == [
        ("192.0.2.10", 1812, b"server-0-secret"),
        ("192.0.2.11", 11812, b"server-1-secret"),
    ]
    assert r.accounting_servers[0].port == 1813 and r.dae_listen == ("0.0.0.0", 3799)
    assert r.nas_identifier == "node1" and r.require_message_authenticator == "yes"
    assert "[radius]" not in render()


def test_workers_variable_becomes_server_workers() -> None:
    assert parse_config(render()).server.workers == 0  # the default: one per CPU
    assert "\nworkers = 0\n" in render()
    assert parse_config(render(sstpd__workers=4)).server.workers == 4
    assert parse_config(render(sstpd__workers="1")).server.workers == 1


def _workers_check() -> list[str]:
    tasks = yaml.safe_load((ROLE / "tasks" / "validate.yml").read_text())
    [task] = [t for t in tasks if t["name"] == "Check the number of worker processes"]
    return list(task["ansible.builtin.assert"]["that"])


@pytest.mark.parametrize(
    ("workers", "interface", "ok"),
    [
        (0, "sstp0", True),
        (1, "sstp0", True),
        (64, "sstp0", True),
        (65, "sstp0", False),
        (-1, "sstp0", False),
        (2, "twelve-chars", True),
        (2, "thirteen-char", False),
        (1, "thirteen-char", True),  # one process: no <interface>wN devices
        ("x", "sstp0", True),  # Ansible's int filter: 0; argument_specs rejects it first
    ],
)
def test_the_workers_check_of_validate_yml(workers: Any, interface: str, ok: bool) -> None:
    """The role's pre-flight assertion, evaluated as Ansible would (jinja2 expressions),
    agrees with what ``sstpd check-config`` accepts."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    values = {"sstpd__workers": workers, "sstpd__interface": interface}
    passed = all(env.compile_expression(e)(**values) for e in _workers_check())
    assert passed is ok
    if isinstance(workers, int) and 0 <= workers <= 64:
        text = render(sstpd__workers=workers, sstpd__interface=interface)
        try:
            parse_config(text)
            accepted = True
        except Exception:
            accepted = False
        assert accepted is ok
