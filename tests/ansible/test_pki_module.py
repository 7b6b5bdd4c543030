"""The sstpd_pki role's module on the controller, run by ansible-playbook against
localhost: it builds the CA and the server certificate with the package's own
sstpd.certs (imported from the checkout), keeps them on a second run and in check mode,
and re-issues the server certificate (same key, same CA) when the names change.
No containers: the module only ever runs on the controller."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.ansible import harness
from tests.ansible.harness import ROOT

pytestmark = pytest.mark.ansible


def apply_pki(tmp_path: Path, sans: list[str], *args: str) -> dict[str, Any]:
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "sstpd_pki_ca": {
                        "path": str(tmp_path / "pki"),
                        "common_name": sans[0],
                        "sans": sans,
                        "key_type": "ec",
                        # the symlinked roles path, as site.yml finds the role
                        "source_dir": str(ROOT / "playbooks" / "roles" / "sstpd_pki" / ".." / ".."),
                    },
                    "register": "r",
                },
                {
                    "ansible.builtin.copy": {
                        "content": "{{ r | to_json }}",
                        "dest": str(tmp_path / "r.json"),
                    }
                },
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LIBRARY=str(ROOT / "roles" / "sstpd_pki" / "library"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
    )
    r = subprocess.run(
        [str(harness.VENV / "bin" / "ansible-playbook"), str(tmp_path / "play.yml"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    return json.loads((tmp_path / "r.json").read_text())  # type: ignore[no-any-return]


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_and_server_certificate_from_the_packages_builder(tmp_path: Path) -> None:
    harness.controller_venv()
    first = apply_pki(tmp_path, ["vpn.example.test", "192.0.2.7"])
    assert first["changed"] and "new CA key" in first["reasons"]
    pki = tmp_path / "pki"
    ca, server = load(pki / "ca.crt"), load(pki / "server.crt")
    server.verify_directly_issued_by(ca)
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert sorted(first["sans"]) == ["192.0.2.7", "vpn.example.test"]
    assert (pki / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (pki / "server.key").stat().st_mode & 0o777 == 0o600

    # a second run and check mode change nothing
    files = {p.name: p.read_bytes() for p in pki.iterdir()}
    assert not apply_pki(tmp_path, ["vpn.example.test", "192.0.2.7"])["changed"]
    assert not apply_pki(tmp_path, ["vpn.example.test", "192.0.2.7"], "--check")["changed"]
    assert {p.name: p.read_bytes() for p in pki.iterdir()} == files

    # new names: a new server certificate from the same CA, for the same key
    again = apply_pki(tmp_path, ["vpn.example.test", "vpn2.example.test"])
    assert again["changed"] and "the subject alternative names changed" in again["reasons"]
    renewed = load(pki / "server.crt")
    renewed.verify_directly_issued_by(ca)
    assert (pki / "ca.crt").read_bytes() == files["ca.crt"]
    assert (pki / "server.key").read_bytes() == files["server.key"]
    san = renewed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["vpn.example.test", "vpn2.example.test"]
