"""A TCP bulk transfer with a SHA-256 of what arrived, for the tunnel tests and the benchmark.

    python3 -m tests.integration.bulk serve HOST PORT up|down SIZE   (prints "ready", then digest)
    python3 -m tests.integration.bulk client HOST PORT up|down SIZE  (prints the digest)

"up" means client -> server. The sender sends SIZE pseudo-random bytes; both sides print
the SHA-256 of the bytes they sent or received, so equal digests prove an intact transfer.
"""

from __future__ import annotations

import hashlib
import socket
import sys
import time

CHUNK = 256 * 1024


def _payload(size: int) -> bytes:
    block = hashlib.sha256(b"sstpd").digest() * (CHUNK // 32)
    return block[: min(size, CHUNK)]


def send(sock: socket.socket, size: int) -> str:
    h = hashlib.sha256()
    block = _payload(size)
    left = size
    while left:
        piece = block[: min(left, len(block))]
        sock.sendall(piece)
        h.update(piece)
        left -= len(piece)
    sock.shutdown(socket.SHUT_WR)
    return h.hexdigest()


def receive(sock: socket.socket, size: int) -> str:
    h = hashlib.sha256()
    got = 0
    while got < size:
        data = sock.recv(CHUNK)
        if not data:
            break
        h.update(data)
        got += len(data)
    return h.hexdigest()


def main() -> int:
    role, host, port, direction, size_s = sys.argv[1:6]
    size = int(size_s)
    if role == "serve":
        srv = socket.create_server((host, int(port)), reuse_port=False)
        srv.settimeout(60)
        print("ready", flush=True)
        conn, _ = srv.accept()
        conn.settimeout(60)
        digest = receive(conn, size) if direction == "up" else send(conn, size)
    else:
        t0 = time.monotonic()
        conn = socket.create_connection((host, int(port)), timeout=60)
        digest = send(conn, size) if direction == "up" else receive(conn, size)
        print(f"{size * 8 / (time.monotonic() - t0) / 1e6:.1f} Mbit/s", file=sys.stderr)
    conn.close()
    print(digest, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
