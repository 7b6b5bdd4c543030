"""The control socket: server side with a fake handler, the blocking client, sstpctl's output,
the reload diff and the daemon-wide counters."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from sstpd import control, ctl, display
from sstpd.aio.control import ControlServer
from sstpd.aio.reload import live_config
from sstpd.aio.stats import Histogram, Stats
from sstpd.config import Config, parse_config
from sstpd.proto.outcome import Outcome
from sstpd.proto.session import Counters
from sstpd.records import (
    AcmeRecord,
    CertRecord,
    DrainRecord,
    HealthRecord,
    RenewRecord,
    SessionRecord,
)


class Running:
    """A ControlServer on its own event loop thread, with a recording handler."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(path, self.handler)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def handler(self, req: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(req)
        if req["cmd"] == "stats":
            raise RuntimeError("boom")
        if req["cmd"] == "kick":
            return {"ok": True, "kicked": [req.get("id")]}
        if req["cmd"] == "sessions":
            return {"ok": True, "sessions": []}
        return {"ok": True, "status": "ok", "accepting": True, "draining": False}

    def stop(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    r = Running(str(tmp_path / "run" / "sstpd" / "control.sock"))
    yield r
    r.stop()


def exchange(path: str, payload: bytes) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


# ---------------------------------------------------------------------------------------


def test_socket_file_and_directory(running: Running) -> None:
    st = os.stat(running.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert stat.S_IMODE(os.stat(os.path.dirname(running.path)).st_mode) == 0o750


def test_request_and_call(running: Running) -> None:
    assert control.call(running.path, "health")["status"] == "ok"
    assert control.call(running.path, "kick", id=3) == {"ok": True, "kicked": [3]}
    assert running.requests[-1] == {"cmd": "kick", "id": 3}
    answer = control.request(running.path, "stats")
    assert answer == {"ok": False, "error": "internal error: boom"}
    with pytest.raises(control.CommandFailed, match="internal error: boom"):
        control.call(running.path, "stats")


def test_several_requests_on_one_connection_and_bad_ones(running: Running) -> None:
    answers = exchange(
        running.path,
        b'{"cmd": "health"}\n\n   \nnot json\n{"cmd": 5}\n"str"\n{"cmd": "x"}\n{"cmd": "health"}',
    )
    assert [a["ok"] for a in answers] == [True, False, False, False, False, True]
    assert answers[1]["error"].startswith("not a JSON object")
    assert answers[2]["error"] == 'missing "cmd"'
    assert answers[4]["error"].startswith("unknown command 'x'")


def test_over_long_request_closes_the_connection(running: Running) -> None:
    line = b'{"cmd": "health", "pad": "' + b"x" * control.MAX_REQUEST + b'"}\n'
    answers = exchange(running.path, line + b'{"cmd": "health"}\n')
    assert answers == [{"ok": False, "error": f"request longer than {control.MAX_REQUEST} bytes"}]
    assert control.call(running.path, "health")["ok"] is True


def test_stale_socket_is_replaced_other_files_are_not(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # a socket file nobody listens on: what a killed daemon leaves
    r = Running(str(path))
    try:
        assert control.call(str(path), "health")["ok"] is True
    finally:
        r.stop()
    assert not path.exists()  # close() removes it
    path.write_text("not a socket")
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="exists and is not a socket"):
            loop.run_until_complete(ControlServer(str(path), lambda r: r).start())
    finally:
        loop.close()


def test_client_errors(tmp_path: Path) -> None:
    with pytest.raises(control.DaemonUnreachable, match="no such socket"):
        control.request(str(tmp_path / "missing.sock"), "health")
    path = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    try:
        with pytest.raises(control.DaemonUnreachable, match="connection refused"):
            control.request(str(path), "health")
    finally:
        s.close()


def test_decode_request() -> None:
    assert control.decode_request(b'{"cmd": "sessions"}') == {"cmd": "sessions"}
    for bad in (b"", b"{", b"[]", b"{}", b'{"cmd": null}', b"\xff", b'{"cmd": "shutdown"}'):
        with pytest.raises(ValueError):
            control.decode_request(bad)
    with pytest.raises(ValueError, match="longer than"):
        control.decode_request(b" " * (control.MAX_REQUEST + 1))


def test_default_socket_path(tmp_path: Path) -> None:
    cfg = tmp_path / "sstpd.toml"
    cfg.write_text('[server]\ncontrol_socket = "ctl/sock"\n')
    assert control.default_socket_path(str(cfg)) == str(tmp_path / "ctl" / "sock")


# ---------------------------------------------------------------------------------------
# sstpctl


def test_ctl_main(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["--socket", running.path, "health"]) == 0
    assert capsys.readouterr().out == "ok (accepting new sessions)\n"
    assert ctl.main(["--socket", running.path, "kick", "12"]) == 0
    assert running.requests[-1] == {"cmd": "kick", "id": 12}
    assert capsys.readouterr().out == "disconnecting session 12\n"
    ctl.main(["--socket", running.path, "kick", "--user", "12"])
    assert running.requests[-1] == {"cmd": "kick", "user": "12"}
    ctl.main(["--socket", running.path, "kick", "alice"])
    assert running.requests[-1] == {"cmd": "kick", "user": "alice"}
    capsys.readouterr()
    assert ctl.main(["--socket", running.path, "--json", "sessions"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "sessions": []}
    assert ctl.main(["--socket", running.path, "stats"]) == 1
    assert capsys.readouterr().err == "sstpctl: stats: internal error: boom\n"
    assert ctl.main(["--socket", running.path + ".nope", "sessions"]) == 1
    assert "no such socket" in capsys.readouterr().err


def test_ctl_socket_from_environment(
    running: Running, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SSTPD_CONTROL_SOCKET", running.path)
    assert ctl.main(["sessions"]) == 0
    assert capsys.readouterr().out == "no sessions\n"


def test_sessions_table() -> None:
    row = {
        "id": 3,
        "user": "alice",
        "peer": "192.0.2.1:4000",
        "peer_host": "192.0.2.1",
        "peer_port": 4000,
        "address": "10.77.0.2",
        "connected_since": 0.0,
        "duration": 3725.0,
        "rx_packets": 10,
        "rx_bytes": 1536,
        "tx_packets": 11,
        "tx_bytes": 5 * 1024 * 1024,
        "dropped": 0,
        "auth_method": "pap",
        "tls_version": "TLSv1.2",
        "tls_cipher": "ECDHE-RSA-AES256-GCM-SHA384",
        "binding_hash": "SHA256",
        "cert_hash": "0123456789abcdef" * 4,
    }
    lines = ctl.sessions_table([SessionRecord.from_json(row)]).splitlines()
    assert lines[0].split() == [
        "ID", "USER", "PEER", "ADDRESS", "CONNECTED", "UP", "RX", "PKTS", "RX", "TX",
        "PKTS", "TX", "AUTH", "TLS", "CIPHER", "BINDING",
    ]  # fmt: skip
    cells = lines[1].split()
    assert cells[:3] == ["3", "alice", "192.0.2.1:4000"]
    assert "1:02:05" in cells and "1.5" in cells and "5.0" in cells
    assert cells[-2:] == ["SHA256", "0123456789ab…"]
    assert ctl.sessions_table([]) == "no sessions"


def test_format_helpers() -> None:
    assert display.format_bytes(0) == "0 B"
    assert display.format_bytes(1023) == "1023 B"
    assert display.format_bytes(1024) == "1.0 KiB"
    assert display.format_bytes(3 * 1024**4 * 2000) == "6000.0 TiB"
    assert display.format_duration(59) == "0:00:59"
    assert display.format_duration(86400 + 3661) == "1d 1:01:01"


# ---------------------------------------------------------------------------------------
# reload diff, counters


def test_live_config_keeps_restart_only_settings() -> None:
    running = parse_config('[tunnel]\npool = "10.77.0.0/24"\ndns = ["10.0.0.1"]\n')
    new = parse_config(
        '[server]\nport = 8443\nmax_sessions = 5\n[tunnel]\npool = "10.78.0.0/24"\n'
        'dns = ["10.0.0.2"]\ninterface = "vpn1"\n[log]\nlevel = "debug"\n'
    )
    effective, changed, restart = live_config(running, new)
    assert changed == ["server.max_sessions", "tunnel.dns", "log.level"]
    assert restart == [
        "server.port: 443 -> 8443",
        "tunnel.interface: sstp0 -> vpn1",
        "tunnel.pool: 10.77.0.0/24 -> 10.78.0.0/24",
    ]
    assert effective.server.port == 443 and effective.server.max_sessions == 5
    assert effective.tunnel.pool == IPv4Network("10.77.0.0/24")
    assert effective.tunnel.interface == "sstp0"
    assert str(effective.tunnel.dns[0]) == "10.0.0.2"
    assert live_config(Config(), Config()) == (Config(), [], [])


def test_histogram_and_closed_totals() -> None:
    h = Histogram(bounds=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v)
    assert h.record().to_json() == {
        "buckets": [[0.1, 2], [1.0, 3], ["+Inf", 4]],
        "sum": 3.65,
        "count": 4,
    }
    st = Stats()
    c = Counters(rx_packets=2, rx_bytes=200)
    st.add_closed(c, Counters())
    c.rx_packets += 1
    c.rx_bytes += 100
    st.add_closed(c, Counters(rx_packets=2, rx_bytes=200))
    assert (st.closed.rx_packets, st.closed.rx_bytes) == (3, 300)
    st.outcome(Outcome.BINDING_FAILED)
    assert st.handshakes["binding_failed"] == 1 and st.crypto_binding_failures == 1


def test_sessions_table_shows_the_ipv6_prefix_only_when_a_session_has_one() -> None:
    base = {
        "id": 3,
        "user": "alice",
        "peer": "192.0.2.1:4000",
        "peer_host": "192.0.2.1",
        "peer_port": 4000,
        "address": "10.77.0.2",
        "ipv6_prefix": "",
        "connected_since": 0.0,
        "duration": 5.0,
        "rx_packets": 1,
        "rx_bytes": 1,
        "tx_packets": 1,
        "tx_bytes": 1,
        "dropped": 0,
        "auth_method": "pap",
        "tls_version": "TLSv1.2",
        "tls_cipher": "X",
        "binding_hash": "SHA256",
        "cert_hash": "",
    }
    v4 = SessionRecord.from_json(base)
    assert "IPV6" not in ctl.sessions_table([v4])
    dual = SessionRecord.from_json(base | {"id": 4, "ipv6_prefix": "2001:db8:77:5::/64"})
    assert dual.to_json()["ipv6_prefix"] == "2001:db8:77:5::/64"
    lines = ctl.sessions_table([v4, dual]).splitlines()
    assert lines[0].split()[:6] == ["ID", "USER", "PEER", "ADDRESS", "IPV6", "PREFIX"]
    assert lines[1].split()[3:5] == ["10.77.0.2", "-"]
    assert lines[2].split()[3:5] == ["10.77.0.2", "2001:db8:77:5::/64"]


class Scripted(Running):
    """A daemon whose answers are scripted per command: the first left in its list, or
    the last one when just one is left."""

    def __init__(self, path: str, script: dict[str, list[dict[str, Any]]]) -> None:
        self.script = script
        super().__init__(path)

    def handler(self, req: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(req)
        queue = self.script[req["cmd"]]
        return queue.pop(0) if len(queue) > 1 else queue[0]


def test_ctl_drain_reads_the_drain_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    health = HealthRecord(status="draining", accepting=False, draining=True, pool_free=9)
    answers = [
        {"ok": True, **DrainRecord(health=health, sessions=2).to_json()},
        {"ok": True, **health.to_json()},  # a daemon from before DrainRecord
        {"ok": True, **health.to_json(), "sessions": "2"},  # not sstpd's
    ]
    d = Scripted(str(tmp_path / "c.sock"), {"drain": answers})
    try:
        assert ctl.main(["--socket", d.path, "drain"]) == 0
        out = "draining (draining: refusing new sessions)\n"
        assert capsys.readouterr().out == out + "2 open sessions continue\n"
        assert ctl.main(["--socket", d.path, "drain"]) == 0
        assert capsys.readouterr().out == out
        assert ctl.main(["--socket", d.path, "drain"]) == 1
        err = "sstpctl: drain: unexpected answer: DrainRecord.sessions: str '2' is not int\n"
        assert capsys.readouterr().err == err
    finally:
        d.stop()


def _cert_answer(last_attempt: float | None, in_progress: bool, error: str = "") -> dict[str, Any]:
    acme = AcmeRecord(
        names=("vpn.example.com",),
        directory="https://ca/dir",
        challenge="tls-alpn-01",
        next_renewal=None,
        last_attempt=last_attempt,
        last_success=None,
        last_error=error,
        in_progress=in_progress,
        renewals=0,
        renewal_failures=1 if error else 0,
    )
    return {"ok": True, **CertRecord(certificate=None, path="", acme=acme).to_json()}


def test_ctl_cert_renew_reads_the_renew_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Started: it waits for a new attempt. Not started (one was in progress): it waits
    for that one to finish, though its last_attempt was already there before."""
    in_progress = RenewRecord(started=False, message="a renewal is in progress").to_json()
    script = {
        "renew": [{"ok": True, **in_progress}],
        "cert": [
            _cert_answer(100.0, True),  # before
            _cert_answer(100.0, True),
            _cert_answer(100.0, False, "the CA refused the order"),
        ],
    }
    d = Scripted(str(tmp_path / "c.sock"), script)
    try:
        assert ctl.main(["--socket", d.path, "cert", "renew", "--wait", "10"]) == 1
        assert capsys.readouterr().err == "sstpctl: cert renew: the CA refused the order\n"
        assert [r["cmd"] for r in d.requests] == ["cert", "renew", "cert", "cert"]
        # an answer that is not a RenewRecord: not polled for, said so
        d.script["renew"] = [{"ok": True, "started": 1, "message": "?"}]
        d.script["cert"] = [_cert_answer(100.0, False)]
        assert ctl.main(["--socket", d.path, "cert", "renew", "--wait", "10"]) == 1
        err = capsys.readouterr().err
        assert err == "sstpctl: cert: unexpected answer: RenewRecord.started: int 1 is not bool\n"
    finally:
        d.stop()
