"""sstpd against the C peer ocserv, side by side in one run: prints figures, asserts nothing.

    sudo python3 bench/peers.py [--runs 3] [--seconds 8] [--variants default,plain]

Two network namespaces (``bp-srv``, ``bp-cli``, joined by a veth). In ``bp-srv``: the
sstpd daemon (TLS 1.3 only, tunnel MTU 1400) and ocserv (TCP only: no UDP port, so no
DTLS; TLS 1.3 AES-256-GCM; MTU 1400; a plain password file), plus one iperf3 server. In
``bp-cli``: ``sstpd connect`` (default batching, then ``--record-per-packet``) or
openconnect, each with a TUN device. A single iperf3 TCP stream runs through the tunnel.
Several sstpd daemons run side by side (``--variants``; port 443 + i, ``sstp<i>``), so
figures with and without an optimisation come from the same run: by default
``default`` (the shipped configuration) and ``plain`` (read moderation and the TUN
offload off: the data path as it was before issue 15's goal 1); ``offload`` adds
``[tunnel] offload = true``; ``looptls`` serves TLS with uvloop's transport instead of
sstpd's own (``[server] tls_transport = "event-loop"``). A variant's lines go to
``[tunnel]``, or to ``[server]`` when they start with ``server.``.

Per measurement: server CPU = utime + stime of the server's whole process tree (ocserv
forks a security module and one worker per client; all are summed, reaped children
included) read from /proc before and after; bytes = iperf3's receiver count; packets =
the client TUN device's counter (the client's TUN has no offload, so it counts real
packets; the server's counts a coalesced super-packet once). Printed: CPU-seconds per
GB, µs of server CPU per packet, Mbit/s, and the ratio sstpd / ocserv; medians of
``--runs`` rounds. Each client gets a warm-up transfer before it is measured; the order
of the clients alternates between rounds; each measurement first waits (up to
``--quiet-timeout`` s) until the machine uses less than ``--max-busy`` cores with our
processes idle, and prints the load it ran at. openconnect always sends one TLS record
per packet, so ocserv's upload figure serves both upload rows. With ``--pin`` the servers
(every thread of sstpd, ocserv and ocserv's forks) run on CPU 0 alone and the clients,
iperf3 and everything else on the other CPUs, as if the clients were other machines.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402
    BusyMeter,
    loadavg,
    median,
    process_tree,
    tree_cpu,
    wait_quiet,
)
from tests.integration.netns import SERVER_IP, Daemon, Netns, start_sstpd_connect  # noqa: E402

# the sstpd daemons that run side by side: name -> [tunnel] lines (--variants)
VARIANTS = {
    "default": "",  # as shipped
    "plain": "read_moderation_bytes = 0\noffload = false",  # neither optimisation: before
    "offload": "offload = true",
    # uvloop's TLS transport instead of sstpd's own (aio.tlsstream), as before it existed
    "looptls": 'server.tls_transport = "event-loop"',
}


def variant_net(i: int) -> tuple[int, str, str, str]:
    """(port, server TUN, tunnel network, server tunnel address) of the i-th daemon."""
    return 443 + i, f"sstp{i}", f"10.{77 + 2 * i}.0.0/24", f"10.{77 + 2 * i}.0.1"


OC_NET, OC_PORT = "10.78.0.0/24", 4443
IPERF_PORT = 5201
PASSWORD = "alice-secret"
# ocserv's TUN MTU is the negotiated link MTU minus CSTP (8 B) and TLS 1.3 (22 B) overhead,
# minus 2 B of rounding: asking for tunnel MTU + 28 yields a TUN MTU equal to sstpd's
CSTP_OVERHEAD = 28

OPENCONNECT_SCRIPT = """#!/bin/sh
# minimal vpnc-script: address, MTU and one route; never touches resolv.conf
case "$reason" in
connect)
    ip link set dev "$TUNDEV" mtu "$INTERNAL_IP4_MTU" up
    ip addr add "$INTERNAL_IP4_ADDRESS/32" dev "$TUNDEV"
    ip route replace {net} dev "$TUNDEV"
    ;;
esac
exit 0
"""


def split_kind(kind: str, first: str = "") -> tuple[str, str]:
    """``sstpd-rpp/plain`` -> ("sstpd-rpp", "plain"); no suffix: the first variant."""
    base, _, mode = kind.partition("/")
    return base, mode or first


@dataclass
class Sample:
    cpu: float  # server CPU-seconds
    gbytes: float
    packets: int
    seconds: float
    busy: float  # machine busy cores during the run
    load: str
    client_cpu: float = 0.0  # the VPN client's CPU-seconds (openconnect / sstpd connect)

    @property
    def cpu_per_gb(self) -> float:
        return self.cpu / self.gbytes

    @property
    def us_per_packet(self) -> float:
        return self.cpu / self.packets * 1e6 if self.packets else float("nan")

    @property
    def client_per_gb(self) -> float:
        return self.client_cpu / self.gbytes

    @property
    def packet_bytes(self) -> float:
        return self.gbytes * 1e9 / self.packets if self.packets else float("nan")

    @property
    def mbps(self) -> float:
        return self.gbytes * 8e3 / self.seconds


@dataclass
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, key: str, s: Sample) -> None:
        self.samples.setdefault(key, []).append(s)

    def med(self, key: str, attr: str) -> float:
        return median([getattr(s, attr) for s in self.samples.get(key, [])])


def pin(root: int, cpus: set[int] | None) -> None:
    """Every thread of every process in ``root``'s tree onto ``cpus`` (None: leave)."""
    if cpus is None:
        return
    for pid in process_tree(root):
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                os.sched_setaffinity(int(tid), cpus)
        except (FileNotFoundError, ProcessLookupError):
            pass  # gone meanwhile


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.net = Netns("bp")
        self.work = Path(tempfile.mkdtemp(prefix="sstpd-peers-"))
        os.chmod(self.work, 0o755)  # ocserv's workers run as nobody
        self.results = Results()
        self.procs: list[subprocess.Popen[str]] = []
        self.variants: dict[str, str] = {}
        for item in a.variants.split(","):
            name, _, lines = item.partition(":")
            self.variants[name] = lines.replace(";", "\n") if lines else VARIANTS[name]
        self.modes = list(self.variants)
        # --pin: the servers alone on CPU 0, every client, iperf3 and the rest on the others
        self.server_cpus = {0} if a.pin else None
        self.client_cpus = set(range(1, os.cpu_count() or 2)) if a.pin else None

    # ------------------------------------------------------------ servers
    def start_sstpd(self) -> None:
        self.daemons: dict[str, Daemon] = {}
        for i, mode in enumerate(self.modes):
            port, tun, net, addr = variant_net(i)
            lines = self.variants[mode].splitlines()
            server = [x.removeprefix("server.") for x in lines if x.startswith("server.")]
            d = Daemon(
                self.net,
                self.work / f"sstpd-{mode}",
                extra_config="\n".join(['tls_min_version = "1.3"', *server]),
                tunnel_config="\n".join(x for x in lines if not x.startswith("server.")),
                port=port,
                interface=tun,
                tunnel_ip=addr,
                pool=net,
            )
            d.prepare()
            # the daemon logs every session at debug; packets are not logged
            d.start()
            self.daemons[mode] = d
        self.daemon = self.daemons[self.modes[0]]  # its certificate serves ocserv too

    def start_ocserv(self) -> None:
        d = self.work / "ocserv"
        d.mkdir()
        os.chmod(d, 0o755)
        cert, key = (self.daemon.cert, self.daemon.workdir / "tls" / "server.key")
        hashed = subprocess.run(
            ["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True, check=True
        ).stdout.strip()
        (d / "passwd").write_text(f"alice:*:{hashed}\n")
        (d / "ocserv.conf").write_text(f"""
auth = "plain[passwd={d}/passwd]"
listen-host = {SERVER_IP}
tcp-port = {OC_PORT}
run-as-user = nobody
run-as-group = nogroup
socket-file = {d}/ocserv.sock
server-cert = {cert}
server-key = {key}
isolate-workers = false
max-clients = 16
max-same-clients = 4
keepalive = 32400
dpd = 90
mobile-dpd = 1800
try-mtu-discovery = false
tls-priorities = "NORMAL:%SERVER_PRECEDENCE:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-256-GCM"
auth-timeout = 240
cookie-timeout = 300
rekey-time = 172800
rekey-method = ssl
use-occtl = false
pid-file = {d}/ocserv.pid
log-level = 1
device = vpns
predictable-ips = true
ipv4-network = {OC_NET.split("/")[0]}
ipv4-netmask = 255.255.255.0
mtu = {self.a.mtu + CSTP_OVERHEAD}
ping-leases = false
cisco-client-compat = true
""")
        self.oc_log = open(d / "ocserv.log", "w")  # noqa: SIM115
        self.ocserv = self.net.popen(
            self.net.srv,
            "ocserv",
            "-f",
            "-c",
            str(d / "ocserv.conf"),
            stdout=self.oc_log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(self.ocserv)
        der = subprocess.run(
            ["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        spki = subprocess.run(
            ["openssl", "pkey", "-pubin", "-outform", "DER"],
            input=der.encode(),
            capture_output=True,
            check=True,
        ).stdout
        self.pin = "pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
        (d / "script").write_text(OPENCONNECT_SCRIPT.format(net=OC_NET))
        os.chmod(d / "script", 0o755)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r = self.net.run(self.net.srv, "ss", "-Htln", f"sport = :{OC_PORT}", check=False)
            if r.stdout.strip():
                return
            time.sleep(0.2)
        raise RuntimeError("ocserv did not listen:\n" + (d / "ocserv.log").read_text())

    # ------------------------------------------------------------ clients
    def start_client(self, kind: str) -> tuple[subprocess.Popen[str], str, str, str]:
        """Start a client; return (process, server tunnel IP, server TUN, client TUN)."""
        if kind == "ocserv":
            d = self.work / "ocserv"
            log = open(d / "openconnect.log", "a")  # noqa: SIM115
            p = self.net.popen(
                self.net.cli,
                "openconnect",
                "--protocol=anyconnect",
                "--user=alice",
                "--passwd-on-stdin",
                f"--servercert={self.pin}",
                "--no-dtls",
                "--interface=octun0",
                f"--script={d / 'script'}",
                f"--mtu={self.a.mtu + CSTP_OVERHEAD}",
                f"https://{SERVER_IP}:{OC_PORT}/",
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            assert p.stdin is not None
            p.stdin.write(PASSWORD + "\n")
            p.stdin.close()
            server_ip, tun = OC_NET.split("/")[0][:-1] + "1", "octun0"
        else:
            base, mode = split_kind(kind, self.modes[0])
            _, srv_tun, net, server_ip = variant_net(self.modes.index(mode))
            extra = ["--record-per-packet"] if base == "sstpd-rpp" else []
            p = start_sstpd_connect(
                self.net, self.daemons[mode], self.work, "sstpc0", "--route", net, *extra,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            tun = "sstpc0"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = self.net.run(self.net.cli, "ip", "-j", "route", "get", server_ip, check=False)
            if r.returncode == 0 and json.loads(r.stdout)[0].get("dev") == tun:
                break
            if p.poll() is not None:
                raise RuntimeError(f"{kind} client exited with {p.returncode}")
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{kind} tunnel did not come up")
        if kind == "ocserv":
            srv_tun = self._ocserv_tun()
        print(f"  {kind} up: {self._describe(kind, srv_tun, tun)}", flush=True)
        return p, server_ip, srv_tun, tun

    def _describe(self, kind: str, srv_tun: str, cli_tun: str) -> str:
        def mtu(ns: str, dev: str) -> int:
            return int(
                json.loads(self.net.run(ns, "ip", "-j", "link", "show", dev).stdout)[0]["mtu"]
            )

        what = f"MTU server {mtu(self.net.srv, srv_tun)} client {mtu(self.net.cli, cli_tun)}"
        if kind == "ocserv":
            log = (self.work / "ocserv" / "openconnect.log").read_text()
            suites = [ln for ln in log.splitlines() if "ciphersuite" in ln]
            return f"{what}, {suites[-1].split('ciphersuite ')[-1] if suites else '?'}"
        from sstpd import control

        sock = self.daemons[split_kind(kind, self.modes[0])[1]].workdir / "control.sock"
        rows = control.call(str(sock), "sessions")["sessions"]
        return f"{what}, " + ", ".join(f"{r['tls_version']} {r['tls_cipher']}" for r in rows)

    def _ocserv_tun(self) -> str:
        links = json.loads(self.net.run(self.net.srv, "ip", "-j", "link", "show").stdout)
        names = [str(x["ifname"]) for x in links if x["ifname"].startswith("vpns")]
        if not names:
            raise RuntimeError("ocserv created no vpns device")
        return names[0]

    def stop_client(self, p: subprocess.Popen[str]) -> None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        time.sleep(0.5)

    # ------------------------------------------------------------ measuring
    def server_pid(self, kind: str) -> int:
        if kind == "ocserv":
            return self.ocserv.pid
        proc = self.daemons[split_kind(kind, self.modes[0])[1]].proc
        assert proc is not None
        return proc.pid

    def tun_counter(self, ns: str, dev: str, rx: bool) -> int:
        out = self.net.run(ns, "ip", "-s", "-j", "link", "show", "dev", dev).stdout
        st = json.loads(out)[0]["stats64"]
        return int(st["rx" if rx else "tx"]["packets"])

    def iperf(self, server_ip: str, seconds: int, reverse: bool) -> dict[str, float]:
        cmd = ["iperf3", "-c", server_ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"]
        if self.client_cpus is not None:
            cmd = ["taskset", "-c", ",".join(map(str, sorted(self.client_cpus))), *cmd]
        if reverse:
            cmd.append("-R")
        r = self.net.run(self.net.cli, *cmd, timeout=seconds + 60, check=False)
        data = json.loads(r.stdout)
        if "error" in data:
            raise RuntimeError(f"iperf3: {data['error']}")
        end = data["end"]["sum_received"]
        return {"bytes": end["bytes"], "seconds": end["seconds"]}

    def measure(
        self, kind: str, server_ip: str, cli_tun: str, direction: str, client: int
    ) -> Sample:
        busy, quiet = wait_quiet(self.a.max_busy, self.a.quiet_timeout)
        load = loadavg()
        pid = self.server_pid(kind)
        upload = direction == "upload"
        # the client's TUN: it sends (tx) the upload's packets and receives (rx) the
        # download's, one by one whatever the server does with them
        cli = self.net.cli
        c0, p0, k0 = tree_cpu(pid), self.tun_counter(cli, cli_tun, rx=not upload), tree_cpu(client)
        meter = BusyMeter()
        meter.start()
        perf = None
        if self.a.perf and kind.startswith("sstpd"):
            out = Path(self.a.perf) / f"{kind.replace('/', '-')}-{direction}.data"
            out.parent.mkdir(parents=True, exist_ok=True)
            cmd = ["perf", "record", "-q", "-g", "-p", str(pid), "-o", str(out)]
            if self.a.profiler == "py-spy":
                cmd = [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "-p",
                    str(pid),
                    "-f",
                    "raw",
                    "-r",
                    "500",
                    "-o",
                    str(out.with_suffix(".txt")),
                ]
            perf = subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        res = self.iperf(server_ip, self.a.seconds, reverse=not upload)
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(30)
        run_busy = meter.stop()
        c1, p1, k1 = tree_cpu(pid), self.tun_counter(cli, cli_tun, rx=not upload), tree_cpu(client)
        s = Sample(c1 - c0, res["bytes"] / 1e9, p1 - p0, res["seconds"], run_busy, load, k1 - k0)
        print(
            f"  {kind:<13} {direction:<9} {s.mbps:7.0f} Mbit/s  server {s.cpu_per_gb:5.2f} "
            f"CPU-s/GB {s.us_per_packet:5.2f} µs/pkt ({s.packet_bytes:.0f} B/pkt), "
            f"client {s.client_cpu / s.gbytes:5.2f} CPU-s/GB "
            f"({s.client_cpu / s.seconds:.0%} of a core) | before: {busy:.2f} cores busy"
            f"{'' if quiet else ' (not quiet, timed out)'}, loadavg {load}; during: "
            f"{run_busy:.2f} cores busy",
            flush=True,
        )
        return s

    def round(self, order: list[str]) -> None:
        for kind in order:
            p, server_ip, _, cli_tun = self.start_client(kind)
            pin(p.pid, self.client_cpus)
            try:
                self.iperf(server_ip, self.a.warmup, reverse=False)  # warm-up, not measured
                rpp = split_kind(kind, self.modes[0])[0] == "sstpd-rpp"
                directions = ["upload"] if rpp else ["download", "upload"]
                for direction in directions:
                    self.results.add(
                        f"{kind}:{direction}",
                        self.measure(kind, server_ip, cli_tun, direction, p.pid),
                    )
            finally:
                self.stop_client(p)

    def report(self) -> None:
        r = self.results
        paths = [
            ("download (server → client)", "sstpd", "download"),
            ("upload, our client (batched, ≈ many packets per TLS record)", "sstpd", "upload"),
            (
                "upload, --record-per-packet (one TLS record per packet, as openconnect)",
                "sstpd-rpp",
                "upload",
            ),
        ]
        print(
            f"\nmedians of {self.a.runs} runs, {self.a.seconds} s each, TLS 1.3 AES-256-GCM, "
            f"MTU {self.a.mtu}, one iperf3 stream; loadavg at the end: {loadavg()}\n"
        )
        print(
            "| path | sstpd variant | sstpd server CPU-s/GB | ocserv | ratio | sstpd µs/pkt "
            "| ocserv µs/pkt | sstpd Mbit/s | ocserv Mbit/s | client CPU-s/GB: ours "
            "| openconnect |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for label, base, direction in paths:
            theirs = f"ocserv:{direction}"
            for mode in self.modes:
                ours = f"{base}{'' if mode == self.modes[0] else '/' + mode}:{direction}"
                if ours not in r.samples or theirs not in r.samples:
                    continue  # --kinds left it out
                a, b = r.med(ours, "cpu_per_gb"), r.med(theirs, "cpu_per_gb")
                print(
                    f"| {label} | {mode} | {a:.2f} | {b:.2f} | {a / b:.2f} "
                    f"| {r.med(ours, 'us_per_packet'):.2f} "
                    f"| {r.med(theirs, 'us_per_packet'):.2f} | {r.med(ours, 'mbps'):.0f} "
                    f"| {r.med(theirs, 'mbps'):.0f} | {r.med(ours, 'client_per_gb'):.2f} "
                    f"| {r.med(theirs, 'client_per_gb'):.2f} |"
                )
        busy = [s.busy for v in r.samples.values() for s in v]
        print(
            f"\nmachine busy cores during the runs: median {median(busy):.2f}, "
            f"max {max(busy):.2f} (2 = both cores; includes server, client and iperf3)"
        )

    def run(self) -> None:
        self.net.up()
        if self.a.veth_gro:
            for ns, dev in ((self.net.srv, "sti-s"), (self.net.cli, "sti-c")):
                cmd = ["ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "on"]
                subprocess.run(cmd, check=True)
        try:
            self.start_sstpd()
            self.start_ocserv()
            iperf = self.net.popen(
                self.net.srv,
                "iperf3",
                "-s",
                "-p",
                str(IPERF_PORT),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.procs.append(iperf)
            time.sleep(0.5)
            pin(iperf.pid, self.client_cpus)  # the far end of the tunnel: not the server
            for d in self.daemons.values():
                assert d.proc is not None
                pin(d.proc.pid, self.server_cpus)
            pin(self.ocserv.pid, self.server_cpus)
            kinds = ["ocserv"] + [
                k + ("" if mode == self.modes[0] else "/" + mode)
                for mode in self.modes
                for k in ("sstpd", "sstpd-rpp")
            ]
            if self.a.kinds:
                kinds = [k for k in kinds if k in self.a.kinds.split(",")]
            for i in range(self.a.runs):
                order = kinds if i % 2 == 0 else kinds[::-1]
                print(f"run {i + 1}/{self.a.runs}: {', '.join(order)}", flush=True)
                self.round(order)
            self.report()
        finally:
            for p in self.procs:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            for d in getattr(self, "daemons", {}).values():
                d.stop()
            self.net.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mtu", type=int, default=1400)
    ap.add_argument(
        "--max-busy",
        type=float,
        default=0.5,
        help="cores the idle machine may use before a measurement starts",
    )
    ap.add_argument("--quiet-timeout", type=float, default=20.0)
    ap.add_argument(
        "--variants",
        default="default,plain",
        help="sstpd daemons side by side, comma-separated: "
        + ", ".join(VARIANTS)
        + ", or NAME:key=value;key=value ([tunnel] lines); the first is the plain 'sstpd'",
    )
    ap.add_argument(
        "--kinds",
        default="",
        help="only these clients, comma-separated: ocserv, sstpd, sstpd-rpp, sstpd/plain, ...",
    )
    ap.add_argument(
        "--perf",
        default="",
        help="record `perf record -g` of the server during each sstpd measurement into DIR",
    )
    ap.add_argument("--profiler", choices=["perf", "py-spy"], default="perf")
    ap.add_argument("--veth-gro", action="store_true", help="GRO on the veth pair (NAPI mode)")
    ap.add_argument(
        "--pin",
        action="store_true",
        help="servers on CPU 0 alone; clients, iperf3 and the rest on the other CPUs",
    )
    Bench(ap.parse_args()).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
