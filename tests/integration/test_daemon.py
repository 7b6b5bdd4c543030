"""The daemon with a real TUN in one network namespace, the package's client in another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sstpd.proto.mschap import nt_password_hash
from tests.integration.netns import (
    DNS,
    POOL,
    SERVER_IP,
    TUNNEL_IP,
    USERS,
    Daemon,
    Netns,
    namespaces,
    running,
    sstpd_connect,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpdt") as n:
        yield n


@pytest.fixture(scope="module")
def daemon(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(Daemon(net, tmp_path_factory.mktemp("daemon"))) as d:
        yield d


def test_ready_notification_and_listener(daemon: Daemon) -> None:
    assert any("READY=1" in m for m in daemon.notify_messages)
    text = daemon.log_text()
    assert f"listening on {SERVER_IP}:443 (TLS)" in text


def test_ping_mschapv2(daemon: Daemon, net: Netns) -> None:
    res = net.client_tool("ping", *daemon.client_args(), "--auth", "mschapv2")
    assert res["replies"] == 3
    assert res["peer"] == TUNNEL_IP
    assert res["local"].startswith("10.77.0.")  # type: ignore[union-attr]
    assert res["dns"] == DNS
    assert res["hash"] == "SHA256"
    log = daemon.wait_log("crypto binding verified (SHA256)")
    assert "user 'alice' (mschapv2) connected" in log


def test_ping_pap(daemon: Daemon, net: Netns) -> None:
    res = net.client_tool(
        "ping", *daemon.client_args(), "--auth", "pap", "--user", "bob", "--password", "bob-secret"
    )
    assert res["replies"] == 3
    daemon.wait_log("user 'bob' (pap) connected")


def test_domain_prefixed_user(daemon: Daemon, net: Netns) -> None:
    res = net.client_tool(
        "connect",
        *daemon.client_args(),
        "--user",
        "CORP\\carol",
        "--password",
        "carol-secret",
        "--auth",
        "mschapv2",
    )
    assert res["ok"] is True


def test_wrong_password_gets_691(daemon: Daemon, net: Netns) -> None:
    res = net.client_tool(
        "connect", *daemon.client_args(), "--password", "wrong", "--auth", "mschapv2"
    )
    assert res["ok"] is False
    assert res["code"] == 691
    daemon.wait_log("user 'alice' authentication failed (mschapv2, E=691")


def test_unknown_user_gets_691(daemon: Daemon, net: Netns) -> None:
    res = net.client_tool(
        "connect",
        *daemon.client_args(),
        "--user",
        "mallory",
        "--password",
        "x",
        "--auth",
        "mschapv2",
    )
    assert res == {"ok": False, "error": res["error"], "code": 691}


@pytest.mark.parametrize("what", ["cert-hash", "mac"])
def test_bad_crypto_binding_is_aborted(daemon: Daemon, net: Netns, what: str) -> None:
    res = net.client_tool(
        "bad-binding", *daemon.client_args(), "--what", what, "--auth", "mschapv2"
    )
    assert res["replies"] == 0
    assert res["closed"] is not None or res["opened"] is False
    log = daemon.wait_log("crypto binding failed")
    if what == "cert-hash":
        assert "4242424242" in log  # the log names the hash the client presented


def test_spoofed_source_gets_nothing_through(daemon: Daemon, net: Netns) -> None:
    port = 5002
    sink = net.popen(
        net.srv,
        sys.executable,
        "-c",
        f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{TUNNEL_IP}", {port}))
s.settimeout(4)
print("ready", flush=True)
try:
    while True:
        data, addr = s.recvfrom(2048)
        print(addr[0], data.decode(), flush=True)
except socket.timeout:
    pass
""",
        stdout=subprocess.PIPE,
    )
    assert sink.stdout is not None
    assert sink.stdout.readline().strip() == "ready"
    res = net.client_tool(
        "spoof", *daemon.client_args(), "--udp-port", str(port), "--forged", "10.77.0.250"
    )
    out, _ = sink.communicate(timeout=20)
    lines = out.strip().splitlines()
    assert sorted(lines) == sorted(f"{res['local']} legit-{i}" for i in range(3))
    assert res["replies"] == 1  # the session itself still works
    log = daemon.wait_log("spoofed 3")
    assert "forged" not in log


def test_fifty_concurrent_sessions(daemon: Daemon, net: Netns) -> None:
    res = net.client_tool("many", *daemon.client_args(), "--sessions", "50", timeout=240)
    assert res["errors"] == []
    assert res["opened"] == 50
    assert len(res["addresses"]) == 50  # type: ignore[arg-type]
    assert res["replies"] == 50


def test_non_sstp_request_gets_http_error(daemon: Daemon, net: Netns) -> None:
    code = f"""
import socket, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("{SERVER_IP}", 443), timeout=10) as raw:
    with ctx.wrap_socket(raw) as s:
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
print(data.split(b"\\r\\n")[0].decode())
"""
    r = net.run(net.cli, sys.executable, "-c", code)
    assert r.stdout.strip().startswith("HTTP/1.1 4")


def test_garbage_after_handshake_aborts_only_that_session(daemon: Daemon, net: Netns) -> None:
    code = f"""
import socket, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("{SERVER_IP}", 443), timeout=10) as raw:
    with ctx.wrap_socket(raw) as s:
        s.sendall(b"SSTP_DUPLEX_POST /sra_{{BA195980-CD49-458b-9E23-C84EE0ADCD75}}/ HTTP/1.1\\r\\n"
                  b"Host: x\\r\\nContent-Length: 18446744073709551615\\r\\n\\r\\n")
        head = s.recv(4096)
        s.sendall(b"\\x77" * 64)
        rest = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                rest += chunk
        except (ConnectionError, ssl.SSLError):
            pass
print(head.split(b"\\r\\n")[0].decode(), len(rest))
"""
    r = net.run(net.cli, sys.executable, "-c", code)
    assert r.stdout.split()[:3] == ["HTTP/1.1", "200", "OK"]
    assert r.stdout.split()[-1] == "0"  # framing lost: closed without sending anything
    # the daemon is still serving
    res = net.client_tool("ping", *daemon.client_args(), "--count", "1")
    assert res["replies"] == 1


def test_bulk_transfer_through_tun(daemon: Daemon, net: Netns, tmp_path: Path) -> None:
    """`sstpd connect` with a TUN device; kernel ping and a TCP transfer both ways."""
    with sstpd_connect(net, daemon, tmp_path, "sstpc0", "--route", POOL) as (client, info):
        assert info["peer"] == TUNNEL_IP, info
        r = net.run(net.cli, "ping", "-c", "3", "-i", "0.2", "-W", "2", TUNNEL_IP)
        assert " 0% packet loss" in r.stdout
        for direction in ("up", "down"):
            received, sent = net.bulk_transfer(TUNNEL_IP, direction, 32 * 1024 * 1024)
            assert received == sent, direction
    assert client.returncode == 0


def test_sigterm_disconnects_clients(tmp_path_factory: pytest.TempPathFactory) -> None:
    net = Netns("sstpdu")  # a daemon of its own: the module's daemon keeps running
    d = Daemon(net, tmp_path_factory.mktemp("daemon2"))
    try:
        net.up()
        d.prepare()
        d.start()
        hold = net.popen(
            net.cli,
            sys.executable,
            "-m",
            "tests.integration.client_tool",
            "hold",
            *d.client_args(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert hold.stdout is not None
        first = hold.stdout.readline()
        assert "local" in first
        t0 = time.monotonic()
        rc = d.stop()
        out, err = hold.communicate(timeout=20)
        assert rc == 0
        assert time.monotonic() - t0 < 10
        assert "disconnect" in out.lower(), out + err
        assert "stopping: disconnecting 1 sessions" in d.log_text()
    finally:
        if d.proc is not None:
            d.stop(signal.SIGKILL)
        net.down()


def test_daemon_still_alive(daemon: Daemon) -> None:
    assert daemon.proc is not None and daemon.proc.poll() is None
    # no traceback ever reached the log
    assert "Traceback" not in daemon.log_text()


def test_no_secrets_in_the_log(daemon: Daemon) -> None:
    text = daemon.log_text()
    assert "user 'alice'" in text  # the log does talk about alice...
    for password in USERS.values():  # ...but never shows a password or an NT hash
        assert password not in text
        assert nt_password_hash(password).hex() not in text
