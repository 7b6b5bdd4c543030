"""Debian 12 containers with real systemd for the Ansible role tests.

Topology (network namespaces on this machine; nothing leaves it)::

    netns sstpa-wan: bridge br0 192.0.2.1/24 = the "uplink host" (default gateway)
        |-- netns sstpa-n1: up0 192.0.2.11/24, container node1 (systemd-nspawn -b)
        |-- netns sstpa-n2: up0 192.0.2.12/24, container node2
        '-- netns sstpa-cli: cli0 192.0.2.100/24, the SSTP client (the package's own)

The containers boot a Debian 12 root file system built once with mmdebstrap and cached
under /var/tmp/sstpd-nspawn/rootfs-<hash of the recipe>; each boots it with
``--volatile=overlay`` (changes go to a tmpfs, the cache stays pristine). systemd is not
PID 1 on the test machines, so nspawn runs with ``--register=no --keep-unit``.

Ansible reaches a container over SSH through a ProxyCommand that enters the node's
namespace (``ip netns exec sstpa-n1 socat STDIO TCP:127.0.0.1:22``): no route between
the host and the test networks is needed. The controller is ansible-core in a venv of
Python >= 3.12 when there is one, else 3.11 (/var/tmp/sstpd-ansible-venv).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.netns import unique_prefix

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path("/var/tmp/sstpd-nspawn")
VENV = Path(os.environ.get("SSTPD_ANSIBLE_VENV", "/var/tmp/sstpd-ansible-venv"))
SUITE = "bookworm"
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "python3-apt",
    "nftables",
    "iproute2",
    "openssh-server",
    "procps",
]
RECIPE_VERSION = "1"  # bump when the customisation below changes
# namespaces <sstpa>_<pid>_<n>-*: a leftover of another run is never in the way
PREFIX = unique_prefix("sstpa")
WAN_IP = "192.0.2.1"
CLIENT_IP = "192.0.2.100"
NODE_IPS = {"node1": "192.0.2.11", "node2": "192.0.2.12"}


def sh(
    *cmd: str, check: bool = True, timeout: float = 600, **kw: object
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r  # type: ignore[no-any-return]


def controller_python() -> str | None:
    """A Python for the Ansible controller: >= 3.12 (the newest ansible-core) when there is
    one (system or pyenv), else a python3 >= 3.11 (pip then picks ansible-core 2.18)."""
    pyenv = sorted(glob.glob("/root/.pyenv/versions/3.1[2-9]*/bin/python3.1?"))
    for cand in ["python3.13", "python3.12", *pyenv, "python3"]:
        path = shutil.which(cand)
        if path is None:
            continue
        r = sh(path, "-c", "import sys; print(sys.version_info >= (3, 11))", check=False)
        if r.stdout.strip() == "True":
            return path
    return None


def controller_venv() -> Path:
    """ansible-core in its own venv (created once; needs PyPI the first time)."""
    playbook = VENV / "bin" / "ansible-playbook"
    if not playbook.exists():
        py = controller_python()
        if py is None:
            raise RuntimeError("no Python >= 3.11 for the Ansible controller")
        shutil.rmtree(VENV, ignore_errors=True)
        sh(py, "-m", "venv", str(VENV))
        pip = str(VENV / "bin" / "pip")
        sh(pip, "install", "-q", "--disable-pip-version-check", "ansible-core")
    return VENV


def recipe_hash() -> str:
    return hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)} {RECIPE_VERSION}".encode()).hexdigest()[
        :12
    ]


def rootfs() -> Path:
    """The cached container root file system, built with mmdebstrap when missing."""
    target = CACHE / f"rootfs-{recipe_hash()}"
    if (target / "usr" / "bin" / "python3").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob("rootfs-*"):
        shutil.rmtree(old, ignore_errors=True)
    tmp = CACHE / f"building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    sh(
        "mmdebstrap",
        "--quiet",
        "--variant=apt",
        f"--include={','.join(PACKAGES)}",
        # the machine name becomes the host name; no apt timers in a test container
        "--customize-hook=rm -f $1/etc/hostname",
        "--customize-hook=chroot $1 systemctl mask apt-daily.timer apt-daily-upgrade.timer",
        "--customize-hook=mkdir -p -m 700 $1/root/.ssh",
        SUITE,
        str(tmp),
        timeout=900,
    )
    tmp.rename(target)
    return target


def ssh_key() -> Path:
    key = CACHE / "id_ed25519"
    if not key.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        sh(
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "sstpd-ansible-tests",
            "-f",
            str(key),
        )
    return key


def ns_exec(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


@dataclass
class Node:
    name: str
    ip: str
    ns: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def leader(self) -> int:
        assert self.proc is not None
        out = sh("pgrep", "-P", str(self.proc.pid), check=False).stdout.split()
        if not out:
            raise AssertionError(f"{self.name}: the container has no init process")
        return int(out[0])

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 120, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (all its namespaces)."""
        return sh(
            "nsenter", "-t", str(self.leader()), "-a", *cmd, check=check, timeout=timeout, **kw
        )

    def host_vars(self) -> dict[str, object]:
        proxy = f"ip netns exec {self.ns} socat STDIO TCP:127.0.0.1:22"
        return {
            "ansible_host": self.ip,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(ssh_key()),
            "ansible_ssh_common_args": (
                f"-o ProxyCommand='{proxy}' -o StrictHostKeyChecking=no "
                "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
            ),
            "ansible_python_interpreter": "/usr/bin/python3",
        }


@dataclass
class Lab:
    """The namespaces, the bridge and the booted containers."""

    nodes: dict[str, Node] = field(default_factory=dict)
    wan: str = f"{PREFIX}-wan"
    cli: str = f"{PREFIX}-cli"
    workdir: Path = CACHE / "run"

    def up(self, names: list[str]) -> None:
        self.down()
        base = rootfs()
        key = ssh_key()
        self.workdir.mkdir(parents=True, exist_ok=True)
        sh("ip", "netns", "add", self.wan)
        sh("ip", "-n", self.wan, "link", "set", "lo", "up")
        sh("ip", "-n", self.wan, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.wan, "addr", "add", f"{WAN_IP}/24", "dev", "br0")
        sh("ip", "-n", self.wan, "link", "set", "br0", "up")
        self._attach(self.cli, "cli0", CLIENT_IP, "c")
        for name in names:
            ns = f"{PREFIX}-n{name[-1]}"
            self._attach(ns, "up0", NODE_IPS[name], name[-1])
            node = Node(name, NODE_IPS[name], ns, log=self.workdir / f"{name}.log")
            env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")
            with open(node.log, "wb") as logf:
                node.proc = subprocess.Popen(
                    [
                        "systemd-nspawn",
                        "--quiet",
                        "--boot",
                        f"--directory={base}",
                        "--volatile=overlay",
                        f"--machine={name}",
                        "--register=no",
                        "--keep-unit",
                        "--console=passive",
                        # no resolver in the test networks: fail name lookups at once
                        "--resolv-conf=delete",
                        f"--network-namespace-path=/run/netns/{ns}",
                        "--capability=CAP_NET_ADMIN",
                        f"--bind-ro={key}.pub:/root/.ssh/authorized_keys",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            self.nodes[name] = node
        for node in self.nodes.values():
            self._wait_ssh(node)

    def _attach(self, ns: str, ifname: str, ip: str, tag: str) -> None:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        peer = f"br-{tag}"  # made in the wan namespace: short, need not be unique
        sh(
            "ip",
            "-n",
            self.wan,
            "link",
            "add",
            peer,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            ns,
        )
        sh("ip", "-n", self.wan, "link", "set", peer, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname)
        sh("ip", "-n", ns, "link", "set", ifname, "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", WAN_IP)

    def _wait_ssh(self, node: Node, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise AssertionError(
                    f"{node.name} exited:\n{node.log.read_text() if node.log else ''}"
                )
            r = sh(*ns_exec(node.ns, "ss", "-Hltn", "sport = :22"), check=False)
            if "LISTEN" in r.stdout:
                node.run("systemctl", "is-system-running", "--wait", check=False, timeout=60)
                return
            time.sleep(0.2)
        raise AssertionError(f"{node.name}: sshd did not start")

    def down(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGTERM)
                try:
                    node.proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(node.proc.pid, signal.SIGKILL)
                    node.proc.wait()
        self.nodes.clear()
        existing = sh("ip", "netns", "list", check=False).stdout
        for ns in re.findall(rf"^({PREFIX}-\S+)", existing, re.M):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
