"""Debian's pebble (ACME test CA) and pebble-challtestsrv (its DNS) in the client
namespace of a ``Netns``, for the ACME tests.

pebble's validation authority connects to the address the DNS gives for the name (the
daemon, 10.231.100.1) on port 443 (TLS-ALPN-01) or 80 (HTTP-01). ``PEBBLE_VA_NOSLEEP``
removes its random delay, ``PEBBLE_WFE_NONCEREJECT=0`` and ``PEBBLE_AUTHZREUSE=0`` its
random nonce rejections and authorization reuse, so runs are deterministic.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.netns import (
    CLIENT_IP,
    ROOT,
    SERVER_IP,
    Daemon,
    Netns,
    RootNamespace,
    sh,
)

NAME = "sstp.example.test"
DIRECTORY = f"https://{CLIENT_IP}:14000/dir"
DNS_PORT = 8053


class Pebble:
    """pebble + pebble-challtestsrv in ``net``'s client namespace on ``address``; the test
    name resolves to ``target`` (the daemon). With a ``RootNamespace`` they run in the
    host's own namespace (pass address="127.0.0.1" and the daemon's address as target);
    ``ns`` names another namespace to run them in (with a ``RootNamespace``)."""

    def __init__(
        self,
        net: Netns | RootNamespace,
        workdir: Path,
        validity: int | None = None,
        address: str = CLIENT_IP,
        target: str = SERVER_IP,
        ns: str | None = None,
    ) -> None:
        self.validity = validity  # seconds of the certificates it issues (None: its default)
        self.address = address
        self.target = target
        self.directory = f"https://{address}:14000/dir"
        self.ns = ns if ns is not None else net.cli if isinstance(net, Netns) else ""
        self.net = net
        self.dir = workdir
        self.procs: list[subprocess.Popen[str]] = []
        self.tls_cert = workdir / "pebble.crt"

    def start(self) -> None:
        w = self.dir
        sh(
            sys.executable,
            "-m",
            "sstpd",
            "cert",
            "--cert",
            str(self.tls_cert),
            "--key",
            str(w / "pebble.key"),
            "--cn",
            self.address,
            "--san",
            self.address,
            "--force",
            cwd=str(ROOT),
        )
        (w / "pebble.json").write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"{self.address}:14000",
                        "managementListenAddress": f"{self.address}:15000",
                        "certificate": str(self.tls_cert),
                        "privateKey": str(w / "pebble.key"),
                        "httpPort": 80,
                        "tlsPort": 443,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                        **({"certificateValidityPeriod": self.validity} if self.validity else {}),
                    }
                }
            )
        )
        env = dict(
            os.environ,
            PEBBLE_VA_NOSLEEP="1",
            PEBBLE_WFE_NONCEREJECT="0",
            PEBBLE_AUTHZREUSE="0",
        )
        self.log = open(w / "pebble.log", "a")  # noqa: SIM115
        self.procs.append(
            self.net.popen(
                self.ns,
                "pebble-challtestsrv",
                "-dns01",
                f"{self.address}:{DNS_PORT}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"{self.address}:8055",
                "-defaultIPv4",
                self.target,
                "-defaultIPv6",
                "",
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
        )
        self.procs.append(
            self.net.popen(
                self.ns,
                "pebble",
                "-config",
                str(w / "pebble.json"),
                "-dnsserver",
                f"{self.address}:{DNS_PORT}",
                stdout=self.log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.root()
                return
            except (OSError, AssertionError):
                time.sleep(0.3)
        raise AssertionError("pebble did not start:\n" + (w / "pebble.log").read_text())

    def fetch(self, url: str, data: bytes | None = None) -> bytes:
        """GET/POST ``url`` from inside the client namespace."""
        code = (
            "import ssl,sys,urllib.request as u;"
            "c=ssl._create_unverified_context();"
            "d=sys.stdin.buffer.read() or None;"
            f"sys.stdout.buffer.write(u.urlopen({url!r},data=d,context=c,timeout=10).read())"
        )
        r = subprocess.run(
            [*(["ip", "netns", "exec", self.ns] if self.ns else []), sys.executable, "-c", code],
            input=data or b"",
            capture_output=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout

    def root(self) -> bytes:
        """pebble's root for the end-entity chain: new at every start."""
        return self.fetch(f"https://{self.address}:15000/roots/0")

    def dns_a(self, address: str | None) -> None:
        """Resolve NAME to ``address`` (None: back to the default, the daemon)."""
        if address is None:
            self.fetch(
                f"http://{self.address}:8055/clear-a", json.dumps({"host": NAME + "."}).encode()
            )
        else:
            body = {"host": NAME + ".", "addresses": [address]}
            self.fetch(f"http://{self.address}:8055/add-a", json.dumps(body).encode())

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []


def acme_section(pebble: Pebble, **keys: str | int | bool | list[str]) -> str:
    """The daemon's ``[acme]`` block ordering NAME from ``pebble`` (its directory, its TLS
    certificate as ``ca_file``), plus ``keys`` as TOML values (``challenge="http-01"``,
    ``retry_interval=600``; a key given here replaces the common one). It goes last in a
    ``Daemon``'s ``extra_config``, after any ``[server]`` lines."""
    values: dict[str, object] = {
        "names": [NAME],
        "directory": pebble.directory,
        "ca_file": str(pebble.tls_cert),
        **keys,
    }

    def toml(v: object) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else json.dumps(v)

    return "\n[acme]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in values.items())


def start_without_certificate(d: Daemon) -> None:
    """Prepare and start ``d`` with no certificate at all: it must serve a placeholder and
    order its certificate."""
    d.prepare()
    (d.workdir / "tls" / "server.crt").unlink()
    (d.workdir / "tls" / "server.key").unlink()
    d.start()


def ctl(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``sstpctl`` against ``d``'s control socket (a renewal waits, hence the timeout)."""
    r = subprocess.run(
        [sys.executable, "-m", "sstpd.ctl", "--socket", str(d.workdir / "control.sock"), *args],
        text=True,
        capture_output=True,
        cwd=str(ROOT),
        timeout=300,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"sstpctl {' '.join(args)}: {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def ctl_json(d: Daemon, *args: str) -> dict[str, Any]:
    return json.loads(ctl(d, "--json", *args).stdout)  # type: ignore[no-any-return]


def cert_state(d: Daemon) -> dict[str, Any]:
    """What ``sstpctl --json cert`` says about the daemon's certificate."""
    return ctl_json(d, "cert")


def wait_issued(d: Daemon, timeout: float = 90) -> dict[str, Any]:
    """The ``cert`` answer once the daemon serves a certificate from pebble."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ans = cert_state(d)
        if ans["certificate"] and not ans["certificate"]["self_signed"]:
            return ans
        time.sleep(0.5)
    raise AssertionError(f"no certificate from pebble:\n{d.log_text()[-5000:]}")


@contextlib.contextmanager
def pebble_running(p: Pebble) -> Iterator[Pebble]:
    """``p`` started for the ``with`` block (a module fixture's body), stopped after."""
    try:
        p.start()
        yield p
    finally:
        p.stop()


def root_file(p: Pebble, d: Daemon) -> Path:
    """pebble's root certificate in ``d``'s work directory, for clients to verify against."""
    path = d.workdir / "pebble-root.pem"
    path.write_bytes(p.root())
    return path
