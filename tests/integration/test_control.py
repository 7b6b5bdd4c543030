"""The control socket and sstpctl against a running daemon with real client sessions."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sstpd import certs, control
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


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpdc") as n:
        yield n


@pytest.fixture(scope="module")
def daemon(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(Daemon(net, tmp_path_factory.mktemp("ctl-daemon"))) as d:
        yield d


def sock(d: Daemon) -> str:
    return str(d.workdir / "control.sock")


def ctl(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "sstpd.ctl", "--socket", sock(d), *args],
        text=True,
        capture_output=True,
        cwd=str(ROOT),
        timeout=30,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"sstpctl {' '.join(args)}: {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def ctl_json(d: Daemon, *args: str) -> dict[str, Any]:
    return json.loads(ctl(d, "--json", *args).stdout)  # type: ignore[no-any-return]


def hold(net: Netns, d: Daemon, user: str = "alice", ca: Path | None = None) -> HeldClient:
    return HeldClient(net, SERVER_IP, str(ca or d.cert), user, USERS[user])


def session_of(d: Daemon, user: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [
        s for s in ctl_json(d, "sessions")["sessions"] if s["user"] == user
    ]
    assert len(rows) == 1, rows
    return rows[0]


def sha256_of(cert: Path) -> str:
    return certs.fingerprints(certs.load_certificate_der(str(cert)))["sha256"]


def raw_exchange(path: str, payload: bytes) -> list[dict[str, Any]]:
    """Send raw bytes on the control socket, return every answer line until EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    answers: list[dict[str, Any]] = [json.loads(line) for line in data.splitlines()]
    return answers


# ---------------------------------------------------------------------------------------


def test_socket_permissions(daemon: Daemon) -> None:
    st = os.stat(sock(daemon))
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert ctl_json(daemon, "health") == {
        "ok": True,
        "status": "ok",
        "accepting": True,
        "draining": False,
        "pool_free": 251,  # a /24 less the tunnel address and the two DNS servers in it
        "warnings": [],
    }


def test_malformed_requests_get_errors(daemon: Daemon) -> None:
    answers = raw_exchange(
        sock(daemon),
        b"garbage\n"
        b"[1, 2]\n"
        b'{"cmd": "nope"}\n'
        b'{"nocmd": 1}\n'
        b"\xff\xfe\n"
        b'{"cmd": "kick"}\n'
        b'{"cmd": "kick", "id": "x"}\n'
        b'{"cmd": "kick", "id": true}\n'
        b'{"cmd": "kick", "user": "nobody"}\n'
        b'{"cmd": "health"}\n',
    )
    assert [a["ok"] for a in answers] == [False] * 9 + [True]
    assert "unknown command 'nope'" in answers[2]["error"]
    assert "no open session of user 'nobody'" in answers[8]["error"]
    # an over-long line: one error, then the daemon closes that connection
    answers = raw_exchange(sock(daemon), b'{"cmd": "health", "x": "' + b"a" * 20000 + b'"}\n')
    assert answers == [{"ok": False, "error": f"request longer than {control.MAX_REQUEST} bytes"}]
    # and it goes on serving
    assert control.call(sock(daemon), "health")["status"] == "ok"


def test_sessions_and_counters(daemon: Daemon, net: Netns) -> None:
    t0 = time.time()
    alice = hold(net, daemon)
    try:
        s = session_of(daemon, "alice")
        assert s["peer_host"] == CLIENT_IP
        assert s["peer_port"] == alice.info["port"]
        assert s["peer"] == f"{CLIENT_IP}:{alice.info['port']}"
        assert s["address"] == alice.info["local"]
        assert t0 - 1 <= s["connected_since"] <= time.time()
        assert s["auth_method"] == "eap-mschapv2"  # both ends' defaults
        assert s["tls_version"] in ("TLSv1.2", "TLSv1.3")
        assert s["tls_cipher"]
        assert s["binding_hash"] == "SHA256"
        assert s["cert_hash"] == sha256_of(daemon.cert).replace(":", "").lower()
        stats0 = ctl_json(daemon, "stats")

        assert alice.ping(5) == 5
        s2 = session_of(daemon, "alice")
        assert s2["rx_packets"] - s["rx_packets"] == 5
        assert s2["rx_bytes"] - s["rx_bytes"] == 5 * PING_SIZE
        assert s2["tx_packets"] - s["tx_packets"] == 5
        assert s2["tx_bytes"] - s["tx_bytes"] == 5 * PING_SIZE
        stats1 = ctl_json(daemon, "stats")
        assert stats1["sessions"] >= 1
        for key in ("rx_packets", "tx_packets"):
            assert stats1[key] - stats0[key] == 5
        for key in ("rx_bytes", "tx_bytes"):
            assert stats1[key] - stats0[key] == 5 * PING_SIZE

        table = ctl(daemon, "sessions").stdout
        assert table.splitlines()[0].split()[:4] == ["ID", "USER", "PEER", "ADDRESS"]
        assert "alice" in table and f"{CLIENT_IP}:{alice.info['port']}" in table
    finally:
        alice.stop()
    # the totals keep the traffic of the closed session
    stats2 = ctl_json(daemon, "stats")
    assert stats2["rx_packets"] >= stats1["rx_packets"]
    assert stats2["tx_bytes"] >= stats1["tx_bytes"]
    assert all(s["user"] != "alice" for s in ctl_json(daemon, "sessions")["sessions"])


def test_stats_counts_handshake_outcomes(daemon: Daemon, net: Netns) -> None:
    before = ctl_json(daemon, "stats")
    ok = connect_once(net, SERVER_IP, str(daemon.cert), "bob", USERS["bob"])
    assert ok["event"] == "open"
    bad = connect_once(net, SERVER_IP, str(daemon.cert), "bob", "wrong")
    assert bad["event"] == "error"
    res = net.client_tool("bad-binding", *daemon.client_args(), "--auth", "mschapv2")
    assert res["replies"] == 0
    daemon.wait_log("crypto binding failed")
    time.sleep(0.5)
    after = ctl_json(daemon, "stats")
    hs0, hs1 = before["handshakes"], after["handshakes"]
    assert hs1["opened"] - hs0["opened"] == 1
    assert hs1["auth_failed"] - hs0["auth_failed"] == 1
    assert hs1["binding_failed"] - hs0["binding_failed"] == 1
    assert after["auth_failures"] - before["auth_failures"] == 1
    assert after["crypto_binding_failures"] - before["crypto_binding_failures"] == 1
    lat = after["handshake_latency"]
    assert lat["count"] == hs1["opened"]
    assert lat["buckets"][-1] == ["+Inf", hs1["opened"]]
    assert 0 < lat["sum"] < 60 * lat["count"]
    text = ctl(daemon, "stats").stdout
    assert "handshakes" in text and "opened" in text


def test_kick_ends_exactly_that_session(daemon: Daemon, net: Netns) -> None:
    alice, bob = hold(net, daemon, "alice"), hold(net, daemon, "bob")
    try:
        r = ctl(daemon, "kick", "bob")
        assert r.stdout.startswith("disconnecting session")
        assert "disconnect" in bob.wait_closed().lower()
        assert alice.ping(2) == 2
        users_left = [s["user"] for s in ctl_json(daemon, "sessions")["sessions"]]
        assert users_left == ["alice"]
        # by id, through `sstpd ctl`
        sid = session_of(daemon, "alice")["id"]
        r = subprocess.run(
            [sys.executable, "-m", "sstpd", "ctl", "--socket", sock(daemon), "kick", str(sid)],
            text=True,
            capture_output=True,
            cwd=str(ROOT),
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"disconnecting session {sid}"
        alice.wait_closed()
        assert ctl_json(daemon, "sessions")["sessions"] == []
        r = ctl(daemon, "kick", "bob", check=False)
        assert r.returncode == 1 and "no open session of user 'bob'" in r.stderr
    finally:
        alice.stop()
        bob.stop()
    daemon.wait_log("kicked")


def _write_config(d: Daemon, text: str) -> None:
    tmp = d.config.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, d.config)


def test_reload_new_certificate_keeps_old_sessions(daemon: Daemon, net: Netns) -> None:
    old_cert = daemon.workdir / "old.crt"
    shutil.copy(daemon.cert, old_cert)
    old_fp = sha256_of(daemon.cert)
    alice = hold(net, daemon, "alice", ca=old_cert)
    try:
        assert alice.info["fingerprint"] == old_fp
        # a new certificate and key in place of the old ones
        new_dir = daemon.workdir / "tls-new"
        new_dir.mkdir()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sstpd",
                "cert",
                "--out-dir",
                str(new_dir),
                "--cn",
                SERVER_IP,
                "--san",
                SERVER_IP,
                "--key-type",
                "ec",
            ],
            check=True,
            capture_output=True,
            cwd=str(ROOT),
        )
        new_fp = sha256_of(new_dir / "server.crt")
        assert new_fp != old_fp
        os.replace(new_dir / "server.key", daemon.workdir / "tls" / "server.key")
        os.replace(new_dir / "server.crt", daemon.cert)

        r = ctl(daemon, "reload")
        assert "reloaded: 3 users" in r.stdout and "changed: certificate" in r.stdout
        assert new_fp.replace(":", "").lower() in r.stdout

        # the old session is still up, bound to the old certificate, and moves traffic
        assert alice.ping(3) == 3
        assert session_of(daemon, "alice")["cert_hash"] == old_fp.replace(":", "").lower()
        # a new session sees the new certificate and verifies its binding against it
        bob = hold(net, daemon, "bob", ca=daemon.cert)
        try:
            assert bob.info["fingerprint"] == new_fp
            assert session_of(daemon, "bob")["cert_hash"] == new_fp.replace(":", "").lower()
            assert bob.ping(2) == 2
        finally:
            bob.stop()
        # a client that still trusts only the old certificate is turned away by TLS
        res = connect_once(net, SERVER_IP, str(old_cert), "carol", USERS["carol"])
        assert res["event"] == "error" and "CERTIFICATE_VERIFY_FAILED" in res["error"]
    finally:
        alice.stop()


def test_invalid_reload_is_rejected_and_daemon_keeps_serving(daemon: Daemon, net: Netns) -> None:
    good = daemon.config.read_text()
    alice = hold(net, daemon)
    try:
        # a syntax error: the reason names the file and line
        _write_config(daemon, good.replace("port = 443", "port = 443 443"))
        r = ctl(daemon, "reload", check=False)
        assert r.returncode == 1
        assert "reload rejected" in r.stderr and f"{daemon.config}:" in r.stderr
        # a value out of range
        _write_config(daemon, good.replace("handshake_timeout = 20.0", "handshake_timeout = -1"))
        answer = control.request(sock(daemon), "reload")
        assert answer["ok"] is False and "server.handshake_timeout" in answer["error"]
        # a key that does not match the certificate
        _write_config(daemon, good)
        other = daemon.workdir / "other"
        subprocess.run(
            [sys.executable, "-m", "sstpd", "cert", "--out-dir", str(other), "--cn", "x"],
            check=True,
            capture_output=True,
            cwd=str(ROOT),
        )
        _write_config(daemon, good.replace('key = "tls/server.key"', f'key = "{other}/server.key"'))
        answer = control.request(sock(daemon), "reload")
        assert answer["ok"] is False and "does not match" in answer["error"]
        daemon.wait_log("reload rejected, keeping the running configuration")

        # still serving: the old session and a new one
        assert alice.ping(2) == 2
        res = connect_once(net, SERVER_IP, str(daemon.cert), "bob", USERS["bob"])
        assert res["event"] == "open"
        assert res["fingerprint"] == sha256_of(daemon.cert)
        assert ctl_json(daemon, "stats")["reload_failures"] == 3
    finally:
        _write_config(daemon, good)
        alice.stop()
    assert ctl_json(daemon, "reload")["ok"] is True


def test_reload_applies_live_settings_and_reports_restart_ones(daemon: Daemon, net: Netns) -> None:
    good = daemon.config.read_text()
    try:
        changed = good.replace('dns = ["10.77.0.53", "10.77.0.54"]', 'dns = ["10.77.0.99"]')
        changed = changed.replace('pool = "10.77.0.0/24"', 'pool = "10.78.0.0/24"')
        changed = changed.replace('level = "debug"', 'level = "info"')
        assert changed.count("10.77.0.99") == 1 and "10.78.0.0/24" in changed
        _write_config(daemon, changed)
        answer = ctl_json(daemon, "reload")
        assert answer["ok"] is True
        assert "tunnel.dns" in answer["changed"] and "log.level" in answer["changed"]
        assert answer["needs_restart"] == ["tunnel.pool: 10.77.0.0/24 -> 10.78.0.0/24"]
        daemon.wait_log("tunnel.pool: 10.77.0.0/24 -> 10.78.0.0/24 needs a restart")
        text = ctl(daemon, "reload").stdout
        assert "needs restart (not applied): tunnel.pool" in text
        # new sessions: the new DNS server, an address from the running pool
        res = connect_once(net, SERVER_IP, str(daemon.cert), "carol", USERS["carol"])
        assert res["dns"] == ["10.77.0.99"]
        assert res["local"].startswith("10.77.0.")
    finally:
        _write_config(daemon, good)
        ctl(daemon, "reload")


def test_sighup_reloads(daemon: Daemon) -> None:
    before = ctl_json(daemon, "stats")["reloads"]
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while ctl_json(daemon, "stats")["reloads"] == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ctl_json(daemon, "stats")["reloads"] == before + 1


def test_sstpctl_console_script(daemon: Daemon) -> None:
    exe = shutil.which("sstpctl") or str(Path(sys.executable).parent / "sstpctl")
    r = subprocess.run([exe, "--socket", sock(daemon), "health"], text=True, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok (accepting new sessions)"
    r = subprocess.run(
        [exe, "--socket", str(daemon.workdir / "nope.sock"), "stats"],
        text=True,
        capture_output=True,
    )
    assert r.returncode == 1 and "no such socket" in r.stderr


def test_daemon_healthy_afterwards(daemon: Daemon) -> None:
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "Traceback" not in daemon.log_text()
