"""The appliance image (issue 4): built by image/build, booted under qemu with and without
a cloud-init seed. See conftest.py for the fixtures and appliance.py for the harness."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from sstpd.aio.client import ClientOptions, Tunnel
from tests.integration.client_tool import ping_once

from . import appliance
from .conftest import HOSTNAME, PUBLIC_NAME, USERS

pytestmark = pytest.mark.image

MIB = 1024 * 1024


def test_image_file_size_and_checksum(image: Path) -> None:
    assert image.name == f"sstpd-{appliance.version()}.qcow2"
    assert image.stat().st_size < 400 * MIB
    r = subprocess.run(
        ["sha256sum", "-c", image.name + ".sha256"],
        cwd=image.parent,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    info = subprocess.run(
        ["qemu-img", "info", str(image)], capture_output=True, text=True, check=True
    ).stdout
    assert "file format: qcow2" in info


def test_boots_to_running_with_no_failed_units(seeded: appliance.Vm) -> None:
    state = seeded.ssh("systemctl is-system-running", check=False).stdout.strip()
    failed = seeded.ssh("systemctl list-units --failed --plain --no-legend").stdout.strip()
    assert (state, failed) == ("running", ""), seeded.ssh(
        "journalctl -b -p warning --no-pager | tail -n 50"
    ).stdout
    ci = seeded.ssh("cloud-init status --long", check=False).stdout
    assert "status: done" in ci, ci


def test_sstpd_and_nftables_are_active(seeded: appliance.Vm) -> None:
    for unit in ("sstpd.service", "nftables.service", "ssh.service"):
        assert seeded.ssh(f"systemctl is-active {unit}", check=False).stdout.strip() == "active", (
            unit
        )
        assert (
            seeded.ssh(f"systemctl is-enabled {unit}", check=False).stdout.strip() == "enabled"
        ), unit
    ruleset = seeded.ssh("nft list ruleset").stdout
    assert re.search(r"\b443\b", ruleset), ruleset


def test_root_file_system_grows_to_the_disk(seeded: appliance.Vm) -> None:
    size_mib = int(seeded.ssh("df --output=size -BM / | tail -n 1").stdout.strip().rstrip("M"))
    assert size_mib > 3600, size_mib  # the image is 3 GiB, this copy's disk 4 GiB


def test_user_data_was_applied(seeded: appliance.Vm) -> None:
    assert seeded.ssh("hostname", sudo=False).stdout.strip() == HOSTNAME
    users = seeded.ssh("sstpd user list --config /etc/sstpd/sstpd.toml").stdout
    assert {"alice", "bob"} <= set(re.findall(r"^\s*(\w+)", users, re.M)), users
    crt = seeded.ssh("cat /etc/sstpd/tls/server.crt").stdout
    cert = x509.load_pem_x509_certificate(crt.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert PUBLIC_NAME in sans.get_values_for_type(x509.DNSName)
    assert seeded.ssh("stat -c %a /etc/sstpd/tls/server.key").stdout.strip() == "600"
    # no plaintext password anywhere it could leak from: the users file holds NT hashes
    assert USERS["alice"] not in seeded.ssh("cat /etc/sstpd/users /etc/sstpd/appliance.json").stdout


def test_console_banner(seeded: appliance.Vm) -> None:
    crt = seeded.ssh("cat /etc/sstpd/tls/server.crt").stdout
    fp = x509.load_pem_x509_certificate(crt.encode()).fingerprint(hashes.SHA256()).hex(":").upper()
    issue = seeded.ssh("cat /etc/issue").stdout
    assert f"{PUBLIC_NAME}:443" in issue, issue
    assert fp[:47] in issue and fp[48:] in issue, issue
    assert "/etc/sstpd/tls/server.crt" in issue and "sstpd user add" in issue, issue
    # and the serial console (a getty on ttyS0) shows it
    seeded.wait_console(re.escape(fp[:47]), timeout=60)


async def _connect_and_ping(port: int, ca: Path, user: str, auth: str) -> dict[str, object]:
    t = await Tunnel.open(
        ClientOptions(
            host="127.0.0.1",
            port=port,
            server_name=PUBLIC_NAME,  # the certificate names the public name, not 127.0.0.1
            ca_file=str(ca),
            user=user,
            password=USERS[user],
            auth_methods=(auth,),
            timeout=60,
        )
    )
    try:
        replies = await ping_once(t, 21, 3, timeout=10)
        return {"local": str(t.local_address), "peer": str(t.peer_address), "replies": replies}
    finally:
        await t.close()


@pytest.mark.parametrize(("user", "auth"), [("alice", "mschapv2"), ("bob", "pap")])
def test_vpn_client_connects_through_the_forwarded_port(
    seeded: appliance.Vm, tmp_path: Path, user: str, auth: str
) -> None:
    ca = tmp_path / "server.crt"
    ca.write_text(seeded.ssh("cat /etc/sstpd/tls/server.crt").stdout)
    res = asyncio.run(_connect_and_ping(seeded.sstp_port, ca, user, auth))
    assert res["peer"] == "10.77.0.1", res
    assert res["local"].startswith("10.77.0."), res  # type: ignore[union-attr]
    assert res["replies"] == 3, res


def _served_certificate(port: int, wait: float = 180) -> x509.Certificate:
    """The certificate sstpd presents (retried while sstpd is still starting: the forward
    accepts the connection and resets it when nothing listens in the guest)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=60)
            return x509.load_pem_x509_certificate(pem.encode())
        except (OSError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _public_key(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _host_keys(port: int) -> set[str]:
    """The SSH host keys (type and key). One scan per type: a scan of all types at once
    missed one under emulation."""
    keys = set()
    for t in ("ed25519", "ecdsa", "rsa"):
        r = subprocess.run(
            ["ssh-keyscan", "-p", str(port), "-T", "90", "-t", t, "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=200,
        )
        keys |= {
            " ".join(line.split()[1:3])
            for line in r.stdout.splitlines()
            if line and not line.startswith("#")
        }
    return keys


def test_without_user_data_the_banner_says_how_to_finish(unseeded: appliance.Vm) -> None:
    finish = r"Setup is not finished[\s\S]*?sstpd README"
    console = unseeded.wait_console(finish, timeout=60).group(0)
    assert "cidata" in console and "ssh_authorized_keys" in console, console
    # the address clients connect to (agetty's \4: the appliance's own DHCP address)
    assert re.search(r"Clients connect to:\s+10\.0\.2\.15:443", unseeded.console()), (
        unseeded.console_tail()
    )
    # the fingerprint shown is the certificate sstpd serves
    served = _served_certificate(unseeded.sstp_port)
    fp = served.fingerprint(hashes.SHA256()).hex(":").upper()
    assert fp[:47] in unseeded.console() and fp[48:] in unseeded.console()


def test_two_copies_of_the_image_share_no_keys(
    seeded: appliance.Vm, unseeded: appliance.Vm
) -> None:
    a, b = _host_keys(seeded.ssh_port), _host_keys(unseeded.ssh_port)
    for keys in (a, b):
        assert {k.split()[0] for k in keys} == {"ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"}
    assert not a & b, (a, b)
    ca, cb = _served_certificate(seeded.sstp_port), _served_certificate(unseeded.sstp_port)
    assert _public_key(ca) != _public_key(cb)
    assert ca.serial_number != cb.serial_number


def test_site_yml_again_changes_nothing(seeded: appliance.Vm, image: Path, workdir: Path) -> None:
    """The image was configured by site.yml (offline): applied again, for real, over SSH,
    with the appliance's variables (and from the tree the image was built from), it has
    nothing left to do."""
    from tests.ansible.harness import controller_venv

    venv = controller_venv()
    assert seeded.key is not None
    # The controller's wheel cache is the one the build used (the node keeps a copy, with
    # its digest marker): a dependency released on PyPI since the image was built would
    # otherwise be a (legitimate, but time-dependent) change.
    platform = seeded.ssh(
        "echo $(python3 -c 'import sys; print(*sys.version_info[:2], sep=\".\")')-$(uname -m)",
        sudo=False,
    ).stdout.strip()
    wheels = workdir / "controller-cache" / "wheels" / platform
    wheels.mkdir(parents=True, exist_ok=True)
    tar = seeded.ssh("tar -C /opt/sstpd/wheels -cf - . | base64 -w0", sudo=False).stdout
    subprocess.run(["tar", "-x", "-C", str(wheels)], input=base64.b64decode(tar), check=True)

    inventory = workdir / "inventory.yml"
    ssh_args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    inventory.write_text(
        f"""sstpd_servers:
  hosts:
    appliance:
      ansible_host: 127.0.0.1
      ansible_port: {seeded.ssh_port}
      ansible_user: {appliance.ADMIN_USER}
      ansible_become: true
      ansible_ssh_private_key_file: {seeded.key}
      ansible_ssh_common_args: {ssh_args}
      ansible_python_interpreter: /usr/bin/python3
"""
    )
    r = subprocess.run(
        [
            str(venv / "bin" / "ansible-playbook"),
            "-i",
            str(inventory),
            "site.yml",
            "-e",
            "@image/appliance-vars.yml",
            "-e",
            f"sstpd__controller_cache={workdir / 'controller-cache'}",
        ],
        cwd=appliance.source(image),
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "False"},
    )
    recap = re.search(r"^appliance\s*:\s*(.*)$", r.stdout, re.M)
    assert recap, r.stdout[-3000:] + r.stderr[-3000:]
    counts = dict(re.findall(r"(\w+)=(\d+)", recap.group(1)))
    task, changed = "", []
    for line in r.stdout.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:"):
            changed.append(task)
    summary = " ".join(f"{k}={counts[k]}" for k in ("changed", "failed", "unreachable"))
    assert summary == "changed=0 failed=0 unreachable=0", (
        summary + "\n" + "\n".join(changed) + "\n" + r.stdout[-3000:]
    )
