"""Server-side memory of an idle TLS connection after a burst: prints, asserts nothing.

    python3 bench/tls_idle.py [--connections 500] [--bursts 0,16384,65536,262144]

For each burst size B, a fresh process makes N server-side TLS 1.3 connections, sends B
bytes each way through each (the peer writes them at once, as a client's batch or a
bulk transfer would), and measures its RSS growth per connection once all are idle again:

* MemoryBIO: an ``ssl.SSLObject`` between two ``ssl.MemoryBIO`` s, as asyncio's and
  uvloop's SSL transports hold every connection (the incoming BIO gets each TCP read in
  one piece; the outgoing one a whole write before it is drained). The client ends are
  freed before measuring.
* socket BIO: an ``ssl.SSLSocket`` on one end of a socketpair (OpenSSL reads and writes
  the socket itself, no memory BIO); the client ends live in a forked child.

No root, no network namespace, no daemon: this isolates what OpenSSL and its BIOs keep.
bench/memory.py --burst measures the daemon itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import rss_kib  # noqa: E402
from sstpd import certs  # noqa: E402

HOST = "10.0.0.1"


def _drain(obj: ssl.SSLObject) -> None:
    while True:
        try:
            if not obj.read(65536):
                return
        except ssl.SSLWantReadError:
            return


def memory_bio(n: int, burst: int, cert: str, key: str) -> float:
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cctx = ssl.create_default_context(cafile=cert)

    def pair() -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
        si, so, ci, co = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
        srv = sctx.wrap_bio(si, so, server_side=True)
        cli = cctx.wrap_bio(ci, co, server_hostname=HOST)
        for _ in range(10):
            for end in (cli, srv):
                with contextlib.suppress(ssl.SSLWantReadError):
                    end.do_handshake()
            si.write(co.read())
            ci.write(so.read())
        if burst:
            cli.write(b"x" * burst)
            si.write(co.read())  # one TCP read with the whole burst
            _drain(srv)
            srv.write(b"y" * burst)  # one write of the whole burst, then drained
            ci.write(so.read())
            _drain(cli)
        return srv, si, so

    keep = [pair() for _ in range(20)]
    keep.clear()
    r0 = rss_kib(os.getpid())
    keep = [pair() for _ in range(n)]
    return (rss_kib(os.getpid()) - r0) / n


def socket_bio(n: int, burst: int, cert: str, key: str) -> float:
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cctx = ssl.create_default_context(cafile=cert)
    release_r, release_w = os.pipe()

    def recv_n(s: ssl.SSLSocket, k: int) -> None:
        got = 0
        while got < k:
            d = s.recv(min(65536, k - got))
            if not d:
                return
            got += len(d)

    def run(count: int, keep: list[ssl.SSLSocket]) -> int:
        pairs = [socket.socketpair() for _ in range(count)]
        pid = os.fork()
        if pid == 0:  # the clients, in order, while the parent serves them in order
            clients = []
            for a, b in pairs:
                a.close()
                c = cctx.wrap_socket(b, server_hostname=HOST)
                if burst:
                    c.sendall(b"x" * burst)
                    recv_n(c, burst)
                clients.append(c)
            os.read(release_r, 1)
            os._exit(0)
        for a, b in pairs:
            b.close()
            s = sctx.wrap_socket(a, server_side=True)
            if burst:
                recv_n(s, burst)
                s.sendall(b"y" * burst)
            keep.append(s)
        return pid

    warm: list[ssl.SSLSocket] = []
    pids = [run(20, warm)]
    keep: list[ssl.SSLSocket] = []
    r0 = rss_kib(os.getpid())
    pids.append(run(n, keep))
    per = (rss_kib(os.getpid()) - r0) / n
    os.write(release_w, b"xx")
    for pid in pids:
        os.waitpid(pid, 0)
    return per


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--bursts", default="0,16384,65536,262144")
    ap.add_argument("--probe", nargs=4, metavar=("KIND", "BURST", "CERT", "KEY"))
    a = ap.parse_args()
    if a.probe:
        kind, burst, cert, key = a.probe
        fn = memory_bio if kind == "memory" else socket_bio
        print(json.dumps(fn(a.connections, int(burst), cert, key)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="sstpd-tlsidle-"))
    cert, key = str(work / "c.pem"), str(work / "k.pem")
    certs.generate_self_signed(cert, key, common_name=HOST, sans=[HOST])
    print(
        f"RSS per idle server-side TLS 1.3 connection (RSA-2048) after a burst each way, "
        f"{a.connections} connections, one fresh process per figure"
    )
    print(f"{'burst':>10} {'MemoryBIO (asyncio, uvloop)':>28} {'socket BIO (SSLSocket)':>24}")
    for burst in [int(x) for x in a.bursts.split(",")]:
        row = []
        for kind in ("memory", "socket"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--connections",
                    str(a.connections),
                    "--probe",
                    kind,
                    str(burst),
                    cert,
                    key,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            row.append(float(out.strip().splitlines()[-1]))
        print(f"{burst:>10} {row[0]:>24.1f} KiB {row[1]:>20.1f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
