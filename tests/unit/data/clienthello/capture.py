"""Re-capture the ClientHellos in this directory (not run by the tests).

    python3 tests/unit/data/clienthello/capture.py

Listens on 127.0.0.1, lets ``openssl s_client`` and Python's ``ssl`` connect with and
without SNI/ALPN, stores the first bytes each sent (the records carrying the ClientHello)
as ``<name>.bin``. The OpenSSL version is recorded in ``VERSIONS``.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from sstpd.proto import clienthello  # noqa: E402


def grab(connect: object) -> bytes:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    t = threading.Thread(target=connect, args=(port,), daemon=True)  # type: ignore[arg-type]
    t.start()
    conn, _ = srv.accept()
    conn.settimeout(5)
    data = b""
    while not isinstance(clienthello.decode(data), clienthello.ClientHello):
        data += conn.recv(65536)
    conn.close()
    srv.close()
    t.join(10)
    return data


def openssl(*args: str):  # type: ignore[no-untyped-def]
    def run(port: int) -> None:
        subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
            input=b"", capture_output=True, timeout=10, check=False,
        )
    return run


def python(server_name: str | None, alpn: list[str] | None):  # type: ignore[no-untyped-def]
    def run(port: int) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(alpn)
        try:
            with socket.create_connection(("127.0.0.1", port)) as s:
                ctx.wrap_socket(s, server_hostname=server_name)
        except (OSError, ssl.SSLError):
            pass
    return run


CASES = {
    "openssl-sni-acme": openssl("-servername", "sstp.example.test", "-alpn", "acme-tls/1"),
    "openssl-sni": openssl("-servername", "sstp.example.test"),
    "openssl-nosni": openssl("-noservername"),
    "openssl-sni-acme-http": openssl(
        "-servername", "sstp.example.test", "-alpn", "acme-tls/1,http/1.1"
    ),
    "openssl-tls12-nosni": openssl("-tls1_2", "-noservername"),
    "python-sni-acme": python("sstp.example.test", ["acme-tls/1"]),
    "python-sni": python("sstp.example.test", None),
    "python-nosni-acme": python(None, ["acme-tls/1"]),
    "python-nosni": python(None, None),
}

if __name__ == "__main__":
    for name, fn in CASES.items():
        (HERE / f"{name}.bin").write_bytes(grab(fn))
        print(name)
    ver = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout
    py = f"Python {sys.version.split()[0]} {ssl.OPENSSL_VERSION}"
    (HERE / "VERSIONS").write_text(f"{ver.strip()}\n{py}\n")
