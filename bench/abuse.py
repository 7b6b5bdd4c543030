#!/usr/bin/env python3
"""The hostile mix of issue 11 against a real daemon in network namespaces; prints figures.

    sudo flock /var/lock/sstpd-it.lock python3 bench/abuse.py

Two namespaces as in tests/integration (nothing leaves the machine; traffic goes only to
the namespaces' own addresses). The daemon runs with the default limits (``[limits]``
as documented in the README) except ``auth_fail_block_time``; the attacker uses other
addresses of the client namespace than the legitimate client. Phases:

1. one source: 5000 raw TCP connections and 1000 TLS slowloris connections (HTTP one
   byte a second); pending connections held (per source, total), time for a legitimate
   client to connect meanwhile, how the flood ended;
2. memory: 1000 raw pending connections from 20 addresses (the total cap); daemon RSS
   before/with them -> memory per pending connection;
3. 300 "authenticate, then drop before IPCP" connections;
4. password guessing from one source, sequential and 8 in parallel: answered guesses
   per second before the block, per minute after it;
5. pool, fds, RSS before and after everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sstpd import control  # noqa: E402
from tests.integration.netns import SERVER_IP, Daemon, Netns  # noqa: E402

ATTACKER = "10.231.100.3"
SPREAD = [f"10.231.100.{i}" for i in range(10, 30)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Bench:
    def __init__(self) -> None:
        self.net = Netns("sstpbn")
        self.tmp = Path(tempfile.mkdtemp(prefix="sstpd-abuse-"))

    def start(self) -> None:
        self.net.up()
        for addr in [ATTACKER, *SPREAD]:
            self.net.run(self.net.cli, "ip", "addr", "add", f"{addr}/24", "dev", "sti-c")
        d = Daemon(self.net, self.tmp, wrapper=["prlimit", "--nofile=1024:16384"])
        d.prepare()
        text = d.config.read_text().replace('level = "debug"', 'level = "info"')
        d.config.write_text(text + "\n[limits]\nauth_fail_block_time = 120.0\n")
        d.start()
        self.d = d
        assert d.proc is not None
        self.pid = d.proc.pid

    def stats(self) -> dict[str, Any]:
        return control.call(str(self.d.workdir / "control.sock"), "stats")

    def hostile(self, *args: str) -> subprocess.Popen[str]:
        return self.net.popen(
            self.net.cli,
            sys.executable,
            "-m",
            "tests.integration.hostile",
            *args,
            "--host",
            SERVER_IP,
            "--ca-file",
            str(self.d.cert),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def legit_connect(self) -> float:
        t0 = time.monotonic()
        res = self.net.client_tool("connect", *self.d.client_args(), "--timeout", "30")
        took = time.monotonic() - t0
        assert res["ok"] is True, res
        return took

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.stats()
            if st["pending"] == 0 and st["handshakes_in_progress"] == 0:
                return
            time.sleep(0.5)

    def snapshot(self) -> dict[str, int]:
        st = self.stats()
        return {
            "pool_in_use": st["pool_in_use"],
            "sessions": st["sessions"],
            "fds": fds(self.pid),
            "rss_kib": rss_kib(self.pid),
        }

    def run(self) -> None:
        self.start()
        before = self.snapshot()
        baseline_connect = self.legit_connect()
        print(f"legitimate connect, idle daemon: {baseline_connect:.2f} s")

        # 1. one source, 5000 raw + 1000 slowloris
        flood = self.hostile(
            "flood", "--raw", "5000", "--slow", "1000", "--source", ATTACKER, "--wait", "25"
        )
        assert flood.stdout is not None
        first = json.loads(flood.stdout.readline())
        st = self.stats()
        took = self.legit_connect()
        peak = self.stats()
        out, _err = flood.communicate(timeout=120)
        res = json.loads(out.strip().splitlines()[-1])
        print(
            f"flood from one source: 5000 raw + 1000 slowloris dialled in {first['seconds']} s "
            f"({first['failed']} failed at connect)"
        )
        print(
            f"  pending held: {st['pending']} total, {st['pending_sources']} source(s) "
            f"(limit per source {st['pending_per_source_limit']}); during the legit "
            f"connect: {peak['pending']}"
        )
        print(f"  legitimate client connected meanwhile in {took:.2f} s")
        print(
            f"  closed by the server: {res['closed_by_server']} of {res['connected']}, the "
            f"last after {res['max_lifetime']} s (limits.setup_timeout "
            f"{10.0:g} s)"
        )
        self.wait_idle()
        hs = self.stats()["handshakes"]
        keys = ("limit_per_source", "limit_total", "timeout_tls", "timeout_http", "tls_failed")
        print("  outcomes: " + ", ".join(f"{k} {hs[k]}" for k in keys))

        # 2. memory per pending connection: 1000 from 20 addresses (the total cap)
        rss0 = rss_kib(self.pid)
        flood = self.hostile(
            "flood", "--raw", "1000", "--source", ",".join(SPREAD), "--wait", "6"
        )
        assert flood.stdout is not None
        json.loads(flood.stdout.readline())
        time.sleep(1.5)
        held = self.stats()["pending"]
        rss1 = rss_kib(self.pid)
        flood.communicate(timeout=60)
        self.wait_idle()
        rss2 = rss_kib(self.pid)
        per = (rss1 - rss0) / max(held, 1)
        print(
            f"memory: {held} pending connections (20 sources): RSS {rss0 / 1024:.1f} -> "
            f"{rss1 / 1024:.1f} MiB = {per:.1f} KiB per pending connection; "
            f"{rss2 / 1024:.1f} MiB after they closed"
        )

        # 3. auth then drop before IPCP
        p = self.hostile("auth-drop", "--count", "300")
        out, _ = p.communicate(timeout=600)
        self.wait_idle()
        st = self.stats()
        print(
            f"auth-then-drop x300: {json.loads(out)['authenticated']} authenticated, pool in "
            f"use afterwards {st['pool_in_use']} (sessions {st['sessions']})"
        )

        # 4. password guessing from one source
        for parallel, source in ((1, ATTACKER), (8, SPREAD[0])):
            p = self.hostile(
                "guess",
                "--count",
                "40" if parallel > 1 else "14",
                "--parallel",
                str(parallel),
                "--user",
                f"victim{parallel}",
                "--source",
                source,
            )
            out, _err = p.communicate(timeout=900)
            res = json.loads(out.strip().splitlines()[-1])
            ev = res["events"]
            failed = [t for t, kind in ev if kind == "failed"]
            refused = [t for t, kind in ev if kind == "refused"]
            block_at = failed[-1] if failed else 0.0
            rate = len(failed) / block_at if block_at else 0.0
            after = res["seconds"] - block_at
            print(
                f"guessing, {parallel} connection(s) at a time from one source: "
                f"{len(failed)} answered guesses in {block_at:.1f} s ({rate:.2f}/s), then "
                f"blocked: {len(refused)} more attempts in {after:.1f} s refused, 0 answered "
                f"(0/min until limits.auth_fail_block_time ends)"
            )

        after_all = self.snapshot()
        print(
            "accounting before -> after: "
            + ", ".join(f"{k} {before[k]} -> {after_all[k]}" for k in before)
        )
        log = self.d.log_text()
        print(
            f"log: {len(log.splitlines())} lines, {log.count('Traceback')} tracebacks, "
            f"{log.count('refusing connections:')} 'refusing connections' summaries"
        )

    def stop(self) -> None:
        if getattr(self, "d", None) is not None:
            self.d.stop()
        self.net.down()


def main() -> int:
    if os.geteuid() != 0:
        print("bench/abuse.py: needs root (network namespaces, TUN)", file=sys.stderr)
        return 1
    b = Bench()
    try:
        b.run()
    finally:
        b.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
