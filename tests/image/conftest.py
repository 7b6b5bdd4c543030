"""Fixtures for the appliance image tests (issue 4).

``image``: the built qcow2 (tests.image.appliance.build(): cached by a hash of its inputs,
see appliance.INPUTS; a cold build takes a few minutes).
``seeded``: a fresh copy booted with a cloud-init NoCloud seed (hostname, an SSH key for
the admin user, the VPN's public name and two VPN users), logged into over SSH.
``unseeded``: a fresh copy booted without any user-data (only its console and its open
ports are reachable: no key to log in with, by design).

Both VMs are booted by the first test that needs them and stopped at the end of the
session; SSTPD_IMAGE_KEEP=1 leaves them running (their ports and console paths are
printed). Needs root, qemu-system-x86_64, qemu-img and genisoimage; the tests are
skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sstpd.proto.mschap import nt_password_hash

from . import appliance

PUBLIC_NAME = "vpn.appliance.test"
HOSTNAME = "sstpd-test"
USERS = {"alice": "alice-secret", "bob": "bob-secret"}  # alice by password, bob by NT hash
DISK_SIZE = "4G"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "image: builds the appliance image and boots it under qemu (tests/image)"
    )


@pytest.fixture(scope="session")
def image() -> Path:
    if os.geteuid() != 0:
        pytest.skip("the appliance image tests need root (loop device, chroot, qemu)")
    missing = [
        b for b in ("qemu-system-x86_64", "qemu-img", "genisoimage", "ssh") if not shutil.which(b)
    ]
    if missing:
        pytest.skip(f"missing on the host: {', '.join(missing)}")
    return appliance.build()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("appliance")


@pytest.fixture(scope="session")
def ssh_key(workdir: Path) -> Path:
    key = workdir / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sstpd-image-test", "-f", str(key)],
        check=True,
    )
    return key


def user_data(ssh_key: Path) -> str:
    pub = ssh_key.with_suffix(".pub").read_text().strip()
    return f"""#cloud-config
hostname: {HOSTNAME}
ssh_authorized_keys:
  - {pub}
sstpd:
  name: {PUBLIC_NAME}
  users:
    - name: alice
      password: {USERS["alice"]}
    - name: bob
      nt_hash: {nt_password_hash(USERS["bob"]).hex()}
"""


def _keep_or_stop(vm: appliance.Vm, what: str) -> None:
    if os.environ.get("SSTPD_IMAGE_KEEP") == "1":
        print(
            f"\n{what} kept: ssh -p {vm.ssh_port} {appliance.ADMIN_USER}@127.0.0.1, "
            f"sstp 127.0.0.1:{vm.sstp_port}, console {vm.console_log}"
        )
    else:
        vm.stop()


@pytest.fixture(scope="session")
def seeded(image: Path, ssh_key: Path, workdir: Path) -> Iterator[appliance.Vm]:
    seed = appliance.seed_iso(
        workdir / "seed.iso",
        user_data(ssh_key),
        f"instance-id: iid-{HOSTNAME}\nlocal-hostname: {HOSTNAME}\n",
    )
    # a bigger disk than the image's 3 GiB: the root file system grows on first boot
    vm = appliance.Vm(image, seed=seed, workdir=workdir / "seeded", disk_size=DISK_SIZE).boot()
    try:
        vm.wait_ssh(ssh_key)
        vm.ssh("systemctl is-system-running --wait", check=False, timeout=600)
        yield vm
    finally:
        _keep_or_stop(vm, "seeded appliance")


@pytest.fixture(scope="session")
def unseeded(image: Path, workdir: Path) -> Iterator[appliance.Vm]:
    vm = appliance.Vm(image, workdir=workdir / "unseeded").boot()
    try:
        # the serial getty shows /etc/issue once the banner unit has written it
        vm.wait_console(r"Certificate SHA-256:", timeout=600)
        yield vm
    finally:
        _keep_or_stop(vm, "unseeded appliance")
