"""Small helpers to build the scenario networks: named namespaces joined by veth pairs."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

from tests.integration.netns import ROOT, Daemon, kill_namespace, sh, unique_prefix


class Topology:
    """Namespaces ``<prefix>_<pid>_<n>-<name>`` (unique to this instance) with veth links;
    everything is removed by ``down``."""

    def __init__(self, prefix: str, names: Iterable[str]) -> None:
        self.prefix = unique_prefix(prefix)
        self.names = list(names)

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def up(self) -> None:
        self.down()
        for name in self.names:
            sh("ip", "netns", "add", self.ns(name))
            sh("ip", "-n", self.ns(name), "link", "set", "lo", "up")

    def down(self) -> None:
        for name in self.names:
            kill_namespace(self.ns(name))

    def link(self, a: str, a_dev: str, a_addr: str, b: str, b_dev: str, b_addr: str) -> None:
        """veth between namespaces ``a`` and ``b`` with addresses in CIDR notation."""
        sh(
            "ip",
            "link",
            "add",
            a_dev,
            "netns",
            self.ns(a),
            "type",
            "veth",
            "peer",
            "name",
            b_dev,
            "netns",
            self.ns(b),
        )
        for name, dev, addr in ((a, a_dev, a_addr), (b, b_dev, b_addr)):
            sh("ip", "-n", self.ns(name), "addr", "add", addr, "dev", dev)
            sh("ip", "-n", self.ns(name), "link", "set", dev, "up")

    def route(self, name: str, dst: str, via: str) -> None:
        sh("ip", "-n", self.ns(name), "route", "replace", dst, "via", via)

    def forward(self, name: str) -> None:
        sh("ip", "netns", "exec", self.ns(name), "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def run(self, name: str, *cmd: str, check: bool = True, timeout: float = 120) -> str:
        r = sh(
            "ip", "netns", "exec", self.ns(name), *cmd, check=False, cwd=str(ROOT), timeout=timeout
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"{cmd} in {name} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
            )
        return r.stdout

    def client_tool(self, name: str, scenario: str, *args: str) -> dict[str, object]:
        out = self.run(
            name,
            sys.executable,
            "-m",
            "tests.integration.client_tool",
            scenario,
            *args,
            timeout=240,
        )
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def client_args(d: Daemon, host: str, port: int, ca: str | None = None) -> list[str]:
    return ["--host", host, "--port", str(port), "--ca-file", ca or str(d.cert)]
