"""A QEMU guest with a PPP-capable kernel, Debian's sstpc and pppd, for real-client tests.

sstpd negotiates PPP in userspace, so the machines it runs on need no kernel PPP. The
reference Linux client (``sstpc`` from Debian's sstp-client, which hands the PPP stream to
``pppd``) does need ``/dev/ppp``, so it runs in a small Debian 12 guest booted here.

Library use::

    from tests.realclient import guest
    guest.build()                 # no-op when the cached image matches the recipe
    g = guest.boot()              # returns once ssh works (~8-15 s under TCG)
    g.run("ip -br addr")          # CompletedProcess (text, never raises unless check=True)
    g.stop()

Command line (as root)::

    python3 -m tests.realclient.guest build [--force]
    python3 -m tests.realclient.guest boot          # VM stays up in the background
    python3 -m tests.realclient.guest ssh [CMD...]   # interactive shell, or run CMD
    python3 -m tests.realclient.guest status
    python3 -m tests.realclient.guest stop

Networks (everything in 10.231.0.0/16, nothing leaves this machine)::

    guest eth1 10.231.40.2/24 --- tap sstpdrc-tap 10.231.40.1       [netns "sstpdrc"]
                                  veth sstpdrc-n 10.231.41.2
                                       |
                                  veth sstpdrc-h 10.231.41.1        [root netns]
    guest eth0 10.231.50.15/24 -- QEMU user networking, restrict=on: only the ssh hostfwd
                                  127.0.0.1:<port> -> guest:22, no outbound connections

The server under test runs in the root namespace and listens on SERVER_IP (10.231.41.1) or
0.0.0.0; the guest reaches it over eth1 through the netns, which forwards between the tap and
the veth and has no other route. The root namespace gets one route (10.231.40.0/24 via the
veth); its ip_forward setting is not touched. Alternatively a server started inside the netns
(``ip netns exec sstpdrc ...``) is reachable at NETNS_IP (10.231.40.1).

State: the image lives in CACHE_DIR (SSTPD_GUEST_DIR, default /var/tmp/sstpd-guest) and is
rebuilt only when missing or when its recipe hash changes; per-boot files (qcow2 overlay,
console log, qemu pid) in CACHE_DIR/run. One guest per machine: the netns, interface names and
addresses are fixed. Needs root (debootstrap, netns, tap).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import lzma
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

# --------------------------------------------------------------------------- configuration

CACHE_DIR = Path(os.environ.get("SSTPD_GUEST_DIR", "/var/tmp/sstpd-guest"))
MIRROR = os.environ.get("SSTPD_GUEST_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
# minbase + what the SSTP client tests need; no systemd/udev: the guest's PID 1 is GUEST_INIT.
PACKAGES = (
    "linux-image-amd64",
    "kmod",
    "busybox-static",
    "ppp",
    "sstp-client",
    "iperf3",
    "openssh-server",
    "iproute2",
    "iputils-ping",
    "python3",
    "procps",
    "ca-certificates",
    "socat",
    "tcpdump",
)
# Bump when the build steps change in a way the hashed inputs below do not show.
RECIPE_VERSION = 1

# Host-side names and addresses (see the module docstring).
NETNS = "sstpdrc"
TAP = "sstpdrc-tap"
VETH_ROOT = "sstpdrc-h"
VETH_NS = "sstpdrc-n"
GUEST_NET = "10.231.40.0/24"
NETNS_IP = "10.231.40.1"  # tap side in the netns
GUEST_IP = "10.231.40.2"  # guest eth1
VETH_NET = "10.231.41.0/30"
SERVER_IP = "10.231.41.1"  # root-namespace end of the veth: the server listens here
VETH_NS_IP = "10.231.41.2"
MGMT_NET = "10.231.50.0/24"  # QEMU user networking (inside QEMU only)
MGMT_HOST = "10.231.50.2"
MGMT_GUEST_IP = "10.231.50.15"
MGMT_MAC = "52:54:00:e7:32:01"
TEST_MAC = "52:54:00:e7:32:02"

READY_MARKER = "SSTPD-GUEST-READY"
GUEST_INIT_PATH = "/sbin/sstpd-guest-init"

# Modules the initramfs loads to mount the root disk (dependencies are added from modules.dep).
INITRD_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")

# PID 1 of the guest (kernel command line init=GUEST_INIT_PATH): no systemd, no udev, just
# the mounts, the modules the client needs, a static network, sshd and a reaper.
GUEST_INIT = r"""#!/bin/sh
# sstpd test guest: PID 1. Network from the kernel command line:
#   sstpd.net=MAC,ADDR/PREFIX (repeatable)   sstpd.route=NET,GATEWAY (repeatable)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/null >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
for l in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2; do
    [ -e "/dev/${l%%:*}" ] || ln -s "${l#*:}" "/dev/${l%%:*}"
done
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
mkdir -p /run/lock /run/sshd
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -o remount,rw,noatime /
hostname sstpd-guest
# ppp_generic creates /dev/ppp (devtmpfs); sch_netem for sstpc.connect()'s delay
modprobe -a virtio_net virtio_rng ppp_generic ppp_async sch_netem
ip link set lo up
for w in $(cat /proc/cmdline); do
    case "$w" in
    sstpd.net=*)
        v=${w#sstpd.net=}; mac=${v%%,*}; addr=${v#*,}; dev=
        for _ in $(seq 100); do
            for d in /sys/class/net/*; do
                [ "$(cat "$d/address" 2>/dev/null)" = "$mac" ] && dev=${d##*/}
            done
            [ -n "$dev" ] && break
            sleep 0.05
        done
        if [ -n "$dev" ]; then
            ip addr add "$addr" dev "$dev" && ip link set "$dev" up &&
                echo "sstpd-guest: $dev $addr"
        else
            echo "sstpd-guest: no NIC with MAC $mac"
        fi ;;
    sstpd.route=*)
        v=${w#sstpd.route=}; ip route add "${v%,*}" via "${v#*,}" ;;
    esac
done
/usr/sbin/sshd
echo "SSTPD-GUEST-READY uptime=$(cut -d' ' -f1 /proc/uptime)"
# PID 1 must stay and reap orphans (sstpc, pppd and ssh sessions leave some)
exec python3 -S -c '
import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.5)
'
"""

# /init of the initramfs: load the root-disk modules, mount /dev/vda, switch to the real root.
INITRD_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod "/lib/modules/$m"; done
root=/dev/vda init=/sbin/init
for w in $(cat /proc/cmdline); do
    case "$w" in root=*) root=${w#root=} ;; init=*) init=${w#init=} ;; esac
done
for _ in $(seq 200); do [ -b "$root" ] && break; sleep 0.05; done
if ! mount -t ext4 -o rw,noatime "$root" /newroot; then
    echo "sstpd-guest initramfs: cannot mount $root"; exec sh
fi
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot "$init"
"""

GUEST_FILES = {
    "etc/hostname": "sstpd-guest\n",
    "etc/hosts": (
        "127.0.0.1 localhost\n127.0.1.1 sstpd-guest\n"
        f"{SERVER_IP} sstpd-host\n{NETNS_IP} sstpd-netns\n"
    ),
    "etc/fstab": "/dev/vda / ext4 rw,noatime 0 1\n",
    # no DNS, no default route: the guest talks to the harness networks only
    "etc/resolv.conf": "",
    "etc/ssh/sshd_config.d/sstpd-guest.conf": (
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n"
        "MaxSessions 64\nMaxStartups 64\n"
    ),
    # every pppd option comes from the sstpc command line (tests/realclient/sstpc.py)
    "etc/ppp/options": "# sstpd test guest: options are given on the command line\n",
}

# recipe hash inputs: everything that shapes the image
_ROOTFS_RECIPE = {"suite": SUITE, "packages": PACKAGES, "version": RECIPE_VERSION}
_IMAGE_RECIPE = {
    **_ROOTFS_RECIPE,
    "init": GUEST_INIT,
    "initrd_init": INITRD_INIT,
    "files": GUEST_FILES,
    "initrd_modules": INITRD_MODULES,
    "init_path": GUEST_INIT_PATH,
}


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


ROOTFS_HASH = _hash(_ROOTFS_RECIPE)
RECIPE_HASH = _hash(_IMAGE_RECIPE)

IMAGE_FILES = ("vmlinux", "initrd.img", "rootfs.img", "id_ed25519", "recipe")


class GuestError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[sstpd-guest {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _sh(*cmd: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, text=True, **kw)  # type: ignore[call-overload,no-any-return]


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """Serialise builds and boots between processes sharing a cache dir."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- build


def image_current(cache_dir: Path | None = None) -> bool:
    d = Path(cache_dir or CACHE_DIR)
    if not all((d / f).exists() for f in IMAGE_FILES):
        return False
    return (d / "recipe").read_text().strip() == RECIPE_HASH


def build(cache_dir: Path | None = None, force: bool = False) -> Path:
    """Build the guest image into cache_dir unless a current one is there. Returns cache_dir.

    Two levels: the debootstrapped root tree (cache_dir/rootfs, ~100 s) is redone only when
    the package set changes; the images (kernel, initramfs, ext4 rootfs, ~10 s) whenever any
    part of the recipe changes.
    """
    d = Path(cache_dir or CACHE_DIR)
    if os.geteuid() != 0:
        raise GuestError("building the guest needs root (debootstrap, chroot)")
    with _locked(d):
        if not force and image_current(d):
            return d
        t0 = time.monotonic()
        rootfs = d / "rootfs"
        stamp = rootfs / ".sstpd-rootfs-hash"
        if force or not stamp.exists() or stamp.read_text().strip() != ROOTFS_HASH:
            _debootstrap(d, rootfs)
            stamp.write_text(ROOTFS_HASH + "\n")
        _make_images(d, rootfs)
        (d / "recipe").write_text(RECIPE_HASH + "\n")
        _log(f"guest image built in {time.monotonic() - t0:.1f}s ({d})")
        return d


def _debootstrap(d: Path, rootfs: Path) -> None:
    t0 = time.monotonic()
    new = d / "rootfs.new"
    for p in (new, rootfs):
        if p.exists():
            shutil.rmtree(p)
    debs = d / "debs"  # downloaded .debs, reused by later rebuilds
    debs.mkdir(parents=True, exist_ok=True)
    logf = d / "debootstrap.log"
    _log(f"debootstrap {SUITE} minbase + {len(PACKAGES)} packages (log: {logf})")
    # INITRD=No: the kernel's postinst hook skips update-initramfs (we build our own initramfs)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "INITRD": "No",
        "DEBIAN_FRONTEND": "noninteractive",
    }
    with open(logf, "w") as log:
        r = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                f"--cache-dir={debs}",
                SUITE,
                str(new),
                MIRROR,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
    if r.returncode != 0:
        tail = logf.read_text(errors="replace").splitlines()[-25:]
        raise GuestError("debootstrap failed:\n" + "\n".join(tail))
    # trim what nobody reads in the guest: smaller tree, faster mkfs
    for sub in (
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "var/cache/apt",
        "var/lib/apt/lists",
    ):
        shutil.rmtree(new / sub, ignore_errors=True)
        (new / sub).mkdir(parents=True, exist_ok=True)
    for f in (new / "boot").glob("initrd.img*"):
        f.unlink()
    new.rename(rootfs)
    _log(f"debootstrap done in {time.monotonic() - t0:.1f}s")


def _kernel_version(rootfs: Path) -> str:
    vers = sorted(
        (p.name.removeprefix("vmlinuz-") for p in (rootfs / "boot").glob("vmlinuz-*")),
        key=lambda v: [int(x) if x.isdigit() else x for x in v.replace("-", ".").split(".")],
    )
    if not vers:
        raise GuestError(f"no kernel in {rootfs}/boot")
    return vers[-1]


def _extract_vmlinux(vmlinuz: Path, out: Path) -> None:
    """vmlinuz -> vmlinux: Debian's bzImage carries the kernel as an xz stream. The result is
    an ELF with a PVH entry point that QEMU boots directly (no BIOS, no real-mode setup, no
    decompressor: seconds faster under TCG)."""
    data = vmlinuz.read_bytes()
    i = data.find(b"\xfd7zXZ\x00")
    if i < 0:
        raise GuestError(f"no xz payload in {vmlinuz}")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[i:])
    if not elf.startswith(b"\x7fELF"):
        raise GuestError(f"xz payload of {vmlinuz} is not an ELF")
    out.write_bytes(elf)


def _module_closure(moddir: Path, names: Sequence[str]) -> list[Path]:
    """Module files for names and their dependencies (modules.dep, plus softdep pre:),
    dependencies first; built-in modules are skipped."""
    dep: dict[str, tuple[str, list[str]]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        base = path.rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_")
        dep[base] = (path, deps.split())
    builtin = {
        p.rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_")
        for p in (moddir / "modules.builtin").read_text().split()
    }
    soft: dict[str, list[str]] = {}
    sd = moddir / "modules.softdep"
    if sd.exists():
        for line in sd.read_text().splitlines():
            w = line.split()
            if len(w) > 2 and w[0] == "softdep":
                pre = w[w.index("pre:") + 1 :] if "pre:" in w else []
                soft[w[1].replace("-", "_")] = [x for x in pre if not x.endswith(":")]
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in dep:
            raise GuestError(f"module {name} not found in {moddir}")
        for s in soft.get(name, []):
            if s.replace("-", "_") in dep:
                visit(s)
        path, deps = dep[name]
        for p in deps:
            visit(p.rsplit("/", 1)[-1].split(".ko")[0])
        order.append(moddir / path)

    for n in names:
        visit(n)
    return order


def _cpio_newc(entries: Sequence[tuple[str, int, bytes, int]]) -> bytes:
    """A newc cpio archive from (name, mode, data, rdev) entries (no cpio binary needed)."""
    out = bytearray()

    def add(name: str, mode: int, data: bytes, rdev: int, ino: int) -> None:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{v:08x}"
            for v in (
                ino,
                mode,
                0,
                0,
                1,
                0,
                len(data),
                0,
                0,
                os.major(rdev),
                os.minor(rdev),
                len(nb),
                0,
            )
        )
        out.extend(hdr.encode() + nb)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, rdev) in enumerate(entries, 1):
        add(name, mode, data, rdev, ino)
    add("TRAILER!!!", 0, b"", 0, 0)
    return bytes(out)


def _make_initrd(rootfs: Path, kver: str, out: Path) -> None:
    moddir = rootfs / "lib/modules" / kver
    mods = _module_closure(moddir, INITRD_MODULES)
    d, f, x = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFREG | 0o755
    entries: list[tuple[str, int, bytes, int]] = [
        (n, d, b"", 0) for n in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules")
    ]
    entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", os.makedev(5, 1)))
    entries.append(("bin/busybox", x, (rootfs / "bin/busybox").read_bytes(), 0))
    entries.append(("init", x, INITRD_INIT.encode(), 0))
    names = []
    for m in mods:
        data = m.read_bytes()
        name = m.name
        if name.endswith(".xz"):
            data, name = lzma.decompress(data), name[:-3]
        elif name.endswith(".zst"):
            data = subprocess.run(["zstd", "-dc", str(m)], capture_output=True, check=True).stdout
            name = name[:-4]
        entries.append((f"lib/modules/{name}", f, data, 0))
        names.append(name)
    entries.append(("modules.order", f, ("\n".join(names) + "\n").encode(), 0))
    out.write_bytes(_cpio_newc(entries))


def _make_images(d: Path, rootfs: Path) -> None:
    t0 = time.monotonic()
    kver = _kernel_version(rootfs)
    tmp = d / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _extract_vmlinux(rootfs / f"boot/vmlinuz-{kver}", tmp / "vmlinux")
    _make_initrd(rootfs, kver, tmp / "initrd.img")
    # configuration (idempotent: rewritten at every image build)
    for rel, text in GUEST_FILES.items():
        p = rootfs / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    init = rootfs / GUEST_INIT_PATH.lstrip("/")
    init.write_text(GUEST_INIT)
    init.chmod(0o755)
    key = d / "id_ed25519"
    if not key.exists():
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sstpd-guest", "-f", str(key))
    ssh_dir = rootfs / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    # raw ext4 image straight from the tree (no loop device, no mount); booted via a qcow2 overlay
    used_mb = int(_sh("du", "-sm", str(rootfs), capture_output=True).stdout.split()[0])
    _sh(
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        "sstpdroot",
        "-E",
        "root_owner=0:0",
        "-d",
        str(rootfs),
        str(tmp / "rootfs.img"),
        f"{used_mb + 768}M",
        stdout=subprocess.DEVNULL,
    )
    (tmp / "kernel-version").write_text(kver + "\n")
    for n in ("vmlinux", "initrd.img", "rootfs.img", "kernel-version"):
        (tmp / n).replace(d / n)
    tmp.rmdir()
    _log(f"images made in {time.monotonic() - t0:.1f}s (kernel {kver}, rootfs {used_mb} MB)")


# --------------------------------------------------------------------------- host network


def _netns_exists() -> bool:
    return Path(f"/run/netns/{NETNS}").exists()


def net_up() -> None:
    """Create the netns and the veth to the root namespace (idempotent)."""
    if not _netns_exists():
        _sh("ip", "netns", "add", NETNS)
        _sh("ip", "-n", NETNS, "link", "set", "lo", "up")
        _sh("ip", "netns", "exec", NETNS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    if _sh("ip", "link", "show", VETH_ROOT, check=False, capture_output=True).returncode != 0:
        _sh("ip", "-n", NETNS, "link", "del", VETH_NS, check=False, capture_output=True)
        _sh("ip", "link", "add", VETH_ROOT, "type", "veth", "peer", "name", VETH_NS, "netns", NETNS)
    _sh("ip", "addr", "replace", f"{SERVER_IP}/30", "dev", VETH_ROOT)
    _sh("ip", "link", "set", VETH_ROOT, "up")
    _sh("ip", "-n", NETNS, "addr", "replace", f"{VETH_NS_IP}/30", "dev", VETH_NS)
    _sh("ip", "-n", NETNS, "link", "set", VETH_NS, "up")
    _sh("ip", "route", "replace", GUEST_NET, "via", VETH_NS_IP)


def net_down() -> None:
    _sh("ip", "route", "del", GUEST_NET, "via", VETH_NS_IP, check=False, capture_output=True)
    _sh("ip", "link", "del", VETH_ROOT, check=False, capture_output=True)
    if _netns_exists():
        pids = _sh("ip", "netns", "pids", NETNS, check=False, capture_output=True).stdout.split()
        if pids:
            _log(f"processes still in netns {NETNS}: {' '.join(pids)} (left alone)")
        _sh("ip", "netns", "del", NETNS, check=False)


# --------------------------------------------------------------------------- VM


def resolve_accel(accel: str | None = None) -> str:
    """tcg unless real KVM is there. /dev/kvm can be kvm_pvm, a paravirtual nested KVM on which
    ordinary guests hang or crawl: KVM only when the CPU shows vmx/svm and kvm_pvm is absent."""
    accel = accel or os.environ.get("SSTPD_GUEST_ACCEL", "auto")
    if accel in ("tcg", "kvm"):
        return accel
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "tcg"
    if ("vmx" in flags or "svm" in flags) and not Path("/sys/module/kvm_pvm").exists():
        return "kvm"
    return "tcg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Guest:
    """A booted guest (or one to boot). One per machine (fixed netns/tap names)."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        mem: int = 512,
        smp: int = 2,
        accel: str | None = None,
    ) -> None:
        self.dir = Path(cache_dir or CACHE_DIR)
        self.run_dir = self.dir / "run"
        self.mem, self.smp, self.accel = mem, smp, resolve_accel(accel)
        self.ssh_port = 0
        self.pid = 0
        self.boot_seconds = 0.0
        self._load_state()

    # state shared between processes (CLI boot, then stop/ssh from another process)
    def _load_state(self) -> None:
        try:
            st = json.loads((self.run_dir / "state.json").read_text())
        except (OSError, ValueError):
            return
        self.ssh_port, self.pid = int(st["ssh_port"]), int(st["pid"])

    def _save_state(self) -> None:
        (self.run_dir / "state.json").write_text(
            json.dumps({"ssh_port": self.ssh_port, "pid": self.pid, "accel": self.accel})
        )

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    def running(self) -> bool:
        if not self.pid:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        try:  # the pid may have been reused: check it is our qemu
            return str(self.run_dir) in Path(f"/proc/{self.pid}/cmdline").read_text()
        except OSError:
            return False

    def boot(self, timeout: float = 240) -> Guest:
        if os.geteuid() != 0:
            raise GuestError("booting the guest needs root (netns, tap)")
        if not image_current(self.dir):
            raise GuestError(f"no current guest image in {self.dir} (run build() first)")
        if self.running():
            raise GuestError(f"guest already running (qemu pid {self.pid}); stop it first")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for n in ("disk.qcow2", "console.log", "qemu.pid", "state.json", "ssh.ctl"):
            (self.run_dir / n).unlink(missing_ok=True)
        net_up()
        _sh("ip", "link", "del", TAP, check=False, capture_output=True)  # leftover of a crash
        _sh(
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            str(self.dir / "rootfs.img"),
            str(self.run_dir / "disk.qcow2"),
        )
        append = " ".join(
            [
                "root=/dev/vda",
                "rw",
                "console=ttyS0,115200",
                "quiet",
                "loglevel=4",
                "mitigations=off",
                "net.ifnames=0",
                f"init={GUEST_INIT_PATH}",
                f"sstpd.net={MGMT_MAC},{MGMT_GUEST_IP}/24",
                f"sstpd.net={TEST_MAC},{GUEST_IP}/24",
                f"sstpd.route={VETH_NET},{NETNS_IP}",
            ]
        )
        if self.accel == "kvm":
            accel, cpu = ["-accel", "kvm"], "host"
        else:  # multi-threaded TCG: 2 vCPUs roughly double the tunnel throughput of 1
            accel, cpu = ["-accel", "tcg,thread=multi,tb-size=256"], "max"
        t0 = time.monotonic()
        for _ in range(5):  # the ssh port is picked free but might be taken meanwhile
            self.ssh_port = int(os.environ.get("SSTPD_GUEST_SSH_PORT", 0)) or _free_port()
            # management NIC: user-mode networking with restrict=on (the guest cannot open any
            # connection through it); only the ssh port forward from host loopback
            mgmt = (
                f"user,id=mgmt,restrict=on,ipv6=off,net={MGMT_NET},host={MGMT_HOST},"
                f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22"
            )
            cmd = [
                "qemu-system-x86_64",
                "-name",
                "sstpd-guest",
                "-machine",
                "pc",
                *accel,
                "-cpu",
                cpu,
                "-smp",
                str(self.smp),
                "-m",
                str(self.mem),
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-kernel",
                str(self.dir / "vmlinux"),
                "-initrd",
                str(self.dir / "initrd.img"),
                "-append",
                append,
                "-drive",
                f"file={self.run_dir / 'disk.qcow2'},if=virtio,format=qcow2,cache=unsafe",
                "-netdev",
                mgmt,
                "-device",
                f"virtio-net-pci,netdev=mgmt,mac={MGMT_MAC}",
                "-netdev",
                f"tap,id=test,ifname={TAP},script=no,downscript=no",
                "-device",
                f"virtio-net-pci,netdev=test,mac={TEST_MAC}",
                "-device",
                "virtio-rng-pci",
                "-serial",
                f"file:{self.console_log}",
                "-pidfile",
                str(self.run_dir / "qemu.pid"),
                "-daemonize",
            ]
            r = _sh(*cmd, check=False, capture_output=True)
            if r.returncode == 0:
                break
            if "hostfwd" not in r.stderr or "SSTPD_GUEST_SSH_PORT" in os.environ:
                raise GuestError(f"qemu failed: {r.stderr.strip()}")
        else:
            raise GuestError(f"qemu failed: {r.stderr.strip()}")
        self.pid = int((self.run_dir / "qemu.pid").read_text())
        self._save_state()
        try:  # from here on a failure must not leave qemu (and its tap) behind
            # qemu created the tap in the root namespace; the guest's test NIC is in the netns
            _sh("ip", "link", "set", TAP, "netns", NETNS)
            _sh("ip", "-n", NETNS, "addr", "add", f"{NETNS_IP}/24", "dev", TAP)
            _sh("ip", "-n", NETNS, "link", "set", TAP, "up")
            _log(
                f"qemu pid {self.pid} ({self.accel}, {self.smp} vCPU, {self.mem} MB), "
                f"ssh 127.0.0.1:{self.ssh_port}"
            )
            self._wait_ready(t0, timeout)
        except BaseException:
            self.stop()
            raise
        self.boot_seconds = time.monotonic() - t0
        _log(f"guest ready in {self.boot_seconds:.1f}s")
        return self

    def _wait_ready(self, t0: float, timeout: float) -> None:
        while True:
            if not self.running():
                raise GuestError("qemu exited during boot:\n" + self._console_tail())
            try:
                ready = READY_MARKER in self.console_log.read_text(errors="replace")
            except OSError:
                ready = False
            if ready and self._ssh(["true"], mux=False, timeout=20).returncode == 0:
                break
            if time.monotonic() - t0 > timeout:
                raise GuestError(f"guest not ready after {timeout}s:\n" + self._console_tail())
            time.sleep(0.3)
        # one multiplexed ssh connection for all later commands: a new ssh handshake costs
        # ~0.5 s of emulated crypto in a TCG guest
        subprocess.run(
            [
                "ssh",
                *self.ssh_options(mux=False),
                "-o",
                "ControlMaster=yes",
                "-o",
                f"ControlPath={self.run_dir / 'ssh.ctl'}",
                "-o",
                "ControlPersist=yes",
                "-f",
                "-N",
                "root@127.0.0.1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )

    def _console_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.console_log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no console log)"

    def ssh_options(self, mux: bool = True) -> list[str]:
        opts = [
            "-i",
            str(self.dir / "id_ed25519"),
            "-p",
            str(self.ssh_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "BatchMode=yes",
            "-o",
            "ServerAliveInterval=10",
        ]
        if mux:  # use the master when it is there, else connect directly
            opts += ["-o", "ControlMaster=no", "-o", f"ControlPath={self.run_dir / 'ssh.ctl'}"]
        return opts

    def _ssh(
        self,
        argv: Sequence[str],
        *,
        mux: bool = True,
        timeout: float | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", *self.ssh_options(mux), "root@127.0.0.1", "--", *argv],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        check: bool = False,
        timeout: float = 300,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run cmd in the guest as root over ssh. A string goes to the guest's shell as is; a
        sequence is quoted. Returns the CompletedProcess (stdout/stderr as text)."""
        if not self.running():
            raise GuestError("guest is not running")
        line = cmd if isinstance(cmd, str) else shlex.join(cmd)
        r = self._ssh([line], timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise subprocess.CalledProcessError(r.returncode, line, r.stdout, r.stderr)
        return r

    def stop(self) -> None:
        """Stop the VM (the disk is a throw-away overlay, so qemu is simply terminated) and
        remove the tap; the netns stays for the next boot (net_down() removes it)."""
        subprocess.run(
            ["ssh", *self.ssh_options(), "-O", "exit", "root@127.0.0.1"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        if self.running():
            os.kill(self.pid, signal.SIGTERM)
            for _ in range(50):
                if not self.running():
                    break
                time.sleep(0.1)
            else:
                os.kill(self.pid, signal.SIGKILL)
        self.pid = 0
        for n in ("state.json", "qemu.pid", "ssh.ctl", "disk.qcow2"):
            (self.run_dir / n).unlink(missing_ok=True)

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def boot(cache_dir: Path | None = None, **kw: object) -> Guest:
    """Boot the (already built) guest; returns once ssh works."""
    return Guest(cache_dir, **kw).boot()  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m tests.realclient.guest",
        description="sstpd real-client test guest (needs root)",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the image unless a current one is cached")
    b.add_argument("--force", action="store_true", help="rebuild everything (debootstrap too)")
    sub.add_parser("boot", help="build if needed, boot, leave the VM running in the background")
    sub.add_parser("stop", help="stop the VM")
    sub.add_parser("status", help="image and VM state")
    sub.add_parser("net-down", help="stop the VM and remove the netns and veth")
    s = sub.add_parser("ssh", help="ssh into the guest (interactive without CMD)")
    s.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    g = Guest()
    if a.cmd == "build":
        build(force=a.force)
    elif a.cmd == "boot":
        build()
        g.boot()
        print(f"guest up: ssh port {g.ssh_port}, server address {SERVER_IP}")
    elif a.cmd == "stop":
        g.stop()
    elif a.cmd == "net-down":
        g.stop()
        net_down()
    elif a.cmd == "status":
        print(f"cache dir: {g.dir}")
        print(
            f"image:     {'current' if image_current(g.dir) else 'missing or outdated'} "
            f"(recipe {RECIPE_HASH})"
        )
        vm = f"running, pid {g.pid}, ssh 127.0.0.1:{g.ssh_port}" if g.running() else "stopped"
        print(f"vm:        {vm}")
        print(f"netns:     {NETNS if _netns_exists() else 'none'}; accel {g.accel}")
        print(f"server:    listen on {SERVER_IP} (root netns) or {NETNS_IP} (in netns {NETNS})")
    elif a.cmd == "ssh":
        if not g.running():
            print("guest not running", file=sys.stderr)
            return 1
        cmd = ["ssh", *g.ssh_options(), "root@127.0.0.1"]
        if a.command:
            cmd += ["--", " ".join(a.command)]  # like ssh: the guest's shell parses it
        else:
            cmd.insert(1, "-t")
        os.execvp("ssh", cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
