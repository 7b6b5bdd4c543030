"""Server CPU per full handshake and sessions/s: prints figures, asserts nothing.

    sudo python3 bench/handshakes.py [--sessions 3000] [--batch 1000] [--concurrency 50]

The daemon runs in namespace ``bp-srv`` (pool 10.96.0.0/16, log level info); the
package's client opens sessions in-process from ``bp-cli`` (bench/_sessions.py, no TUN).
A full handshake is TCP + TLS + SSTP call connect + PPP LCP + MS-CHAPv2 + IPCP + crypto
binding, i.e. until the client sees the tunnel open. Sessions are opened in batches of
``--batch`` with at most ``--concurrency`` handshakes in flight; the daemon's CPU (utime +
stime from /proc) is read before and after each batch, then the batch is closed with a
graceful Call Disconnect, measured separately. Done once with an RSA-2048 and once with
an ECDSA P-256 certificate. The client shares the machine's two cores with the daemon, so
sessions/s depends on the client too; CPU per handshake is the server's alone.

Then a micro-benchmark (timeit, this process) of the MS-CHAPv2 primitives in
``sstpd.proto.mschap`` that the server runs once per authentication, with the pure-Python
DES fallback and with cryptography's DES (``--micro-only``: just that, no root needed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import loadavg, median, raise_nofile, tree_cpu, wait_quiet  # noqa: E402
from bench._daemon import Driver, bench_daemon  # noqa: E402
from sstpd.proto import mschap  # noqa: E402
from tests.integration.netns import Netns  # noqa: E402


def run_key_type(
    a: argparse.Namespace, net: Netns, key_type: str, pure_des: bool | None = None
) -> dict[str, float]:
    """``pure_des`` None: the daemon as installed; True/False: started through
    bench/_traced_serve.py (untraced) with the pure-Python or cryptography's DES."""
    work = Path(tempfile.mkdtemp(prefix=f"sstpd-hs-{key_type}-"))
    d = bench_daemon(
        net,
        work,
        max_sessions=a.batch + 100,
        key_type=key_type,
        traced=pure_des is not None,
        server_lines=a.server,
    )
    os.environ.pop("SSTPD_BENCH_PURE_DES", None)
    if pure_des:
        os.environ["SSTPD_BENCH_PURE_DES"] = "1"
    d.start()
    os.environ.pop("SSTPD_BENCH_PURE_DES", None)
    assert d.proc is not None
    pid = d.proc.pid
    drv = Driver(net, d)
    try:
        drv.cmd(f"open {min(100, a.batch)} {a.concurrency}")  # warm-up, not measured
        drv.cmd("close")
        per_hs, per_close, rates = [], [], []
        done = 0
        while done < a.sessions:
            n = min(a.batch, a.sessions - done)
            busy, quiet = wait_quiet(a.max_busy, a.quiet_timeout)
            load = loadavg()
            c0 = tree_cpu(pid)
            res = drv.cmd(f"open {n} {a.concurrency}")
            c1 = tree_cpu(pid)
            closed = drv.cmd("close")
            c2 = tree_cpu(pid)
            ok = int(res["opened"])
            done += n
            if ok == 0:
                print(f"  {key_type}: no session opened: {res}")
                continue
            per_hs.append((c1 - c0) / ok * 1e3)
            per_close.append((c2 - c1) / max(int(closed["closed"]), 1) * 1e3)
            rates.append(ok / float(res["seconds"]))
            print(
                f"  {key_type:<6} {ok:5d} opened ({res['errors']} errors"
                f"{': ' + str(res['first_errors'][0]) if res['errors'] else ''}) in "
                f"{res['seconds']:.1f} s: server {per_hs[-1]:.2f} ms CPU/handshake, "
                f"{rates[-1]:.0f} sessions/s; close {per_close[-1]:.2f} ms CPU/session "
                f"| before: {busy:.2f} cores busy{'' if quiet else ' (not quiet)'}, "
                f"loadavg {load}",
                flush=True,
            )
        return {
            "ms": median(per_hs),
            "rate": median(rates),
            "close_ms": median(per_close),
            "n": float(len(per_hs)),
        }
    finally:
        drv.close()
        d.stop()


def _micro_cases() -> dict[str, Callable[[], object]]:
    nt_hash = mschap.nt_password_hash("alice-secret")
    ac, pc = os.urandom(16), os.urandom(16)
    resp = mschap.generate_nt_response(ac, pc, "alice", nt_hash)
    return {
        "md4 (16 B: HashNtPasswordHash)": lambda: mschap.password_hash_hash(nt_hash),
        "DES block (key schedule + encrypt)": lambda: mschap.des_encrypt_block(
            mschap.expand_des_key(nt_hash[:7]), ac[:8]
        ),
        "GenerateNTResponse (SHA-1 + 3 DES)": lambda: mschap.generate_nt_response(
            ac, pc, "alice", nt_hash
        ),
        "GenerateAuthenticatorResponse (MD4 + 3 SHA-1)": lambda: mschap.authenticator_response(
            nt_hash, resp, pc, ac, "alice"
        ),
        "SSTP HLAK (MD4 + 3 SHA-1)": lambda: mschap.hlak(nt_hash, resp),
    }


def micro() -> None:
    """µs per call of the MS-CHAPv2 primitives (median of 5 timeit repeats), once with the
    DES the server uses (``cryptography`` when importable) and once with the pure-Python
    fallback, so the two can be compared in one run."""
    library = mschap._des_library
    runs: list[tuple[str, Callable[[bytes, bytes], bytes] | None]] = [
        ("pure Python DES (fallback)", None)
    ]
    if library is not None:
        runs.append(("DES from cryptography (what the server uses)", library))
    try:
        for label, des in runs:
            mschap._des_library = des
            total = 0.0
            print(f"\nMS-CHAPv2 primitives, {label}, MD4 pure Python, this process:")
            for name, fn in _micro_cases().items():
                number = 200
                reps = timeit.repeat(fn, number=number, repeat=5)
                us = median([t / number * 1e6 for t in reps])
                if not name.startswith(("md4", "DES")):
                    total += us
                print(f"  {name:<48} {us:8.1f} µs")
            print(
                f"  server work per MS-CHAPv2 authentication (verify + S= + HLAK) ≈ "
                f"{total:.0f} µs (loadavg {loadavg()})"
            )
    finally:
        mschap._des_library = library


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=3000, help="per key type")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--key-types", default="rsa,ec")
    ap.add_argument("--max-busy", type=float, default=0.5)
    ap.add_argument("--quiet-timeout", type=float, default=20.0)
    ap.add_argument("--skip-micro", action="store_true")
    ap.add_argument("--micro-only", action="store_true", help="no daemon, no root")
    ap.add_argument(
        "--compare-des",
        action="store_true",
        help="per key type, one daemon with the pure-Python DES, then one with cryptography's",
    )
    ap.add_argument(
        "--server", default="", help='one more [server] line, e.g. tls_transport = "event-loop"'
    )
    a = ap.parse_args()
    raise_nofile(a.batch + 2048)  # per process: daemon, client
    if not a.skip_micro:
        micro()
    if a.micro_only:
        return 0
    net = Netns("bp")
    net.up()
    results = {}
    try:
        for kt in a.key_types.split(","):
            name = "RSA-2048" if kt == "rsa" else "ECDSA P-256"
            if not a.compare_des:
                print(f"\n{kt} certificate ({name}):")
                results[name] = run_key_type(a, net, kt)
                continue
            for pure in (True, False):
                des = "pure-Python DES" if pure else "cryptography DES"
                print(f"\n{kt} certificate ({name}), {des}:")
                results[f"{name}, {des}"] = run_key_type(a, net, kt, pure_des=pure)
    finally:
        net.down()
    print(
        f"\nmedians over batches of {a.batch}, concurrency {a.concurrency}, TLS 1.3 "
        f"(client's choice), client in-process on the same 2 cores; loadavg {loadavg()}\n"
    )
    print("| certificate | server CPU per handshake | sessions/s | server CPU per close |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['ms']:.2f} ms | {r['rate']:.0f} | {r['close_ms']:.2f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
