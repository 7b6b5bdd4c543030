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
    monkeypatch.setattr(mod, "SYSCTL_IPV6", etc / "sysctl.d" / "61-sstpd-appliance-ipv6.conf")
    monkeypatch.setattr(mod, "NFT_DIR", etc / "sstpd" / "nftables.d")
    # what would touch the machine: recorded instead
    calls = tmp_path / "calls"
    monkeypatch.setattr(mod, "APPLY_SYSCTL", ["sh", "-c", f'echo "sysctl $0" >> {calls}'])
    monkeypatch.setattr(mod, "RELOAD_NFTABLES", ["sh", "-c", f"echo nftables >> {calls}"])
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


def ca_issued(cert_path: Path, key_path: Path, name: str) -> None:
    """What the daemon installs after an ACME order: a leaf signed by a CA."""
    import datetime

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test ACME CA"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "R99"),
                ]
            )
        )
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


ACME_USER_DATA = """#cloud-config
sstpd:
  name: vpn.example.org
  acme:
    email: ops@example.org
"""


def test_acme_from_user_data(
    helper: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tomllib

    state = tmp_path / "var" / "lib" / "sstpd" / "tls"
    monkeypatch.setattr(helper, "ACME_CERT", state / "server.crt")
    monkeypatch.setattr(helper, "ACME_KEY", state / "server.key")
    boot(helper, tmp_path, "iid-acme", ACME_USER_DATA)
    conf = tomllib.loads(helper.CONFIG.read_text())
    assert conf["acme"] == {"names": ["vpn.example.org"], "email": "ops@example.org"}
    assert conf["server"]["certificate"] == str(state / "server.crt")
    assert conf["server"]["port"] == 443  # the rest of [server] is kept
    # the placeholder the daemon serves until the CA's certificate arrives
    assert "vpn.example.org" in dns_names(cert(helper))
    helper.banner()
    issue = helper.ISSUE.read_text()
    assert "Clients connect to:    vpn.example.org:443" in issue
    assert "Trusted name:          vpn.example.org (pending)" in issue
    assert "import it on Windows" not in issue

    # the daemon got the certificate: the banner names it and its issuer, and another
    # boot leaves it alone
    ca_issued(state / "server.crt", state / "server.key", "vpn.example.org")
    before = (state / "server.crt").read_bytes()
    boot(helper, tmp_path, "iid-acme", ACME_USER_DATA)
    assert (state / "server.crt").read_bytes() == before
    helper.banner()
    issue = helper.ISSUE.read_text()
    assert "Trusted name:          vpn.example.org" in issue
    assert "issued by Test ACME CA" in issue and "renewed automatically" in issue
    assert "(pending)" not in issue and "self-signed" not in issue


@pytest.mark.parametrize(
    "acme",
    [
        "{names: [192.0.2.1]}",
        "{names: ['*.example.org']}",
        "{emial: x@example.org}",
        "[vpn.example.org]",
        "{challenge: dns-01}",
    ],
)
def test_bad_acme_user_data_changes_nothing(
    helper: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, acme: str
) -> None:
    monkeypatch.setattr(helper, "ACME_CERT", tmp_path / "acme.crt")
    monkeypatch.setattr(helper, "ACME_KEY", tmp_path / "acme.key")
    before = helper.CONFIG.read_text()
    boot(
        helper,
        tmp_path,
        "iid-bad",
        f"#cloud-config\nsstpd:\n  name: vpn.example.org\n  acme: {acme}\n",
    )
    assert helper.CONFIG.read_text() == before
    assert "[acme]" not in before


NETWORK_USER_DATA = """#cloud-config
sstpd:
  name: vpn.example.org
  ipv6_pool: 2001:db8:100::/56
  ipv6_dns: [2001:db8::53]
  routes: [10.1.0.0/16, 192.168.7.0/24]
  domain: corp.example
"""


def test_network_settings_from_user_data(helper: ModuleType, tmp_path: Path) -> None:
    boot(helper, tmp_path, "iid-net", NETWORK_USER_DATA)
    tunnel = helper.config_show(helper.CONFIG)["tunnel"]
    assert tunnel["ipv6_pool"] == "2001:db8:100::/56"
    assert tunnel["ipv6_address"] == "2001:db8:100::1"
    assert tunnel["ipv6_dns"] == ["2001:db8::53"]
    assert tunnel["routes"] == ["10.1.0.0/16", "192.168.7.0/24"]
    assert tunnel["domain"] == "corp.example"
    assert helper.config_show(helper.CONFIG)["server"]["port"] == 443  # the rest is kept
    assert "net.ipv6.conf.all.forwarding = 1" in helper.SYSCTL_IPV6.read_text()
    nft = (helper.NFT_DIR / "ipv6-pool.nft").read_text()
    assert "add element inet filter sstp_pool_v6 { 2001:db8:100::/56 }" in nft
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [f"sysctl {helper.SYSCTL_IPV6}", "nftables"]
    helper.banner()
    issue = helper.ISSUE.read_text()
    assert "Client IPv6 prefixes:  2001:db8:100::/56 (a /64 each, routed)" in issue
    # once per instance: the same instance again changes nothing
    before = helper.CONFIG.read_text()
    boot(helper, tmp_path, "iid-net", NETWORK_USER_DATA)
    assert helper.CONFIG.read_text() == before
    assert len((tmp_path / "calls").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("ipv6_pool: 2001:db8:100::/72", "longer than /64"),
        ("routes: [10.1.0.1/16]", "host bits"),
        ("ipv6_dns: [2001:db8::53]", "needs tunnel.ipv6_pool"),
        ("domain: not_a domain", "not a DNS domain name"),
    ],
)
def test_bad_network_user_data_changes_nothing(
    helper: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    reason: str,
) -> None:
    before = helper.CONFIG.read_text()
    boot(helper, tmp_path, "iid-bad-net", f"#cloud-config\nsstpd:\n  {line}\n")
    assert helper.CONFIG.read_text() == before
    assert not helper.SYSCTL_IPV6.exists() and not (tmp_path / "calls").exists()
    out = capsys.readouterr().out
    # the daemon's parser says where and why
    assert "user-data sstpd network keys not applied" in out and reason in out, out


def test_an_invalid_configuration_is_reported_not_guessed(
    helper: ModuleType, tmp_path: Path
) -> None:
    helper.CONFIG.write_text("[server]\nport = 70000\n")
    (tmp_path / "instance-id").write_text("iid-1\n")
    assert helper.firstboot() == 1
    # the administrator can still log in: host keys were made first
    assert list((tmp_path / "root/etc/ssh").glob("ssh_host_*_key"))
    helper.banner()
    issue = helper.ISSUE.read_text()
    assert "sstpd's configuration is invalid" in issue and "server.port" in issue
    assert helper.set_name("vpn.example.org") == 1
