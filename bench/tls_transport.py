"""Server CPU per received TLS record, sstpd's TLS transport against uvloop's: prints
figures, asserts nothing.

    python3 bench/tls_transport.py [--records 300000] [--size 1404] [--rounds 3] [--pin]

A forked client sends ``--records`` TLS 1.3 records of ``--size`` bytes (the shape of a
client that sends one record per tunnel packet; ``--size 16000`` for a batching one) over
loopback TCP, encrypted ahead 2000 at a time so that the server is the bottleneck; the
server is a uvloop event loop with a ``BufferedProtocol`` that only counts bytes, behind
either ``sstpd.aio.tlsstream`` (``[server] tls_transport = "sstpd"``, the default) or
uvloop's SSL transport (``"event-loop"``). Printed per transport: the server process's CPU time
(user + system, so the socket reads are in it) per record, and its RSS growth after the
transfer (what the session keeps once the burst is over). The transports alternate,
each in a fresh process pair, ``--rounds`` times; medians. ``--pin``: server on CPU 0,
client on CPU 1. No root, no daemon: the TLS layer alone, the part of the
record-per-packet upload that bench/peers.py cannot separate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import median, rss_kib  # noqa: E402
from bench.tls_records import contexts  # noqa: E402
from sstpd.aio import tlshandshake, tlsstream  # noqa: E402

KINDS = ("sstpd", "event-loop")


class Count(asyncio.BufferedProtocol):
    def __init__(self, total: int, done: asyncio.Future[None]) -> None:
        self.buf = memoryview(bytearray(65536))
        self.got = 0
        self.total = total
        self.done = done

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.got += nbytes
        if self.got >= self.total and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"lost after {self.got} bytes: {exc}"))


def client(port: int, records: int, size: int, cpu: int | None) -> None:
    """Encrypts 2000 records at a time into memory, then sends them with one ``sendall``:
    the server, not the client, is the bottleneck, and its reads are large."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    cc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cc.check_hostname = False
    cc.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = cc.wrap_bio(incoming, outgoing)
    payload = os.urandom(size)
    with socket.create_connection(("127.0.0.1", port)) as s:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    s.sendall(outgoing.read())
                incoming.write(s.recv(65536))
        s.sendall(outgoing.read())
        left = records
        while left:
            batch = min(left, 2000)
            for _ in range(batch):
                tls.write(payload)
            s.sendall(outgoing.read())
            left -= batch
        while s.recv(65536):  # session tickets, then the server closing
            pass


async def serve(kind: str, records: int, size: int, tmp: Path) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    sc, _ = contexts(tmp)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    lsock.setblocking(False)
    port = lsock.getsockname()[1]
    cpu = 1 if os.environ.get("BENCH_PIN") else None
    pid = os.fork()
    if pid == 0:
        try:
            client(port, records, size, cpu)
        finally:
            os._exit(0)
    conn, _ = await loop.sock_accept(lsock)
    conn.setblocking(False)
    done: asyncio.Future[None] = loop.create_future()
    proto = Count(records * size, done)
    if kind == "sstpd":
        transport = await tlshandshake.handshake(loop, conn, sc)
        transport.start(proto)
    else:
        await loop.connect_accepted_socket(lambda: proto, conn, ssl=sc)
    await asyncio.sleep(0.05)
    rss0 = rss_kib(os.getpid())
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    await done
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(0.05)
    rss1 = rss_kib(os.getpid())
    cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    sys_s = r1.ru_stime - r0.ru_stime
    os.waitpid(pid, os.WNOHANG)
    return {
        "us_per_record": cpu_s / records * 1e6,
        "sys_us_per_record": sys_s / records * 1e6,
        "wall_us_per_record": wall / records * 1e6,
        "rss_growth_kib": rss1 - rss0,
    }


def probe(kind: str, records: int, size: int) -> None:
    import uvloop  # type: ignore[import-not-found]

    if os.environ.get("BENCH_PIN"):
        os.sched_setaffinity(0, {0})
    if os.environ.get("BENCH_FEED"):
        tlsstream.FEED_SIZE = int(os.environ["BENCH_FEED"])
    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(uvloop.run(serve(kind, records, size, Path(d)))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--size", type=int, default=1404)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pin", action="store_true")
    ap.add_argument("--feed", type=int, default=0, help="experiment: tlsstream.FEED_SIZE")
    ap.add_argument("--probe", choices=KINDS, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.probe:
        probe(a.probe, a.records, a.size)
        return 0
    env = dict(os.environ, BENCH_PIN="1") if a.pin else dict(os.environ)
    if a.feed:
        env["BENCH_FEED"] = str(a.feed)
    results: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
    for _ in range(a.rounds):
        for kind in KINDS:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--probe",
                    kind,
                    "--records",
                    str(a.records),
                    "--size",
                    str(a.size),
                ],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout
            results[kind].append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"{ssl.OPENSSL_VERSION}; {a.records} records of {a.size} bytes, medians of "
        f"{a.rounds}{', pinned' if a.pin else ''}"
    )
    print("| transport | server CPU µs/record | of which kernel | wall µs/record | RSS kept KiB |")
    print("|---|---|---|---|---|")
    for kind in KINDS:
        rows = results[kind]
        cells = [
            median([r[k] for r in rows])
            for k in ("us_per_record", "sys_us_per_record", "wall_us_per_record", "rss_growth_kib")
        ]
        print(f"| {kind} | {cells[0]:.2f} | {cells[1]:.2f} | {cells[2]:.2f} | {cells[3]:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
