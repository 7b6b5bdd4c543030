"""server.workers: handshakes and packets with 1 and with 2 workers. Prints, asserts nothing.

    sudo python3 bench/workers.py [--workers 1,2] [--sessions 2000] [--batch 500]
        [--concurrency 64] [--clients 2] [--echo-sessions 200] [--echo 1000] [--window 4]

For each worker count a daemon (ECDSA P-256 certificate, pool 10.96.0.0/16, log level
info) runs in namespace ``bp-srv``; ``--clients`` processes of bench/_sessions.py in
``bp-cli`` open sessions in parallel (each at most concurrency/clients handshakes in
flight) in batches of ``--batch``. Per batch: the server's CPU (utime + stime of the whole
process tree from /proc: supervisor and workers) per opened session, and the aggregate
sessions/s (sessions of all clients / wall time of the slowest). Then ``--echo-sessions``
sessions each exchange ``--echo`` ICMP echoes with the server's tunnel address (at most
``--window`` outstanding per session), ``--rounds`` times: server CPU per packet (requests
in + replies out), and how the sessions were spread over the workers.

On a 2-core machine the clients share the cores with the server: with 2 workers the
server can use both cores only while the clients wait, so sessions/s shows how the whole
machine does, and the server-side CPU per handshake and per packet are the figures that
do not depend on it. The client CPU is printed too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import loadavg, median, raise_nofile, tree_cpu, wait_quiet  # noqa: E402
from bench._daemon import Driver, bench_daemon  # noqa: E402
from sstpd import control  # noqa: E402
from tests.integration.netns import Daemon, Netns  # noqa: E402


def parallel(drivers: list[Driver], commands: list[str]) -> list[dict[str, Any]]:
    """Send one command to each driver at once; their answers in order."""
    out: list[dict[str, Any]] = [{} for _ in drivers]

    def one(i: int) -> None:
        out[i] = drivers[i].cmd(commands[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(drivers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def split(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def spread(d: Daemon) -> str:
    rows = control.call(str(d.workdir / "control.sock"), "sessions")["sessions"]
    counts: dict[int, int] = {}
    for r in rows:
        counts[int(r.get("worker", 0))] = counts.get(int(r.get("worker", 0)), 0) + 1
    return " / ".join(f"w{w}: {n}" for w, n in sorted(counts.items()))


def run_workers(a: argparse.Namespace, net: Netns, workers: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix=f"sstpd-workers-{workers}-"))
    # the limits are divided among the workers: leave room for an uneven spread
    d = bench_daemon(
        net,
        work,
        max_sessions=2 * max(a.batch, a.echo_sessions) + 200,
        key_type="ec",
        workers=workers,
    )
    # every client connects from one address: lift the per-source budget, which the
    # workers divide among themselves (one worker may refuse while the other has room)
    d.config.write_text(d.config.read_text() + "\n[limits]\npending_per_source = 1000\n")
    d.start()
    assert d.proc is not None
    pid = d.proc.pid
    drivers = [Driver(net, d) for _ in range(a.clients)]
    conc = split(a.concurrency, a.clients)
    try:
        parallel(drivers, [f"open {min(100, a.batch) // a.clients} {c}" for c in conc])
        parallel(drivers, ["close"] * a.clients)  # warm-up, not measured
        per_hs, rates, client_ms, hs_cores = [], [], [], []
        done = 0
        while done < a.sessions:
            n = min(a.batch, a.sessions - done)
            busy, quiet = wait_quiet(a.max_busy, a.quiet_timeout)
            cl0 = sum(tree_cpu(x.proc.pid) for x in drivers)
            c0 = tree_cpu(pid)
            res = parallel(
                drivers, [f"open {m} {c}" for m, c in zip(split(n, a.clients), conc, strict=True)]
            )
            c1 = tree_cpu(pid)
            cl1 = sum(tree_cpu(x.proc.pid) for x in drivers)
            where = spread(d)
            parallel(drivers, ["close"] * a.clients)
            ok = sum(int(r["opened"]) for r in res)
            errors = sum(int(r["errors"]) for r in res)
            wall = max(float(r["seconds"]) for r in res)
            done += n
            if not ok:
                print(f"  no session opened: {res}")
                continue
            per_hs.append((c1 - c0) / ok * 1e3)
            client_ms.append((cl1 - cl0) / ok * 1e3)
            rates.append(ok / wall)
            hs_cores.append((c1 - c0) / wall)
            print(
                f"  {workers} worker(s): {ok} opened ({errors} errors) in {wall:.1f} s: "
                f"server {per_hs[-1]:.2f} ms CPU/handshake ({hs_cores[-1]:.2f} cores), "
                f"{rates[-1]:.0f} sessions/s, "
                f"clients {client_ms[-1]:.2f} ms CPU/handshake; spread {where} "
                f"| before: {busy:.2f} cores busy{'' if quiet else ' (not quiet)'}, "
                f"loadavg {loadavg()}",
                flush=True,
            )
        # packets: echoes through sessions spread over the workers
        parallel(drivers, [f"open {m} 16" for m in split(a.echo_sessions, a.clients)])
        where = spread(d)
        per_pkt, pps, pkt_cores = [], [], []
        for _ in range(a.rounds):
            busy, quiet = wait_quiet(a.max_busy, a.quiet_timeout)
            c0 = tree_cpu(pid)
            res = parallel(drivers, [f"echo {a.echo} {a.window}"] * a.clients)
            c1 = tree_cpu(pid)
            replies = sum(int(r["replies"]) for r in res)
            sent = sum(int(r["sent"]) for r in res)
            wall = max(float(r["seconds"]) for r in res)
            # every request reached the server; lost replies were dropped before it read
            # them (the TUN queue), so they cost it nothing: count requests + replies
            packets = sent + replies
            per_pkt.append((c1 - c0) / packets * 1e6)
            pps.append(packets / wall)
            pkt_cores.append((c1 - c0) / wall)
            print(
                f"  {workers} worker(s): {replies} echoes of {sent} "
                f"through {a.echo_sessions} sessions ({where}), window {a.window}, in "
                f"{wall:.1f} s: server {per_pkt[-1]:.1f} µs CPU/packet "
                f"({pkt_cores[-1]:.2f} cores), {pps[-1]:.0f} packets/s "
                f"| before: {busy:.2f} cores busy{'' if quiet else ' (not quiet)'}, "
                f"loadavg {loadavg()}",
                flush=True,
            )
        parallel(drivers, ["close"] * a.clients)
        return {
            "ms": median(per_hs),
            "rate": median(rates),
            "client_ms": median(client_ms),
            "us_pkt": median(per_pkt),
            "pps": median(pps),
            "hs_cores": median(hs_cores),
            "pkt_cores": median(pkt_cores),
        }
    finally:
        for x in drivers:
            x.close()
        d.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--sessions", type=int, default=2000, help="per worker count")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=64, help="in flight, all clients")
    ap.add_argument("--clients", type=int, default=2, help="client processes")
    ap.add_argument("--echo-sessions", type=int, default=200)
    ap.add_argument("--echo", type=int, default=1000, help="echoes per session and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=int, default=4, help="echoes outstanding per session")
    ap.add_argument("--max-busy", type=float, default=0.5)
    ap.add_argument("--quiet-timeout", type=float, default=20.0)
    a = ap.parse_args()
    raise_nofile(4 * a.batch + 4096)
    net = Netns("bp")
    net.up()
    results = {}
    try:
        for w in (int(x) for x in a.workers.split(",")):
            print(f"\nserver.workers = {w}:", flush=True)
            results[w] = run_workers(a, net, w)
    finally:
        net.down()
    print(
        f"\nmedians; ECDSA P-256, TLS 1.3, batches of {a.batch}, {a.concurrency} handshakes "
        f"in flight from {a.clients} client processes on the same 2 cores as the server; "
        f"loadavg {loadavg()}\n"
    )
    print(
        "| workers | server CPU per handshake | sessions/s (all clients) | server cores busy "
        "| client CPU per handshake | server CPU per packet | packets/s | server cores busy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for w, r in results.items():
        print(
            f"| {w} | {r['ms']:.2f} ms | {r['rate']:.0f} | {r['hs_cores']:.2f} "
            f"| {r['client_ms']:.2f} ms | {r['us_pkt']:.1f} µs | {r['pps']:.0f} "
            f"| {r['pkt_cores']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
