"""Bad ClientHellos against a listener, run in the client namespace by tests/integration/
test_acme.py. Prints one JSON object: for each probe the seconds until the server closed
and whether any byte it sent back contained the acmeIdentifier extension OID.

    python3 -m tests.integration.hello_probe HOST PORT NAME SLOW_COUNT
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

from sstpd.proto import clienthello as ch

ACME_OID = bytes.fromhex("06082b0601050507011f")


def probe(
    host: str, port: int, payload: bytes, eof: bool, out: dict[str, object], key: str
) -> None:
    t0 = time.monotonic()
    got = b""
    try:
        with socket.create_connection((host, port), timeout=60) as s:
            s.sendall(payload)
            if eof:
                s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                got += chunk
    except OSError:
        pass
    out[key] = {"closed_after": round(time.monotonic() - t0, 2), "acme": ACME_OID in got}


def main() -> int:
    host, port, name, slow = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    full = ch.encode(
        ch.ClientHello(
            extensions=(ch.server_name_extension(name), ch.alpn_extension([ch.ACME_TLS_1]))
        )
    )
    probes: dict[str, tuple[bytes, bool]] = {
        "garbage": (b"\x00\x01garbage" * 50, False),
        "http": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),
        "truncated-eof": (full[: len(full) // 2], True),
        "empty-alpn-entry": (
            ch.encode(
                ch.ClientHello(
                    extensions=(ch.server_name_extension(name), (ch.EXT_ALPN, b"\x00\x01\x00"))
                )
            ),
            False,
        ),
        "huge-alpn": (
            ch.encode(
                ch.ClientHello(
                    extensions=(
                        ch.server_name_extension(name),
                        ch.alpn_extension([b"acme-tls/1", *([b"x" * 255] * 60)]),
                    )
                ),
                fragment=4000,
            ),
            False,
        ),
        "oversized": (b"\x16\x03\x01\x00\x04\x01\x01\x00\x00", False),
    }
    probes.update({f"slow-{i}": (full[:30], False) for i in range(slow)})
    out: dict[str, object] = {}
    threads = [
        threading.Thread(target=probe, args=(host, port, data, eof, out, key))
        for key, (data, eof) in probes.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
