"""The harness itself: the guest boots, has the SSTP client stack, a working /dev/ppp, and
reaches the address a server under test listens on."""

from __future__ import annotations

import socket
import threading

import pytest

from .guest import SERVER_IP, Guest

pytestmark = pytest.mark.realclient


def test_client_tools_present(guest: Guest) -> None:
    r = guest.run("sstpc --version; pppd --version 2>&1; iperf3 --version | head -1", check=True)
    assert "sstp-client version 1.0.18" in r.stdout
    assert "pppd version 2.4.9" in r.stdout
    assert "iperf 3" in r.stdout


def test_dev_ppp_works(guest: Guest) -> None:
    # open /dev/ppp and create a PPP unit (PPPIOCNEWUNIT), as pppd does: needs ppp_generic
    script = (
        "import fcntl, os, struct\n"
        "fd = os.open('/dev/ppp', os.O_RDWR)\n"
        "unit = struct.unpack('i', fcntl.ioctl(fd, 0xc004743e, struct.pack('i', -1)))[0]\n"
        "print('unit', unit, os.path.exists(f'/sys/class/net/ppp{unit}'))\n"
    )
    r = guest.run(["python3", "-c", script], check=True)
    assert r.stdout.split()[0] == "unit" and r.stdout.split()[2] == "True", r.stdout
    mods = guest.run("cat /proc/modules", check=True).stdout
    assert "ppp_async" in mods and "sch_netem" in mods


def test_guest_reaches_server_address(guest: Guest) -> None:
    """A TCP server on the host at SERVER_IP (where sstpd must listen) is reachable."""
    with socket.create_server((SERVER_IP, 0)) as srv:
        port = srv.getsockname()[1]
        got: list[bytes] = []

        def serve() -> None:
            srv.settimeout(30)
            conn, _ = srv.accept()
            with conn:
                got.append(conn.recv(100))
                conn.sendall(b"pong")

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        client = (
            f"import socket; s = socket.create_connection(('{SERVER_IP}', {port}), 10); "
            "s.sendall(b'ping'); print(s.recv(100).decode())"
        )
        r = guest.run(["python3", "-c", client], timeout=60)
        t.join(5)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "pong" and got == [b"ping"]
