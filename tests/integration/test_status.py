"""The status web app under a real gunicorn, drain/undrain, and the page in headless Chromium.

The daemon runs in its own network namespaces with real client sessions; gunicorn runs in
the root namespace on 127.0.0.1 and reaches the daemon through its control socket (unix
sockets do not belong to a network namespace).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.ctl_client import PING_SIZE, HeldClient, connect_once
from tests.integration.netns import (
    CLIENT_IP,
    ROOT,
    SERVER_IP,
    USERS,
    Daemon,
    Netns,
    namespaces,
    running,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpds") as n:
        yield n


@pytest.fixture(scope="module")
def daemon(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(Daemon(net, tmp_path_factory.mktemp("status-daemon"))) as d:
        yield d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def web(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gunicorn serving sstpd.status on 127.0.0.1; yields its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = dict(
        os.environ,
        SSTPD_CONTROL_SOCKET=str(daemon.workdir / "control.sock"),
        PYTHONPATH=str(ROOT),
    )
    with open(log, "w") as logf:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--access-logfile",
                "-",
                "sstpd.status:create_app()",
            ],
            cwd=str(ROOT),
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
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
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    assert "Traceback" not in log.read_text(), log.read_text()


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


def hold(net: Netns, d: Daemon, user: str) -> HeldClient:
    return HeldClient(net, SERVER_IP, str(d.cert), user, USERS[user])


def ctl(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sstpd.ctl", "--socket", str(d.workdir / "control.sock"), *args],
        text=True,
        capture_output=True,
        cwd=str(ROOT),
        timeout=30,
    )


def metrics(url: str) -> dict[str, Any]:
    status, headers, body = get(f"{url}/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def sample(families: dict[str, Any], family: str, **labels: str) -> float:
    found = [
        s.value
        for s in families[family].samples
        if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith("_created")
    ]
    assert len(found) == 1, (family, labels, families[family].samples)
    return float(found[0])


# ---------------------------------------------------------------------------------------


def test_every_endpoint(daemon: Daemon, net: Netns, web: str) -> None:
    alice = hold(net, daemon, "alice")
    try:
        assert alice.ping(4) == 4
        status, headers, body = get(f"{web}/healthz")
        assert (status, body) == (200, b"ok\n")
        assert headers["Cache-Control"] == "no-store"

        status, headers, body = get(f"{web}/api/sessions")
        assert status == 200 and headers["Content-Type"] == "application/json"
        sessions = json.loads(body)["sessions"]
        assert [s["user"] for s in sessions] == ["alice"]
        s = sessions[0]
        assert s["address"] == alice.info["local"] and s["peer_host"] == CLIENT_IP
        assert s["rx_packets"] == 4 and s["tx_bytes"] == 4 * PING_SIZE

        status, _, body = get(f"{web}/api/stats")
        assert status == 200 and json.loads(body)["sessions"] == 1

        fam = metrics(web)
        assert sample(fam, "sstpd_up") == 1
        assert sample(fam, "sstpd_sessions") == 1
        assert sample(fam, "sstpd_draining") == 0
        assert fam["sstpd_handshakes"].type == "counter"
        opened = sample(fam, "sstpd_handshakes", outcome="opened")
        assert opened >= 1
        assert sample(fam, "sstpd_bytes", direction="from_clients") >= 4 * PING_SIZE
        assert sample(fam, "sstpd_packets", direction="to_clients") >= 4
        assert sample(fam, "sstpd_auth_failures") == 0
        assert sample(fam, "sstpd_crypto_binding_failures") == 0
        hist = fam["sstpd_handshake_duration_seconds"]
        assert hist.type == "histogram"
        buckets = [x for x in hist.samples if x.name.endswith("_bucket")]
        assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == opened
        assert [b.value for b in buckets] == sorted(b.value for b in buckets)
        assert sample(fam, "sstpd_handshake_duration_seconds", le="+Inf") == opened

        status, headers, body = get(f"{web}/")
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert b"alice" in body and alice.info["local"].encode() in body

        status, headers, body = get(f"{web}/", method="POST")
        assert status == 405 and headers["Allow"] == "GET, HEAD"
        status, headers, body = get(f"{web}/healthz", method="HEAD")
        assert (status, body, headers["Content-Length"]) == (200, b"", "3")
        assert get(f"{web}/nope")[0] == 404
    finally:
        alice.stop()


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (tests/run installs Debian's chromium)")
    return exe


def _chromium_run(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="sstpd-chromium-") as profile:
        return subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--window-size=1200,800",
                *args,
            ],
            text=True,
            capture_output=True,
            timeout=120,
        )


def test_status_page_in_chromium(daemon: Daemon, net: Netns, web: str) -> None:
    alice, bob = hold(net, daemon, "alice"), hold(net, daemon, "bob")
    try:
        assert alice.ping(20) == 20
        assert bob.ping(3) == 3
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        shot.unlink(missing_ok=True)
        r = _chromium_run(f"--screenshot={shot}", f"{web}/")
        assert shot.exists() and shot.stat().st_size > 10_000, r.stderr[-2000:]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        r = _chromium_run("--dump-dom", f"{web}/")
        dom = r.stdout
        assert "<table>" in dom, r.stderr[-2000:]
        ids = {s["user"]: s["id"] for s in json.loads(get(f"{web}/api/sessions")[2])["sessions"]}
        for user, held in (("alice", alice), ("bob", bob)):
            row = dom.split(f'<tr data-session="{ids[user]}">', 1)
            assert len(row) == 2, dom
            cells = row[1].split("</tr>", 1)[0]
            assert f"<b>{user}</b>" in cells and held.info["local"] in cells
            assert f"{CLIENT_IP}:{held.info['port']}" in cells
        assert "Sessions (2)" in dom
    finally:
        alice.stop()
        bob.stop()


def test_drain_and_undrain(daemon: Daemon, net: Netns, web: str) -> None:
    alice = hold(net, daemon, "alice")
    try:
        refused0 = json.loads(ctl(daemon, "--json", "stats").stdout)["handshakes"]["refused"]
        r = ctl(daemon, "drain")
        assert r.returncode == 0 and r.stdout.startswith("draining")
        assert get(f"{web}/healthz")[::2] == (503, b"draining\n")
        assert ctl(daemon, "health").returncode == 1
        fam = metrics(web)
        assert sample(fam, "sstpd_draining") == 1 and sample(fam, "sstpd_accepting") == 0

        res = connect_once(net, SERVER_IP, str(daemon.cert), "bob", USERS["bob"])
        assert res["event"] == "error", res
        daemon.wait_log("refused: draining")
        stats = json.loads(ctl(daemon, "--json", "stats").stdout)
        assert stats["handshakes"]["refused"] == refused0 + 1
        assert alice.ping(3) == 3  # the existing session goes on

        r = ctl(daemon, "undrain")
        assert r.returncode == 0 and r.stdout.startswith("ok")
        assert get(f"{web}/healthz")[::2] == (200, b"ok\n")
        res = connect_once(net, SERVER_IP, str(daemon.cert), "bob", USERS["bob"])
        assert res["event"] == "open"
    finally:
        alice.stop()


def test_sigterm_after_drain_disconnects_the_rest(daemon: Daemon, net: Netns, web: str) -> None:
    """Last in this module: it stops the daemon. Then the app reports it down."""
    alice = hold(net, daemon, "alice")
    try:
        assert ctl(daemon, "drain").returncode == 0
        t0 = time.monotonic()
        assert daemon.stop() == 0
        assert "disconnect" in alice.wait_closed().lower()
        assert time.monotonic() - t0 < 10
    finally:
        alice.stop()
    assert "stopping: disconnecting 1 sessions" in daemon.log_text()
    assert "Traceback" not in daemon.log_text()

    status, _, body = get(f"{web}/healthz")
    assert status == 503 and body.startswith(b"down: ")
    fam = metrics(web)
    assert sample(fam, "sstpd_up") == 0 and "sstpd_sessions" not in fam
    status, _, body = get(f"{web}/api/sessions")
    assert status == 503 and "error" in json.loads(body)
    status, _, body = get(f"{web}/")
    assert status == 503 and b"daemon unreachable" in body
