"""What one TLS record costs the receiver, by record size: prints, asserts nothing.

    python3 bench/tls_records.py [--bytes 32000000] [--sizes 1404,4096,16000]

An ``ssl.SSLObject`` between two ``ssl.MemoryBIO`` s (as asyncio's and uvloop's SSL
transports hold every connection; the daemon's class, ``sstpd.aio.tls.DirectSSLObject``),
TLS 1.3 with the cipher the daemon negotiates with a client that offers the default list
(AES-256-GCM here). For each record size the client
end writes ``--bytes`` in records of that size; the server end then takes the ciphertext
into its incoming BIO (one write, as a transport does per socket read) and reads it back
with ``SSLObject.read(n, buffer)`` into one buffer until it is empty, as uvloop's
``_do_read__buffered`` does. Printed per record and per KiB: the BIO write and the
reads. 1404 bytes is what a client that sends one record per tunnel packet produces
(SSTP and PPP headers around a 1400-byte packet); 16000 is a full record of a batching
client. No root, no sockets: this isolates the TLS layer's cost per record, the part of
the record-per-packet upload that no change in the daemon can batch away
(docs/PERFORMANCE-NOTES.md, "Read moderation").
"""

from __future__ import annotations

import argparse
import contextlib
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sstpd.aio.tls import direct_objects  # noqa: E402
from sstpd.certs import generate_self_signed  # noqa: E402


def contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS 1.3 contexts: the server's as the daemon's (a new self-signed
    ECDSA certificate in ``tmp``, ``DirectSSLObject``), the client's trusting anything."""
    generate_self_signed(
        str(tmp / "c.pem"), str(tmp / "k.pem"), common_name="bench.invalid", sans=[], key_type="ec"
    )
    sc = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sc.minimum_version = ssl.TLSVersion.TLSv1_3
    sc.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
    direct_objects(sc)  # as the daemon's context (sstpd.aio.tls.DirectSSLObject)
    cc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cc.check_hostname = False
    cc.verify_mode = ssl.CERT_NONE
    return sc, cc


def pair(tmp: Path) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.SSLObject, ssl.MemoryBIO]:
    """(server, its incoming BIO, client, its outgoing BIO), handshake done."""
    sc, cc = contexts(tmp)
    si, so, ci, co = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = sc.wrap_bio(si, so, server_side=True)
    client = cc.wrap_bio(ci, co)
    for _ in range(10):
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        if data := co.read():
            si.write(data)
        if data := so.read():
            ci.write(data)
    assert server.version() == "TLSv1.3", server.version()
    return server, si, client, co


def measure(size: int, total: int, tmp: Path) -> tuple[float, float, float, str]:
    server, si, client, co = pair(tmp)
    records = max(total // size, 1)
    payload = os.urandom(size)
    buf = bytearray(65536)
    view = memoryview(buf)
    write = read = 0.0
    done = 0
    while done < records:
        batch = min(records - done, max((256 * 1024) // size, 1))  # ≈ one socket read
        for _ in range(batch):
            client.write(payload)
        wire = co.read()
        t0 = time.perf_counter()
        si.write(wire)
        t1 = time.perf_counter()
        got = 0
        while True:
            try:
                got += server.read(len(buf), view)
            except ssl.SSLWantReadError:
                break
        t2 = time.perf_counter()
        assert got == batch * size
        write += t1 - t0
        read += t2 - t1
        done += batch
    cipher = server.cipher()
    per_kib = (write + read) / (records * size / 1024) * 1e6
    return write / records * 1e6, read / records * 1e6, per_kib, cipher[0] if cipher else "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bytes", type=int, default=32_000_000)
    ap.add_argument("--sizes", default="1404,4096,16000")
    a = ap.parse_args()
    print(f"{ssl.OPENSSL_VERSION}, Python {sys.version.split()[0]}, {a.bytes} bytes per size")
    print("| record bytes | BIO write µs/record | reads µs/record | µs per KiB | cipher |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for size in (int(x) for x in a.sizes.split(",")):
            w, r, per_kib, cipher = measure(size, a.bytes, Path(d))
            print(f"| {size} | {w:.2f} | {r:.2f} | {per_kib:.3f} | {cipher} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
