"""Client profiles served by the status app under a real gunicorn.

gunicorn runs ``sstpd.status:create_app()`` on 127.0.0.1 (a free port) with
``SSTPD_CONFIG`` naming a configuration; no daemon is needed (profiles come from the
configuration, not from the control socket). Checks what an administrator downloads:
the right file and name, no secret, and that a changed configuration shows at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sstpd import certs, users
from sstpd.config import load_config
from sstpd.profiles import make_profile
from tests.integration.netns import ROOT

PASSWORD = "Pr0file-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    d = tmp_path_factory.mktemp("profiles-web")
    certs.generate_self_signed(
        str(d / "server.crt"), str(d / "server.key"), common_name="vpn.example.com", sans=[]
    )
    users.add_user(str(d / "users"), "alice", password=PASSWORD, nt_hash=None)
    conf = d / "sstpd.toml"
    conf.write_text(
        '[server]\ncertificate = "server.crt"\nkey = "server.key"\n'
        '[tunnel]\nroutes = ["10.1.0.0/16"]\n[auth]\nusers_file = "users"\n'
    )
    port = _free_port()
    log = d / "gunicorn.log"
    env = dict(
        os.environ,
        SSTPD_CONFIG=str(conf),
        SSTPD_CONTROL_SOCKET=str(d / "absent.sock"),
        PYTHONPATH=str(ROOT),
    )
    with open(log, "w") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
             "sstpd.status:create_app()"],
            cwd=str(ROOT), env=env, stdout=logf, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("gunicorn did not start:\n" + log.read_text()) from None
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}", conf
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    assert "Traceback" not in log.read_text(), log.read_text()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=15) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


def test_index_lists_every_platform(site: tuple[str, Path]) -> None:
    url, _ = site
    status, headers, body = get(f"{url}/profiles/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for platform in ("windows", "mikrotik", "networkmanager", "sstpc", "certificate"):
        assert f'href="{platform}"' in body.decode()
    # the status page links to it (the daemon is down here: the page still renders)
    assert b'href="profiles/"' in get(f"{url}/")[2]


@pytest.mark.parametrize(
    ("platform", "filename"),
    [
        ("windows", "vpn.example.com.ps1"),
        ("mikrotik", "vpn.example.com.rsc"),
        ("networkmanager", "vpn.example.com.nmconnection"),
        ("sstpc", "vpn.example.com.sh"),
        ("certificate", "vpn.example.com.crt"),
    ],
)
def test_download_is_the_profile_without_secrets(
    site: tuple[str, Path], platform: str, filename: str
) -> None:
    url, conf = site
    status, headers, body = get(f"{url}/profiles/{platform}?user=alice")
    assert status == 200
    assert headers["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert headers["Cache-Control"] == "no-store"
    expected = make_profile(load_config(str(conf)), platform, "alice").text.encode()
    assert body == expected
    nt_hash = users.load_users(str(conf.parent / "users"))["alice"].nt_hash.hex()
    assert PASSWORD.encode() not in body and nt_hash.encode() not in body
    assert b"PRIVATE KEY" not in body
    if platform != "certificate":
        assert b"10.1.0.0/16" in body


def test_bad_requests(site: tuple[str, Path]) -> None:
    url, _ = site
    assert get(f"{url}/profiles/openvpn")[0] == 404
    status, _, body = get(f"{url}/profiles/windows?user=a%27b")
    assert status == 400 and b"user" in body
    req = urllib.request.Request(f"{url}/profiles/windows", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=15)
    assert e.value.code == 405


def test_a_changed_configuration_shows_at_once(site: tuple[str, Path]) -> None:
    url, conf = site
    before = conf.read_text()
    try:
        conf.write_text(before.replace("[tunnel]", '[tunnel]\ndomain = "corp.example"'))
        body = get(f"{url}/profiles/windows")[2].decode()
        assert "-DnsSuffix 'corp.example'" in body
        # a broken configuration: 503 with the file and line, nothing half-made
        conf.write_text(before.replace('routes = ["10.1.0.0/16"]', 'routes = ["10.1.0.1/16"]'))
        status, _, body = get(f"{url}/profiles/windows")
        assert status == 503
        assert f"{conf}:5: tunnel.routes: 10.1.0.1/16 has host bits set".encode() in body
    finally:
        conf.write_text(before)
