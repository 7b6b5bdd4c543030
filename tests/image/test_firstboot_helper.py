"""The appliance's first-boot helper (image/files/usr/local/sbin/sstpd-appliance) on this
machine, with every path it touches moved into a temporary directory: user-data applied
once per instance, an operator's certificate, the banner. No image, no VM: fast."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from sstpd import certs
from sstpd.proto.mschap import nt_password_hash

HELPER = Path(__file__).resolve().parents[2] / "image/files/usr/local/sbin/sstpd-appliance"


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("sstpd_appliance", str(HELPER))
    spec = importlib.util.spec_from_loader("sstpd_appliance", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    etc = tmp_path / "etc"
    (etc / "sstpd").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "ssh").mkdir(parents=True)
    (etc / "sstpd" / "sstpd.toml").write_text(
        f'[server]\ncertificate = "tls/server.crt"\nkey = "tls/server.key"\nport = 443\n'
        f'[auth]\nusers_file = "{etc}/sstpd/users"\n'
    )
    monkeypatch.setattr(mod, "CONFIG", etc / "sstpd" / "sstpd.toml")
    monkeypatch.setattr(mod, "STATE", etc / "sstpd" / "appliance.json")
    monkeypatch.setattr(mod, "CLOUD_CONFIG", tmp_path / "cloud-config.txt")
    monkeypatch.setattr(mod, "INSTANCE_ID", tmp_path / "instance-id")
    monkeypatch.setattr(mod, "ISSUE", etc / "issue")
    monkeypatch.setattr(mod, "SSH_ROOT", tmp_path / "root")
    monkeypatch.setattr(mod, "ADMIN_HOMES", (tmp_path / "home",))
    monkeypatch.setattr(mod, "RELOAD_SSTPD", ["true"])
    # "sstpd" is this checkout's (the interpreter running the tests)
    shim = tmp_path / "bin" / "sstpd"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m sstpd "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}:/usr/sbin:/usr/bin:/sbin:/bin")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    return mod


def boot(helper: ModuleType, tmp_path: Path, iid: str, user_data: str) -> None:
    (tmp_path / "instance-id").write_text(iid + "\n")
    (tmp_path / "cloud-config.txt").write_text(user_data)
    assert helper.firstboot() == 0


def users(helper: ModuleType) -> set[str]:
    text = helper.server_config()["users_file"].read_text()
    return {line.split(":")[0] for line in text.splitlines() if line and not line.startswith("#")}


def cert(helper: ModuleType) -> x509.Certificate:
    return x509.load_pem_x509_certificate(helper.server_config()["certificate"].read_bytes())


def dns_names(c: x509.Certificate) -> list[str]:
    ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return list(ext.value.get_values_for_type(x509.DNSName))


USER_DATA = f"""#cloud-config
hostname: ignored-here
sstpd:
  name: vpn.example.org
  users:
    - {{name: alice, password: "alice secret"}}
    - {{name: bob, nt_hash: {nt_password_hash("bob-secret").hex()}, address: 10.77.0.9}}
    - {{name: carol}}
    - {{password: nobody}}
"""


def test_user_data_is_applied_once_per_instance(helper: ModuleType, tmp_path: Path) -> None:
    boot(helper, tmp_path, "iid-1", USER_DATA)
    assert users(helper) == {"alice", "bob"}  # carol: no secret; the last: no name
    c = cert(helper)
    assert "vpn.example.org" in dns_names(c)
    cfg = helper.server_config()
    assert cfg["key"].stat().st_mode & 0o777 == 0o600
    assert cfg["users_file"].stat().st_mode & 0o777 == 0o600
    assert {p.name for p in (tmp_path / "root/etc/ssh").glob("*.pub")} >= {
        "ssh_host_ed25519_key.pub",
        "ssh_host_rsa_key.pub",
    }
    assert "alice secret" not in cfg["users_file"].read_text()

    # a user deleted by the administrator stays deleted; the certificate stays
    subprocess.run(["sstpd", "user", "del", "alice", "--config", str(helper.CONFIG)], check=True)
    boot(helper, tmp_path, "iid-1", USER_DATA)
    assert users(helper) == {"bob"}
    assert cert(helper).fingerprint(hashes.SHA256()) == c.fingerprint(hashes.SHA256())

    # a new instance with another name: its users, and a certificate for that name
    boot(helper, tmp_path, "iid-2", USER_DATA.replace("vpn.example.org", "vpn2.example.org"))
    assert users(helper) == {"alice", "bob"}
    assert "vpn2.example.org" in dns_names(cert(helper))


def test_no_user_data_still_gives_a_certificate_and_a_banner(
    helper: ModuleType, tmp_path: Path
) -> None:
    boot(helper, tmp_path, "iid-datasource-none", "#cloud-config\n{}\n")
    assert users(helper) == set()  # an empty users file: sstpd check-config wants one
    assert helper.banner() == 0
    issue = helper.ISSUE.read_text()
    fp = cert(helper).fingerprint(hashes.SHA256()).hex(":").upper()
    assert fp[:47] in issue and fp[48:] in issue
    assert "\\4:443" in issue  # agetty shows the current address there
    assert "Setup is not finished" in issue and "cidata" in issue
    # where the client profiles are (sstpd profile, the status app's /profiles/)
    assert "sstpd profile windows" in issue and "http://127.0.0.1:8080/profiles/" in issue
    assert "ED25519 SHA256:" in issue


def test_operator_certificate_is_installed_and_kept(helper: ModuleType, tmp_path: Path) -> None:
    leaf, key = tmp_path / "op.crt", tmp_path / "op.key"
    certs.generate_self_signed(str(leaf), str(key), common_name="vpn.corp.example", sans=[])
    inter = tmp_path / "inter.crt"
    certs.generate_self_signed(str(inter), str(tmp_path / "i.key"), common_name="inter", sans=[])
    indent = "\n".join(
        "    " + line for line in (leaf.read_text() + inter.read_text()).splitlines()
    )
    kindent = "\n".join("    " + line for line in key.read_text().splitlines())
    user_data = (
        "#cloud-config\nsstpd:\n  name: vpn.corp.example\n"
        f"  certificate: |\n{indent}\n  key: |\n{kindent}\n"
    )
    boot(helper, tmp_path, "iid-1", user_data)
    cfg = helper.server_config()
    installed = cfg["certificate"].read_text()
    assert installed.count("BEGIN CERTIFICATE") == 2  # leaf + intermediate, leaf first
    assert installed.startswith(leaf.read_text().strip())
    assert cfg["key"].read_text().strip() == key.read_text().strip()
    certs.verify_key_pair(str(cfg["certificate"]), str(cfg["key"]))
    # set-name with an operator's certificate changes the name, not the certificate
    assert helper.set_name("vpn2.corp.example") == 0
    assert cfg["certificate"].read_text() == installed
    assert "vpn2.corp.example:443" in helper.ISSUE.read_text()
    assert "self-signed" not in helper.ISSUE.read_text()


def test_set_name_makes_a_new_self_signed_certificate(helper: ModuleType, tmp_path: Path) -> None:
    boot(helper, tmp_path, "iid-1", "#cloud-config\n")
    old = cert(helper)
    assert helper.set_name("not a name!") == 2
    assert helper.set_name("203.0.113.7") == 0
    new = cert(helper)
    ips = new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "203.0.113.7" in [str(ip) for ip in ips.get_values_for_type(x509.IPAddress)]
    assert new.public_key() != old.public_key()
    assert "203.0.113.7:443" in helper.ISSUE.read_text()
