"""``Held``: an ``ipv6_tool`` scenario run with ``--hold`` in the client namespace, driven
from the tests (root namespace): its first JSON line while it holds its tunnels open, its
result after a stdin line. Shared by the IPv6 integration tests (``test_ipv6``,
``test_workers_ipv6``, ``test_radius_ipv6``)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.integration.netns import ROOT, Daemon, Netns


class Held:
    """An ``ipv6_tool`` scenario run with ``--hold``: its first line while it holds the
    tunnels open, its result after a stdin line."""

    def __init__(self, net: Netns, d: Daemon, scenario: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [
                *("ip", "netns", "exec", net.cli, sys.executable),
                *("-m", "tests.integration.ipv6_tool", scenario, *d.client_args()),
                *args,
                "--hold",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise AssertionError(f"ipv6_tool {scenario} exited ({self.proc.returncode})")
        self.first: dict[str, Any] = json.loads(line)

    def finish(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.read()
        assert self.proc.wait(60) == 0
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
