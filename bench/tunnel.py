"""Tunnel throughput benchmark: prints figures, asserts nothing. Run as root:

    python3 bench/tunnel.py [--seconds 10] [--parallel 1]

Sets up two network namespaces (tests/integration/netns.py), starts the daemon in one and
``sstpd connect`` with a TUN device in the other, then runs iperf3 through the tunnel in
both directions. Reports, per direction: Mbit/s (iperf3 receiver), packets/s through the
server's TUN device, and the CPU the daemon process and the client process used, as
CPU-seconds per GB carried.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.netns import (  # noqa: E402
    POOL,
    TUNNEL_IP,
    Daemon,
    Netns,
    start_sstpd_connect,
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tun_packets(net: Netns) -> tuple[int, int]:
    out = net.run(net.srv, "ip", "-s", "-j", "link", "show", "sstp0").stdout
    st = json.loads(out)[0]["stats64"]
    return st["rx"]["packets"], st["tx"]["packets"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_with_sessions(net: Netns, d: Daemon, sessions: int) -> float:
    """Peak RSS of the daemon while ``sessions`` clients (one process) are connected."""
    assert d.proc is not None
    tool = net.popen(
        net.cli,
        sys.executable,
        "-m",
        "tests.integration.client_tool",
        "many",
        *d.client_args(),
        "--sessions",
        str(sessions),
        "--hold",
        "3",
        stdout=subprocess.PIPE,
    )
    peak = 0.0
    while tool.poll() is None:
        peak = max(peak, rss_mib(d.proc.pid))
        time.sleep(0.2)
    out = tool.stdout.read() if tool.stdout else ""
    res = json.loads(out.strip().splitlines()[-1])
    assert res["opened"] == sessions, res
    return peak


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--parallel", type=int, default=1)
    a = ap.parse_args()
    net = Netns("sstpdb")
    net.up()
    work = Path(tempfile.mkdtemp(prefix="sstpd-bench-"))
    d = Daemon(net, work)
    d.extra_config = ""
    d.prepare()
    # the memory figures open 200 sessions at once from the one client address: room for
    # all their handshakes (limits.pending_per_source is 64 by default)
    d.config.write_text(d.config.read_text() + "\n[limits]\npending_per_source = 1000\n")
    d.start()
    assert d.proc is not None
    client = start_sstpd_connect(net, d, work, "sstpc0", "--route", POOL)
    try:
        assert client.stdout is not None
        info = client.stdout.readline()
        print(f"tunnel up: {info.strip()}")
        iperf = net.popen(
            net.srv,
            "iperf3",
            "-s",
            "-B",
            TUNNEL_IP,
            "-p",
            "5201",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        print(
            f"{'direction':<10}{'Mbit/s':>10}{'pkts/s':>12}{'server CPU%':>13}"
            f"{'server s/GB':>13}{'client s/GB':>13}"
        )
        for direction in ("upload", "download"):
            s0, c0, p0 = cpu_seconds(d.proc.pid), cpu_seconds(client.pid), tun_packets(net)
            t0 = time.monotonic()
            cmd = [
                "iperf3",
                "-c",
                TUNNEL_IP,
                "-p",
                "5201",
                "-t",
                str(a.seconds),
                "-J",
                "-P",
                str(a.parallel),
            ]
            if direction == "download":
                cmd.append("-R")
            r = net.run(net.cli, *cmd, timeout=a.seconds + 60)
            wall = time.monotonic() - t0
            s1, c1, p1 = cpu_seconds(d.proc.pid), cpu_seconds(client.pid), tun_packets(net)
            res = json.loads(r.stdout)["end"]["sum_received"]
            gbytes = res["bytes"] / 1e9
            mbps = res["bits_per_second"] / 1e6
            pkts = (p1[0] - p0[0]) if direction == "upload" else (p1[1] - p0[1])
            print(
                f"{direction:<10}{mbps:>10.0f}{pkts / wall:>12.0f}{(s1 - s0) / wall * 100:>12.0f}%"
                f"{(s1 - s0) / gbytes:>13.2f}{(c1 - c0) / gbytes:>13.2f}"
            )
        iperf.terminate()
        idle = rss_mib(d.proc.pid)
        print(f"daemon RSS: {idle:.1f} MiB with 1 session", end="")
        for n in (50, 200):
            print(f", {memory_with_sessions(net, d, n):.1f} MiB with {n + 1}", end="", flush=True)
        print()
    finally:
        client.send_signal(signal.SIGTERM)
        client.wait(15)
        d.stop()
        net.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
