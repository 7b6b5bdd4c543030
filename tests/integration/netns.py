"""Network namespaces and a running daemon for the integration tests.

Topology (all on this machine; nothing leaves it)::

    netns <prefix>-cli  veth 10.231.100.2/24  <-->  netns <prefix>-srv  veth 10.231.100.1/24
                                                      sstpd on 10.231.100.1:443, TUN sstp0
                                                      10.77.0.1, pool 10.77.0.0/24

The daemon is the real ``python3 -m sstpd serve`` in the server namespace with its own
config, certificate and users file in a temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVER_IP = "10.231.100.1"
CLIENT_IP = "10.231.100.2"
TUNNEL_IP = "10.77.0.1"
POOL = "10.77.0.0/24"
DNS = ["10.77.0.53", "10.77.0.54"]

USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


_instances = 0


def unique_prefix(base: str) -> str:
    """``<base>_<pid>_<n>``: namespace names no other fixture or test run uses, so a leftover
    of a failed test cannot break the next one. Namespaces of runs whose process is gone are
    removed on the way. (Only for namespace names: interface names inside a namespace need
    not be unique, and must stay under 16 characters.)"""
    global _instances
    reap_stale(base)
    _instances += 1
    return f"{base}_{_b36(os.getpid())}_{_b36(_instances)}"


def reap_stale(base: str) -> None:
    """Remove ``<base>_<pid>...`` namespaces (and what runs in them) of dead test runs."""
    try:
        names = sh("ip", "netns", "list", check=False).stdout.split()
    except FileNotFoundError:  # no iproute2 (a unit-test-only machine): nothing to reap
        return
    for ns in names:
        m = re.fullmatch(rf"{re.escape(base)}_([0-9a-z]+)_[0-9a-z]+-\S+", ns)
        if not m or Path(f"/proc/{int(m.group(1), 36)}").exists():
            continue
        kill_namespace(ns)


def kill_namespace(ns: str) -> None:
    """SIGKILL everything in network namespace ``ns`` and delete it."""
    for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    sh("ip", "netns", "del", ns, check=False)


def wait_for(
    what: str,
    check: Any,
    timeout: float = 30.0,
    *,
    interval: float = 0.2,
    detail: Callable[[], object] | None = None,
) -> Any:
    """Poll ``check()`` every ``interval`` seconds until it returns something true
    (returned), or fail naming ``what`` after ``timeout`` seconds, with ``detail()`` (the
    state that did not settle, a log tail) in the message when given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out waiting for {what}" + (f":\n{detail()}" if detail is not None else "")
    )


def sh(*cmd: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)  # type: ignore[call-overload, no-any-return]


def _in(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns] if ns else []


@dataclass
class RootNamespace:
    """A namespace by name ("" = the host's own, where the real-client guest reaches it)."""

    srv: str = ""

    def popen(self, ns: str, *cmd: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen([*_in(ns), *cmd], text=True, cwd=str(ROOT), **kw)  # type: ignore[call-overload, no-any-return]


@dataclass
class Netns:
    prefix: str
    srv: str = ""
    cli: str = ""

    def __post_init__(self) -> None:
        self.prefix = unique_prefix(self.prefix)
        self.srv, self.cli = f"{self.prefix}-srv", f"{self.prefix}-cli"

    def up(self) -> None:
        self.down()
        for ns in (self.srv, self.cli):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh(
            "ip",
            "link",
            "add",
            "sti-s",
            "netns",
            self.srv,
            "type",
            "veth",
            "peer",
            "name",
            "sti-c",
            "netns",
            self.cli,
        )
        sh("ip", "-n", self.srv, "addr", "add", f"{SERVER_IP}/24", "dev", "sti-s")
        sh("ip", "-n", self.cli, "addr", "add", f"{CLIENT_IP}/24", "dev", "sti-c")
        sh("ip", "-n", self.srv, "link", "set", "sti-s", "up")
        sh("ip", "-n", self.cli, "link", "set", "sti-c", "up")

    def down(self) -> None:
        for ns in (self.srv, self.cli):
            kill_namespace(ns)

    def run(
        self, ns: str, *cmd: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in namespace ``ns`` ("" = the root namespace)."""
        return sh(*_in(ns), *cmd, check=check, timeout=timeout, cwd=str(ROOT))

    def popen(self, ns: str, *cmd: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen([*_in(ns), *cmd], text=True, cwd=str(ROOT), **kw)  # type: ignore[call-overload, no-any-return]

    def client_tool(self, scenario: str, *args: str, timeout: float = 120) -> dict[str, object]:
        r = self.run(
            self.cli,
            sys.executable,
            "-m",
            "tests.integration.client_tool",
            scenario,
            *args,
            check=False,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise AssertionError(
                f"client_tool {scenario} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
            )
        return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def bulk_transfer(self, server_ip: str, direction: str, size: int) -> tuple[str, str]:
        """(receiver's, sender's) SHA-256 of a ``size``-byte TCP transfer from the client
        namespace to ``server_ip`` in the server namespace ("up") or back ("down"), with
        ``tests.integration.bulk`` on both ends."""
        bulk = (sys.executable, "-m", "tests.integration.bulk")
        args = (server_ip, "5201", direction, str(size))
        sink = self.popen(self.srv, *bulk, "serve", *args, stdout=subprocess.PIPE)
        assert sink.stdout is not None
        assert sink.stdout.readline().strip() == "ready"
        r = self.run(self.cli, *bulk, "client", *args)
        server, client = sink.communicate(timeout=60)[0].strip(), r.stdout.strip()
        assert len(client) == 64
        return (server, client) if direction == "up" else (client, server)


@contextlib.contextmanager
def namespaces(prefix: str) -> Iterator[Netns]:
    """A pair of network namespaces (``Netns``), up while the ``with`` block runs."""
    n = Netns(prefix)
    try:
        n.up()
        yield n
    finally:
        n.down()


@contextlib.contextmanager
def with_ipv6_host(prefix: str, server6: str, host6: str) -> Iterator[Netns]:
    """``namespaces(prefix)`` plus a third namespace, ``<prefix>-host`` (as ``n.host``),
    behind the server on an IPv6-only veth (``server6``/64 on the server's ``lan-s``,
    ``host6``/64 on ``lan-h``, the host's default route via the server, which forwards)."""
    with namespaces(prefix) as n:
        host = f"{n.prefix}-host"
        try:
            sh("ip", "netns", "add", host)
            sh("ip", "-n", host, "link", "set", "lo", "up")
            sh(
                *("ip", "link", "add", "lan-s", "netns", n.srv, "type", "veth"),
                *("peer", "name", "lan-h", "netns", host),
            )
            sh("ip", "-n", n.srv, "addr", "add", f"{server6}/64", "dev", "lan-s", "nodad")
            sh("ip", "-n", host, "addr", "add", f"{host6}/64", "dev", "lan-h", "nodad")
            sh("ip", "-n", n.srv, "link", "set", "lan-s", "up")
            sh("ip", "-n", host, "link", "set", "lan-h", "up")
            sh("ip", "-n", host, "-6", "route", "add", "default", "via", server6)
            n.run(n.srv, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            n.host = host  # type: ignore[attr-defined]
            yield n
        finally:
            kill_namespace(host)


@contextlib.contextmanager
def running(daemon: Daemon) -> Iterator[Daemon]:
    """``daemon`` prepared and started (ready), stopped at the end of the ``with`` block."""
    try:
        daemon.prepare()
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


def sstpd_connect_args(
    daemon: Daemon, workdir: Path, tun: str, *options: str, user: str = "alice"
) -> list[str]:
    """The command line of ``sstpd connect`` as ``user`` to ``daemon`` (its address, port
    and certificate) with TUN ``tun`` and ``options``; writes the password file it names,
    ``workdir/pw``. ``user`` may carry a Windows domain (``CORP\\carol``): it is sent so,
    and the password is that of the name after the backslash."""
    pw = workdir / "pw"
    pw.write_text(USERS[user.rpartition("\\")[2]] + "\n")
    return [
        *(sys.executable, "-m", "sstpd", "connect", f"{daemon.listen}:{daemon.port}"),
        *("--user", user, "--password-file", str(pw), "--ca-file", str(daemon.cert)),
        *("--tun", tun, *options),
    ]


def start_sstpd_connect(
    net: Netns,
    daemon: Daemon,
    workdir: Path,
    tun: str,
    *options: str,
    user: str = "alice",
    **popen: Any,
) -> subprocess.Popen[str]:
    """``sstpd connect`` (``sstpd_connect_args``) started in the client namespace; its
    stdout and stderr are pipes unless ``popen`` says otherwise (the first stdout line is
    the JSON the client prints once the tunnel is up). Stopping it is the caller's part:
    for a client that outlives a ``with`` block (the benchmarks)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    args = sstpd_connect_args(daemon, workdir, tun, *options, user=user)
    return net.popen(net.cli, *args, **popen)


@contextlib.contextmanager
def sstpd_connect(
    net: Netns, daemon: Daemon, workdir: Path, tun: str, *options: str, user: str = "alice"
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """``sstpd connect`` as ``user`` (alice unless said) from the client namespace to
    ``daemon`` with TUN ``tun``: (the process, its first JSON line: the tunnel is up).
    SIGTERM when the block ends; the caller checks the exit status (``returncode``) after
    it."""
    client = start_sstpd_connect(net, daemon, workdir, tun, *options, user=user)
    try:
        assert client.stdout is not None
        line = client.stdout.readline()
        assert line, client.stderr.read() if client.stderr else ""
        yield client, json.loads(line)
    finally:
        client.send_signal(signal.SIGTERM)
        client.wait(15)


@dataclass
class Daemon:
    net: Netns | RootNamespace
    workdir: Path
    extra_config: str = ""  # lines for [server]
    tunnel_config: str = ""  # lines for [tunnel]
    listen: str = SERVER_IP
    port: int = 443
    cert_names: list[str] = field(default_factory=list)
    tunnel_ip: str = TUNNEL_IP
    pool: str = POOL
    dns: list[str] = field(default_factory=lambda: list(DNS))
    interface: str = "sstp0"
    proc: subprocess.Popen[str] | None = None
    config: Path = field(init=False)
    cert: Path = field(init=False)
    log: Path = field(init=False)
    notify_messages: list[str] = field(default_factory=list)
    wrapper: list[str] = field(default_factory=list)  # e.g. ["prlimit", "--nofile=200:200"]
    # server.workers: the tests of one process (fds, RSS, per-source budgets) pin 1;
    # tests/integration/test_workers.py runs 2
    workers: int = 1

    def __post_init__(self) -> None:
        self.config = self.workdir / "sstpd.toml"
        self.cert = self.workdir / "tls" / "server.crt"
        self.log = self.workdir / "sstpd.log"

    def prepare(self) -> None:
        w = self.workdir
        (w / "tls").mkdir(parents=True, exist_ok=True)
        py = sys.executable
        sh(
            py,
            "-m",
            "sstpd",
            "cert",
            "--cert",
            str(self.cert),
            "--key",
            str(w / "tls" / "server.key"),
            "--cn",
            self.listen,
            "--san",
            self.listen,
            *[arg for name in self.cert_names for arg in ("--san", name)],
            "--force",
            cwd=str(ROOT),
        )
        for user, pw in USERS.items():
            sh(
                py,
                "-m",
                "sstpd",
                "user",
                "add",
                user,
                "--password-stdin",
                "--users-file",
                str(w / "users"),
                input=pw + "\n",
                cwd=str(ROOT),
            )
        self.config.write_text(f"""
[server]
listen = ["{self.listen}"]
port = {self.port}
certificate = "tls/server.crt"
key = "tls/server.key"
state_directory = "{w}"
handshake_timeout = 20.0
control_socket = "{w}/control.sock"
workers = {self.workers}
{self.extra_config}

[tunnel]
interface = "{self.interface}"
address = "{self.tunnel_ip}"
pool = "{self.pool}"
dns = {json.dumps(self.dns)}
{self.tunnel_config}

[auth]
users_file = "users"

[log]
level = "debug"
""")

    def start(self) -> None:
        notify = self.workdir / "notify.sock"
        if notify.exists():
            notify.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify))
        sock.settimeout(0.5)
        env = dict(os.environ, NOTIFY_SOCKET=str(notify), PYTHONPATH=str(ROOT))
        self.logf = open(self.log, "a")  # noqa: SIM115
        self.proc = self.net.popen(
            self.net.srv,
            *self.wrapper,
            sys.executable,
            "-m",
            "sstpd",
            "serve",
            "--config",
            str(self.config),
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    msg = sock.recv(4096).decode()
                except TimeoutError:
                    # exited (a config or TUN error), or too slow: fail now, not after 30 s
                    if self.proc.poll() is None and time.monotonic() < deadline:
                        continue
                    self.stop()
                    raise AssertionError(
                        "daemon did not become ready:\n" + self.log.read_text()
                    ) from None
                self.notify_messages.append(msg)
                if "READY=1" in msg:
                    break
        finally:
            sock.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.logf.close()
        return rc

    def log_text(self) -> str:
        return self.log.read_text()

    def wait_log(self, needle: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if needle in text:
                return text
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not in daemon log:\n{self.log_text()[-4000:]}")

    def stats(self) -> dict[str, Any]:
        """The daemon's ``stats`` answer over its control socket."""
        from sstpd import control

        return control.call(str(self.workdir / "control.sock"), "stats")

    def open_fds(self) -> int:
        """The daemon's open descriptors. Read a moment after the caller's last control
        request: the daemon closes its end of that connection asynchronously, and counting it
        would make a descriptor seem leaked (or the baseline one too high)."""
        assert self.proc is not None
        time.sleep(0.3)
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def client_args(self) -> list[str]:
        return ["--host", self.listen, "--port", str(self.port), "--ca-file", str(self.cert)]
