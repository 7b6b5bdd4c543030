"""A benchmark daemon in the ``bp-`` namespaces and the session driver that talks to it.

``bench_daemon`` prepares the integration tests' ``Daemon`` (tests/integration/netns.py)
with a pool and ``max_sessions`` sized for thousands of sessions, the certificate key type
asked for, and the log at ``info`` (production's level: one line per connect and close, as
a real deployment pays). ``traced=True`` starts it under tracemalloc (bench/_traced_serve.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from sstpd import certs
from tests.integration.netns import SERVER_IP, Daemon, Netns

ROOT = Path(__file__).resolve().parents[1]
POOL, TUNNEL_IP = "10.96.0.0/16", "10.96.0.1"


class _TracedNet:
    """A Netns whose ``popen`` runs bench/_traced_serve.py instead of ``-m sstpd``."""

    def __init__(self, net: Netns) -> None:
        self._net = net

    def __getattr__(self, name: str) -> Any:
        return getattr(self._net, name)

    def popen(self, ns: str, *cmd: str, **kw: Any) -> subprocess.Popen[str]:
        args = list(cmd)
        if args[1:3] == ["-m", "sstpd"]:
            args[1:3] = [str(ROOT / "bench" / "_traced_serve.py")]
        return self._net.popen(ns, *args, **kw)


def bench_daemon(
    net: Netns,
    work: Path,
    *,
    max_sessions: int,
    key_type: str = "rsa",
    traced: bool = False,
    workers: int = 1,
    server_lines: str = "",
) -> Daemon:
    d = Daemon(
        _TracedNet(net) if traced else net,  # type: ignore[arg-type]
        work,
        extra_config=f"max_sessions = {max_sessions}",
        tunnel_ip=TUNNEL_IP,
        pool=POOL,
        workers=workers,
    )
    d.prepare()
    certs.generate_self_signed(
        str(d.cert),
        str(work / "tls" / "server.key"),
        common_name=SERVER_IP,
        sans=[SERVER_IP],
        key_type=key_type,  # type: ignore[arg-type]
    )
    text = d.config.read_text().replace('level = "debug"', 'level = "info"')
    # the pre-authentication budget is per source address, and every benchmark session
    # comes from the one client address: room for its concurrency (up to 1000 handshakes
    # in flight), else sessions would be refused by the flood protection
    text += "\n[limits]\npending_total = 2000\npending_per_source = 1000\n"
    if server_lines:  # e.g. tls_transport = "event-loop" (the benchmarks' --server)
        text = text.replace("[server]\n", f"[server]\n{server_lines}\n", 1)
    d.config.write_text(text)
    return d


class Driver:
    """bench/_sessions.py in the client namespace; ``cmd`` sends a line, returns the answer."""

    def __init__(self, net: Netns, daemon: Daemon) -> None:
        self.proc = net.popen(
            net.cli,
            sys.executable,
            str(ROOT / "bench" / "_sessions.py"),
            "--host",
            SERVER_IP,
            "--ca-file",
            str(daemon.cert),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def cmd(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline()
        if not out:
            raise RuntimeError(f"session driver exited ({self.proc.poll()}) on {line!r}")
        return json.loads(out)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
