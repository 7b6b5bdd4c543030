"""The sstpd appliance image under test: build it (cached), make a cloud-init seed, boot it.

Library use (as root)::

    from tests.image import appliance
    image = appliance.build()                   # image/build, cached by a hash of its inputs
    seed = appliance.seed_iso(path, user_data, meta_data)
    vm = appliance.Vm(image, seed=seed).boot()  # returns at once; qemu runs in the background
    vm.wait_ssh(key)                            # then vm.ssh("systemctl is-system-running")
    vm.stop()

Command line, for poking at it by hand::

    python3 -m tests.image.appliance build          # prints the image path
    python3 -m tests.image.appliance boot [--seed ISO]  # prints the ports; Ctrl-C stops it

The image is cached in CACHE_DIR/<hash> (SSTPD_IMAGE_TEST_DIR, default
/var/tmp/sstpd-image-test); the hash covers image/, sstpd/, roles/, playbooks/, site.yml,
ansible.cfg, pyproject.toml and README.md, so a change to any of them rebuilds it
(image/build keeps its own cache of the Debian base, so a rebuild skips debootstrap).
Each boot writes to its own qcow2 overlay: the cached image stays pristine, and every
boot is a fresh appliance.

QEMU runs with TCG unless KVM really works (``tests.realclient.guest.resolve_accel``:
/dev/kvm usable, vmx/svm in the CPU flags, no kvm_pvm); SSTPD_IMAGE_ACCEL=tcg|kvm|auto
overrides. Networking is QEMU user mode with restrict=on (the guest reaches nothing
outside) and two forwards from 127.0.0.1: SSH (guest 22) and SSTP (guest 443).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.realclient.guest import resolve_accel

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("SSTPD_IMAGE_TEST_DIR", "/var/tmp/sstpd-image-test"))
# README.md: it is the long description in the wheel the roles build and install
INPUTS = (
    "image", "sstpd", "roles", "playbooks", "site.yml", "ansible.cfg", "pyproject.toml",
    "README.md",
)  # fmt: skip
ADMIN_USER = "debian"


def version() -> str:
    m = re.search(r'^__version__ = "(.+)"$', (ROOT / "sstpd" / "__init__.py").read_text(), re.M)
    assert m, "no __version__ in sstpd/__init__.py"
    return m.group(1)


def _input_files(root: Path) -> Iterator[Path]:
    for name in INPUTS:
        top = root / name
        if top.is_file():
            yield top
        elif top.is_dir():
            for p in sorted(top.rglob("*")):
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                    yield p


def inputs_hash(root: Path = ROOT) -> str:
    """sha256 over every file that shapes the image (path, executable bit, content)."""
    h = hashlib.sha256()
    for p in _input_files(root):
        rel = p.relative_to(root).as_posix()
        h.update(f"{rel}\0{os.access(p, os.X_OK)}\0".encode() + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _snapshot(dest: Path) -> None:
    """Copy the inputs to ``dest``: the build, and later site.yml against the booted
    image, see one tree, whatever is edited in the checkout meanwhile."""
    for p in _input_files(ROOT):
        target = dest / p.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(log: Path | None = None) -> Path:
    """The image for the current tree: from the cache, or built with image/build (its
    progress goes to ``log``, default CACHE_DIR/build.log). The tree it was built from is
    kept beside it, in ``source(image)``."""
    with _locked(CACHE_DIR / "lock"):
        cached = CACHE_DIR / inputs_hash() / f"sstpd-{version()}.qcow2"
        if cached.exists():
            return cached
        for old in CACHE_DIR.iterdir():  # one cached image is enough
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        part = CACHE_DIR / "build.part"
        src = part / "src"
        _snapshot(src)
        log = log or CACHE_DIR / "build.log"
        t0 = time.monotonic()
        with open(log, "w") as f:
            r = subprocess.run(
                [str(src / "image" / "build"), "--output", str(part)],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if r.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-60:])
            raise RuntimeError(f"image/build failed ({r.returncode}), see {log}:\n{tail}")
        (part / "build-seconds").write_text(f"{time.monotonic() - t0:.0f}\n")
        shutil.copy(log, part / "build.log")
        final = CACHE_DIR / inputs_hash(src)
        part.rename(final)
        return final / f"sstpd-{version()}.qcow2"


def source(image: Path) -> Path:
    """The snapshot of the tree ``image`` was built from (roles, site.yml, sstpd ...)."""
    return image.parent / "src"


def seed_iso(path: Path, user_data: str, meta_data: str, network_config: str | None = None) -> Path:
    """A cloud-init NoCloud seed: an ISO 9660 volume labelled "cidata"."""
    with tempfile.TemporaryDirectory(prefix="sstpd-seed-") as tmp:
        d = Path(tmp)
        (d / "user-data").write_text(user_data)
        (d / "meta-data").write_text(meta_data)
        files = ["user-data", "meta-data"]
        if network_config is not None:
            (d / "network-config").write_text(network_config)
            files.append("network-config")
        subprocess.run(
            [
                "genisoimage",
                "-quiet",
                "-output",
                str(path),
                "-volid",
                "cidata",
                "-joliet",
                "-rock",
                *files,
            ],
            cwd=d,
            check=True,
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Vm:
    """One boot of the appliance: a qcow2 overlay on the image, QEMU in the background."""

    def __init__(
        self,
        image: Path,
        *,
        seed: Path | None = None,
        workdir: Path | None = None,
        disk_size: str | None = None,
        mem: int = 1024,
        smp: int = 2,
        accel: str | None = None,
    ) -> None:
        self.image, self.seed, self.disk_size = image, seed, disk_size
        # short: the ssh control socket path must stay under ~100 characters
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="sstpd-vm-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.mem, self.smp = mem, smp
        self.accel = resolve_accel(accel or os.environ.get("SSTPD_IMAGE_ACCEL"))
        self.ssh_port = self.sstp_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.key: Path | None = None
        self.started = 0.0

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    def console(self) -> str:
        try:
            return self.console_log.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def boot(self) -> Vm:
        disk = self.dir / "disk.qcow2"
        disk.unlink(missing_ok=True)
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                str(self.image),
                str(disk),
                *([self.disk_size] if self.disk_size else []),
            ],
            check=True,
        )
        self.ssh_port, self.sstp_port = free_port(), free_port()
        if self.accel == "kvm":
            accel = ["-accel", "kvm", "-cpu", "host"]
        else:
            accel = ["-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max"]
        cmd = [
            "qemu-system-x86_64", "-machine", "pc", *accel,
            "-smp", str(self.smp), "-m", str(self.mem),
            "-drive", f"file={disk},if=virtio,format=qcow2,discard=unmap",
            "-nic",
            f"user,model=virtio-net-pci,restrict=on,"
            f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,hostfwd=tcp:127.0.0.1:{self.sstp_port}-:443",
            "-device", "virtio-rng-pci",
            "-display", "none", "-monitor", "none", "-serial", f"file:{self.console_log}",
        ]  # fmt: skip
        if self.seed is not None:
            cmd += ["-drive", f"file={self.seed},if=virtio,media=cdrom,readonly=on,format=raw"]
        self.started = time.monotonic()
        with open(self.dir / "qemu.log", "wb") as qlog:
            self.proc = subprocess.Popen(
                cmd, stdout=qlog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _check_alive(self) -> None:
        if not self.running():
            qlog = (self.dir / "qemu.log").read_text(errors="replace")
            raise RuntimeError(f"qemu exited:\n{qlog}\n---- console\n{self.console_tail()}")

    def console_tail(self, n: int = 40) -> str:
        return "\n".join(self.console().splitlines()[-n:])

    def wait_console(self, pattern: str, timeout: float = 300) -> re.Match[str]:
        """Wait until the serial console shows ``pattern`` (a regular expression)."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = rx.search(self.console())
            if m:
                return m
            self._check_alive()
            time.sleep(1)
        raise TimeoutError(
            f"no {pattern!r} on the console after {timeout} s:\n{self.console_tail()}"
        )

    def ssh_command(self, key: Path, user: str = ADMIN_USER) -> list[str]:
        return [
            "ssh", "-q", "-p", str(self.ssh_port), "-i", str(key),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={self.dir}/ssh-%r",
            "-o", "ControlPersist=300", f"{user}@127.0.0.1",
        ]  # fmt: skip

    def wait_ssh(self, key: Path, timeout: float = 300) -> float:
        """Wait for a working SSH login with ``key``; returns the seconds since boot()."""
        self.key = key
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            r = subprocess.run([*self.ssh_command(key), "true"], capture_output=True, timeout=60)
            if r.returncode == 0:
                return time.monotonic() - self.started
            time.sleep(2)
        raise TimeoutError(f"no ssh login after {timeout} s:\n{self.console_tail()}")

    def ssh(
        self, command: str, *, check: bool = True, timeout: float = 300, sudo: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the appliance (as root with ``sudo``)."""
        assert self.key is not None, "wait_ssh() first"
        remote = f"sudo -n sh -c {shlex.quote(command)}" if sudo else command
        r = subprocess.run(
            [*self.ssh_command(self.key), remote], capture_output=True, text=True, timeout=timeout
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"{command!r} on the appliance failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
            )
        return r

    def stop(self) -> None:
        if self.key is not None:
            subprocess.run(
                [*self.ssh_command(self.key)[:-1], "-O", "exit", f"{ADMIN_USER}@127.0.0.1"],
                capture_output=True,
                timeout=10,
            )
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        (self.dir / "disk.qcow2").unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m tests.image.appliance")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build (or find in the cache) the image; print its path")
    b = sub.add_parser("boot", help="boot a fresh copy until Ctrl-C")
    b.add_argument("--seed", type=Path, help="a cloud-init seed ISO")
    a = p.parse_args(argv)
    image = build()
    if a.cmd == "build":
        print(image)
        return 0
    vm = Vm(image, seed=a.seed).boot()
    print(
        f"ssh -p {vm.ssh_port} {ADMIN_USER}@127.0.0.1   sstp 127.0.0.1:{vm.sstp_port}",
        f"  console {vm.console_log}",
    )
    try:
        while vm.running():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        vm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
