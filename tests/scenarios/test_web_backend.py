"""Seed FAQ §1-2: the VPN shares port 443 with the organisation's web site.

The daemon answers the SSTP URI itself and hands every other request to nginx (serving
the site on a loopback port in the server namespace) with the client's address in
X-Forwarded-For / Forwarded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.netns import CLIENT_IP, SERVER_IP, Daemon, Netns

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

NGINX_CONF = """
user root;  # the test directory is private to root
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    log_format fwd '$remote_addr xff=$http_x_forwarded_for fwd=$http_forwarded '
                   'proto=$http_x_forwarded_proto "$request"';
    access_log {d}/access.log fwd;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
    server {{
        listen 127.0.0.1:8081;
        root {d}/www;
        location / {{ index index.html; }}
    }}
}}
"""

PAGE = "<html><body><h1>Example Org</h1></body></html>\n"

WAIT_FOR_NGINX = """
import socket, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", 8081), 1).close()
        break
    except OSError:
        time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Netns, Path]]:
    net = Netns("sstpdw")
    d = tmp_path_factory.mktemp("nginx")
    daemon = Daemon(
        net, tmp_path_factory.mktemp("web-daemon"), extra_config='web_backend = "127.0.0.1:8081"'
    )
    nginx: subprocess.Popen[str] | None = None
    try:
        net.up()
        (d / "www").mkdir()
        (d / "tmp").mkdir()
        (d / "www" / "index.html").write_text(PAGE)
        (d / "nginx.conf").write_text(NGINX_CONF.format(d=d))
        net.run(net.srv, "nginx", "-t", "-q", "-c", str(d / "nginx.conf"))
        nginx = net.popen(
            net.srv,
            "nginx",
            "-c",
            str(d / "nginx.conf"),
            "-g",
            "daemon off;",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        net.run(net.srv, sys.executable, "-c", WAIT_FOR_NGINX)
        daemon.prepare()
        daemon.start()
        yield daemon, net, d
    finally:
        daemon.stop()
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        net.down()


def _https_get(net: Netns, ca: Path, path: str, headers: str = "") -> str:
    code = f"""
import socket, ssl
ctx = ssl.create_default_context(cafile="{ca}")
with socket.create_connection(("{SERVER_IP}", 443), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="{SERVER_IP}") as s:
        s.sendall(b"GET {path} HTTP/1.1\\r\\nHost: www.example.org\\r\\n{headers}\\r\\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
print(data.decode())
"""
    return net.run(net.cli, sys.executable, "-c", code).stdout


def test_web_request_reaches_the_site(site: tuple[Daemon, Netns, Path]) -> None:
    daemon, net, d = site
    out = _https_get(net, daemon.cert, "/", "X-Forwarded-For: 6.6.6.6\\r\\n")
    assert out.startswith("HTTP/1.1 200 OK")
    assert "<h1>Example Org</h1>" in out
    log = (d / "access.log").read_text()
    assert f"xff={CLIENT_IP} fwd=for={CLIENT_IP};proto=https proto=https" in log
    assert "6.6.6.6" not in log  # a forged header does not survive


def test_missing_page_is_the_sites_404(site: tuple[Daemon, Netns, Path]) -> None:
    daemon, net, _ = site
    out = _https_get(net, daemon.cert, "/nope")
    assert out.startswith("HTTP/1.1 404") and "nginx" in out


def test_sstp_on_the_same_port(site: tuple[Daemon, Netns, Path]) -> None:
    daemon, net, _ = site
    res = net.client_tool("ping", *daemon.client_args())
    assert res["replies"] == 3
