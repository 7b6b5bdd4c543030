"""ACME HTTP-01 with Debian's pebble: the daemon answers on port 80 (the option for a
TLS offloader in front of 443), obtains the certificate and serves it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.integration.netns import SERVER_IP, Daemon, Netns, namespaces
from tests.integration.pebble import (
    NAME,
    Pebble,
    acme_section,
    cert_state,
    pebble_running,
    start_without_certificate,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
    pytest.mark.skipif(shutil.which("pebble") is None, reason="needs Debian's pebble"),
]


CTL = [sys.executable, "-m", "sstpd.ctl"]
VALIDITY = 45


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpdh") as n:
        yield n


@pytest.fixture(scope="module")
def pebble(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    # short-lived certificates: the daemon must renew on its own two thirds in
    with pebble_running(
        Pebble(net, tmp_path_factory.mktemp("pebble-http"), validity=VALIDITY)
    ) as p:
        yield p


@pytest.fixture(scope="module")
def daemon(
    net: Netns, pebble: Pebble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    d = Daemon(
        net,
        tmp_path_factory.mktemp("acme-http-daemon"),
        extra_config=acme_section(pebble, challenge="http-01", key_type="rsa"),
    )
    start_without_certificate(d)  # it must serve a placeholder and order one
    yield d
    d.stop()


def http(net: Netns, request: bytes) -> bytes:
    code = (
        "import socket,sys;"
        f"s=socket.create_connection(({SERVER_IP!r},80),timeout=10);"
        "s.sendall(sys.stdin.buffer.read());d=b''\n"
        "while (c:=s.recv(4096)):d+=c\n"
        "sys.stdout.buffer.write(d)"
    )
    r = subprocess.run(
        ["ip", "netns", "exec", net.cli, sys.executable, "-c", code],
        input=request,
        capture_output=True,
        timeout=30,
    )
    return r.stdout


def test_obtains_certificate_through_http01(daemon: Daemon, net: Netns, pebble: Pebble) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ans = cert_state(daemon)
        if ans["certificate"] and not ans["certificate"]["self_signed"]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(daemon.log_text()[-5000:])
    assert ans["certificate"]["names"] == [NAME]
    assert ans["acme"]["challenge"] == "http-01"
    log = daemon.log_text()
    assert "ACME: http-01 responder on port 80" in log
    assert "ACME: answering http-01 for sstp.example.test" in log
    # no TLS-ALPN routing on this listener
    assert "alpn=acme-tls/1" not in log
    root = daemon.workdir / "pebble-root.pem"
    root.write_bytes(pebble.root())
    res = net.client_tool(
        "ping", "--host", SERVER_IP, "--ca-file", str(root), "--server-name", NAME
    )
    assert res["replies"] == 3


def test_http_responder_rejects_everything_else(daemon: Daemon, net: Netns) -> None:
    assert http(
        net, b"GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: x\r\n\r\n"
    ).startswith(b"HTTP/1.1 404")
    assert http(net, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert http(net, b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert http(net, b"GET /" + b"a" * 100_000 + b"\r\n\r\n") == b""  # over the line limit
    # still serving
    assert cert_state(daemon)["ok"] is True


def test_renews_by_itself_two_thirds_into_the_lifetime(daemon: Daemon) -> None:
    first = cert_state(daemon)
    cert = first["certificate"]
    assert cert["not_after"] - cert["not_before"] == pytest.approx(VALIDITY, abs=2)
    due = cert["not_before"] + (cert["not_after"] - cert["not_before"]) * 2 / 3
    assert first["acme"]["next_renewal"] == pytest.approx(due, abs=2)
    # no command: the daemon's own schedule
    deadline = time.time() + VALIDITY + 30
    while time.time() < deadline:
        now = cert_state(daemon)
        if now["certificate"]["sha256"] != cert["sha256"] and not now["acme"]["in_progress"]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(daemon.log_text()[-4000:])
    renewed_at = now["acme"]["last_success"]
    assert renewed_at >= due - 1
    assert renewed_at < cert["not_after"]  # before the old one expired
    assert now["acme"]["renewals"] == first["acme"]["renewals"] + 1
    assert now["acme"]["last_error"] == ""
