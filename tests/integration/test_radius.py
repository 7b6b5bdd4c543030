"""RADIUS against a real FreeRADIUS 3.2: logins, keys, attributes, accounting, failover.

FreeRADIUS runs in the server namespace beside the daemon (started once per module, its
own generated raddb, see ``freeradius.py``); the package's client connects from the client
namespace. Every login through RADIUS opens only if the crypto binding verified with the
HLAK taken from the MS-MPPE keys of the Access-Accept.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sstpd.proto.radius import Code, RadiusPacket
from tests.integration.ctl_client import HeldClient
from tests.integration.freeradius import SECRET, FreeRadius, serving
from tests.integration.netns import CLIENT_IP, SERVER_IP, Daemon, Netns, namespaces, wait_for
from tests.integration.test_control import ctl, ctl_json

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

INTERIM = 2
FAKE_PORT = 1912  # the forging responder
DEAD_PORT = 1999  # nothing listens here
DAE_PORT = 3799
DAE_SECRET = "dae-test-secret"


def radius_config(servers: list[tuple[int, str]], extra: str = "", acct: bool = True) -> str:
    text = f"""
[radius]
nas_identifier = "sstpd-test"
timeout = 1.0
retries = 1
interim_interval = {INTERIM}
{extra}
"""
    for port, secret in servers:
        text += (
            f'\n[[radius.server]]\naddress = "{SERVER_IP}"\nport = {port}\nsecret = "{secret}"\n'
        )
    if acct:
        text += f'\n[[radius.accounting_server]]\naddress = "{SERVER_IP}"\nsecret = "{SECRET}"\n'
    if "dae_listen" in extra:
        text += f'\n[[radius.dae_client]]\naddress = "{SERVER_IP}"\nsecret = "{DAE_SECRET}"\n'
    return text


def make_daemon(
    net: Netns,
    workdir: Path,
    servers: list[tuple[int, str]],
    n: int,
    backends: str,
    extra: str = "",
    listen: str = SERVER_IP,
) -> Daemon:
    d = Daemon(
        net,
        workdir,
        listen=listen,
        port=443 if listen != SERVER_IP else 443 + n * 1000,
        interface=f"sstp{n}",
        tunnel_ip=f"10.{77 + n}.0.1",
        pool=f"10.{77 + n}.0.0/24",
    )
    d.prepare()
    text = d.config.read_text().replace(
        '[auth]\nusers_file = "users"', f'[auth]\nusers_file = "users"\nbackends = {backends}'
    )
    d.config.write_text(text + radius_config(servers, extra))
    d.start()
    return d


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpdr") as n:
        yield n


@pytest.fixture(scope="module")
def freeradius(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreeRadius]:
    with serving(FreeRadius(tmp_path_factory.mktemp("raddb"), SERVER_IP), net, net.srv) as fr:
        yield fr


@pytest.fixture(scope="module")
def daemon(
    net: Netns, freeradius: FreeRadius, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    d = make_daemon(
        net,
        tmp_path_factory.mktemp("rad-daemon"),
        [(1812, SECRET)],
        0,
        '["radius"]',
        f'dae_listen = "{SERVER_IP}:{DAE_PORT}"',
    )
    yield d
    d.stop()


def connect(net: Netns, d: Daemon, user: str, password: str, auth: str) -> dict[str, Any]:
    return net.client_tool(
        "connect", *d.client_args(), "--user", user, "--password", password, "--auth", auth
    )


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize("auth", ["eap-mschapv2", "mschapv2", "pap"])
def test_login_through_radius(net: Netns, daemon: Daemon, auth: str) -> None:
    res = net.client_tool(
        "ping", *daemon.client_args(), "--user", "ruser", "--password", "ruser-pass", "--auth", auth
    )
    assert res["replies"] == 3  # traffic flows: the binding verified with the RADIUS HLAK
    log = daemon.wait_log("RADIUS Access-Accept for 'ruser'")
    assert f"user 'ruser' ({auth}) connected" in log
    assert "RADIUS Reply-Message: hello from radius" in log


def test_users_file_not_consulted_with_radius_only(net: Netns, daemon: Daemon) -> None:
    res = connect(net, daemon, "alice", "alice-secret", "mschapv2")  # in the users file only
    assert res["ok"] is False and res["code"] == 691


@pytest.mark.parametrize("auth", ["eap-mschapv2", "mschapv2", "pap"])
def test_wrong_password_is_691_and_logged(net: Netns, daemon: Daemon, auth: str) -> None:
    res = connect(net, daemon, "ruser", "wrong", auth)
    assert res["ok"] is False
    if auth != "pap":
        assert res["code"] == 691
    daemon.wait_log("RADIUS Access-Reject")
    assert "authentication failed" in daemon.log_text()


def test_accept_without_mppe_keys_fails_clearly(net: Netns, daemon: Daemon) -> None:
    res = connect(net, daemon, "nokeys", "nokeys-pass", "mschapv2")
    assert res["ok"] is False
    daemon.wait_log("Access-Accept without MS-MPPE-Send-Key/Recv-Key")


def test_framed_ip_address_honoured(net: Netns, daemon: Daemon) -> None:
    res = connect(net, daemon, "fixed", "fixed-pass", "mschapv2")
    assert res == {"ok": True, "local": "10.77.0.77"}


def test_session_timeout_ends_session(net: Netns, daemon: Daemon, freeradius: FreeRadius) -> None:
    c = HeldClient(net, SERVER_IP, str(daemon.cert), "short", "short-pass")
    t0 = time.monotonic()
    reason = c.wait_closed(timeout=20)
    took = time.monotonic() - t0
    assert 2.5 < took < 10, took  # Session-Timeout = 4
    assert reason
    daemon.wait_log("session timeout from RADIUS reached")
    stop = wait_for(
        "the Stop of 'short'",
        lambda: [r for r in freeradius.records_of("short") if r["Acct-Status-Type"] == "Stop"],
        10,
    )
    assert stop[-1]["Acct-Terminate-Cause"] == "Session-Timeout"


def test_idle_timeout_ends_session(net: Netns, daemon: Daemon, freeradius: FreeRadius) -> None:
    c = HeldClient(net, SERVER_IP, str(daemon.cert), "idle", "idle-pass")
    assert c.ping(2) == 2
    c.wait_closed(timeout=20)
    daemon.wait_log("idle timeout from RADIUS reached")
    stop = wait_for(
        "the Stop of 'idle'",
        lambda: [r for r in freeradius.records_of("idle") if r["Acct-Status-Type"] == "Stop"],
        10,
    )
    assert stop[-1]["Acct-Terminate-Cause"] == "Idle-Timeout"


# ---------------------------------------------------------------- accounting


def test_accounting_start_interim_stop_match_sstpctl(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    c = HeldClient(net, SERVER_IP, str(daemon.cert), "ruser", "ruser-pass")
    assert c.ping(5) == 5
    rows = [s for s in ctl_json(daemon, "sessions")["sessions"] if s["user"] == "ruser"]
    assert len(rows) == 1
    row = rows[0]

    def interim_after() -> list[dict[str, str]]:
        recs = [
            r
            for r in freeradius.records_of("ruser")
            if r["Acct-Status-Type"] == "Interim-Update"
            and int(r.get("Acct-Session-Time", "0")) >= row["duration"]
        ]
        return recs

    # traffic has stopped: the next interim carries exactly what sstpctl shows
    interim = wait_for("an Interim-Update", interim_after, 3 * INTERIM + 5)[-1]
    assert int(interim["Acct-Input-Octets"]) == row["rx_bytes"]
    assert int(interim["Acct-Output-Octets"]) == row["tx_bytes"]
    assert int(interim["Acct-Input-Packets"]) == row["rx_packets"]
    assert interim["Acct-Input-Gigawords"] == "0"
    sid = interim["Acct-Session-Id"]
    start = [r for r in freeradius.records_of("ruser") if r["Acct-Session-Id"] == sid]
    assert start[0]["Acct-Status-Type"] == "Start"
    assert start[0]["Calling-Station-Id"] == CLIENT_IP
    assert start[0]["NAS-Port-Type"] == "Virtual"
    assert start[0]["Framed-IP-Address"] == row["address"]
    assert start[0]["NAS-Identifier"] == "sstpd-test"
    assert start[0]["Class"] == "0x" + b"cls-ruser".hex()  # echoed from the Accept
    assert interim["Class"] == start[0]["Class"]
    c.send("close")
    c.wait_closed()
    stop = wait_for(
        "the Stop",
        lambda: [
            r
            for r in freeradius.records_of("ruser")
            if r["Acct-Session-Id"] == sid and r["Acct-Status-Type"] == "Stop"
        ],
        10,
    )[0]
    assert stop["Acct-Terminate-Cause"] == "User-Request"
    assert int(stop["Acct-Input-Octets"]) >= row["rx_bytes"]
    assert int(stop["Acct-Session-Time"]) >= INTERIM


# ---------------------------------------------------------------- failover, forgery, outage


class Forger:
    """A UDP responder that answers each Access-Request with a forged Access-Accept:
    right secret, right Response Authenticator, but no Message-Authenticator."""

    def __init__(self, net: Netns, port: int) -> None:
        # bound inside the server namespace by a helper process
        self.proc = net.popen(
            net.srv,
            "python3",
            "-c",
            FORGER_SCRIPT,
            SERVER_IP,
            str(port),
            SECRET,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def count(self) -> int:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return int(out.split()[-1]) if out.split() else 0


FORGER_SCRIPT = r"""
import hashlib, signal, socket, struct, sys
addr, port, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
n = 0
def bye(*_):
    print(n, flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(4096)
    n += 1
    ident, auth = data[1], data[4:20]
    attrs = bytes([18, 8]) + b"forged"
    head = struct.pack("!BBH", 2, ident, 20 + len(attrs))
    resp = hashlib.md5(head + auth + attrs + secret).digest()
    s.sendto(head + resp + attrs, peer)
"""


@pytest.fixture(scope="module")
def failover_daemon(
    net: Netns, freeradius: FreeRadius, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    d = make_daemon(
        net,
        tmp_path_factory.mktemp("rad-failover"),
        [(FAKE_PORT, SECRET), (1812, SECRET)],
        1,
        '["radius"]',
    )
    yield d
    d.stop()


def test_forged_answer_ignored_then_failover(net: Netns, failover_daemon: Daemon) -> None:
    forger = Forger(net, FAKE_PORT)
    try:
        res = connect(net, failover_daemon, "ruser", "ruser-pass", "mschapv2")
    finally:
        forged = forger.count()
    assert res["ok"] is True  # the second server answered
    assert forged == 2  # retries + 1 transmissions to the first server
    log = failover_daemon.log_text()
    assert "ignored: no Message-Authenticator" in log
    assert f"server {SERVER_IP}:{FAKE_PORT} marked dead" in log
    # the dead server is skipped now: the next login goes straight to the second
    t0 = time.monotonic()
    assert connect(net, failover_daemon, "ruser", "ruser-pass", "pap")["ok"] is True
    assert time.monotonic() - t0 < 5
    assert failover_daemon.log_text().count("marked dead") == 1


def test_framed_ip_outside_the_pool_is_refused(net: Netns, failover_daemon: Daemon) -> None:
    # this daemon's pool is 10.78.0.0/24; RADIUS gives 'fixed' 10.77.0.77
    assert connect(net, failover_daemon, "fixed", "fixed-pass", "pap")["ok"] is False
    failover_daemon.wait_log("Framed-IP-Address 10.77.0.77 for 'fixed' is outside tunnel.pool")


def test_radius_down_fails_cleanly(
    net: Netns, daemon: Daemon, tmp_path_factory: pytest.TempPathFactory
) -> None:
    held = HeldClient(net, SERVER_IP, str(daemon.cert), "ruser", "ruser-pass")
    d = make_daemon(
        net, tmp_path_factory.mktemp("rad-down"), [(DEAD_PORT, SECRET)], 2, '["radius"]'
    )
    try:
        t0 = time.monotonic()
        res = connect(net, d, "ruser", "ruser-pass", "mschapv2")
        took = time.monotonic() - t0
        assert res["ok"] is False and res["code"] == 691
        assert took < 10, took  # timeout 1 s x (retries 1 + 1) plus the handshake
        assert "no RADIUS authentication server answered" in d.log_text()
        assert d.proc is not None and d.proc.poll() is None  # the daemon lives on
        assert connect(net, d, "ruser", "ruser-pass", "pap")["ok"] is False
    finally:
        d.stop()
    assert held.ping(2) == 2  # a session on the other daemon is untouched
    held.send("close")
    held.wait_closed()


def test_garbage_to_the_radius_socket_is_dropped(net: Netns, daemon: Daemon) -> None:
    """Unknown identifiers and malformed datagrams at the daemon's RADIUS port: logged."""
    out = net.run(net.srv, "ss", "-unap").stdout
    ports = [
        int(line.split()[3].rsplit(":", 1)[1])
        for line in out.splitlines()
        if "python" in line and line.split()[3].startswith("0.0.0.0:")
    ]
    assert ports, out
    for port in ports:
        for payload in (b"\x02\x01\x00\x10", RadiusPacket(Code.ACCESS_ACCEPT, 77).encode()):
            net.run(
                net.srv,
                "python3",
                "-c",
                "import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                f"s.sendto(bytes.fromhex(sys.argv[1]),('127.0.0.1',{port}))",
                payload.hex(),
            )
    daemon.wait_log("matches no request")
    daemon.wait_log("malformed answer")
    assert connect(net, daemon, "fixed", "fixed-pass", "pap")["ok"] is True


# ---------------------------------------------------------------- Disconnect-Request


def radclient(net: Netns, ns: str, attrs: str, secret: str = DAE_SECRET) -> str:
    r = net.run(
        ns,
        "sh",
        "-c",
        f'echo "{attrs}" | radclient -x -r 1 -t 2 {SERVER_IP}:{DAE_PORT} disconnect {secret}',
        check=False,
        timeout=30,
    )
    return r.stdout + r.stderr


def test_disconnect_request_ends_the_session(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    c = HeldClient(net, SERVER_IP, str(daemon.cert), "ruser", "ruser-pass")
    other = HeldClient(net, SERVER_IP, str(daemon.cert), "fixed", "fixed-pass")
    # from an address that is not a dae_client, and with a wrong secret: no answer at all
    assert "Disconnect-ACK" not in radclient(net, net.cli, "User-Name = ruser")
    daemon.wait_log("not a configured dae_client")
    assert "Disconnect-ACK" not in radclient(net, net.srv, "User-Name = ruser", "wrong")
    daemon.wait_log("bad authenticator (wrong secret?)")
    assert c.ping(1) == 1
    # no such session -> NAK 503
    out = radclient(net, net.srv, "User-Name = nobody")
    assert "Disconnect-NAK" in out and "Session-Context-Not-Found" in out, out
    out = radclient(net, net.srv, "User-Name = ruser")
    assert "Received Disconnect-ACK" in out, out
    assert c.wait_closed() == "peer disconnected"
    daemon.wait_log("user 'ruser' disconnected by RADIUS")
    assert other.ping(1) == 1  # the other session is untouched
    stop = wait_for(
        "the Admin-Reset Stop",
        lambda: [
            r
            for r in freeradius.records_of("ruser")
            if r["Acct-Status-Type"] == "Stop" and r.get("Acct-Terminate-Cause") == "Admin-Reset"
        ],
        10,
    )
    assert stop
    # by Framed-IP-Address
    out = radclient(net, net.srv, "Framed-IP-Address = 10.77.0.77")
    assert "Received Disconnect-ACK" in out, out
    other.wait_closed()


def test_stops_for_all_sessions_at_shutdown(
    net: Netns, freeradius: FreeRadius, tmp_path_factory: pytest.TempPathFactory
) -> None:
    second_ip = "10.231.100.5"  # HeldClient connects to port 443: a second address
    net.run(net.srv, "ip", "addr", "replace", f"{second_ip}/24", "dev", "sti-s")
    d = make_daemon(
        net, tmp_path_factory.mktemp("rad-stop"), [(1812, SECRET)], 3, '["radius"]', "", second_ip
    )
    held = [HeldClient(net, second_ip, str(d.cert), "ruser", "ruser-pass") for _ in range(2)]
    wait_for("2 Starts", lambda: d.log_text().count("accounting Start acknowledged") >= 2, 10)
    assert d.stop() == 0
    for h in held:
        h.wait_closed()
    assert d.log_text().count("accounting Stop acknowledged") == 2
    stops = [
        r
        for r in freeradius.records_of("ruser")
        if r["Acct-Status-Type"] == "Stop" and r.get("Acct-Terminate-Cause") == "NAS-Reboot"
    ]
    assert len(stops) == 2, stops
    boot = [
        r
        for r in freeradius.records()
        if r.get("Acct-Status-Type") in ("Accounting-On", "Accounting-Off")
    ]
    kinds = [
        r["Acct-Status-Type"] for r in boot if r["Acct-Session-Id"] == boot[-1]["Acct-Session-Id"]
    ]
    assert kinds == ["Accounting-On", "Accounting-Off"], boot  # this daemon's start and stop


def test_many_sessions_through_radius_back_to_baseline(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    before = len(freeradius.records_of("ruser"))
    res = net.client_tool(
        "many", *daemon.client_args(), "--user", "ruser", "--password", "ruser-pass",
        "--sessions", "40", timeout=180,
    )  # fmt: skip
    assert res["opened"] == 40 and res["replies"] == 40, res
    # every session got its Start and its Stop, and nothing is left allocated
    recs = wait_for(
        "40 Stops",
        lambda: (
            (r := freeradius.records_of("ruser")[before:])
            and sum(x["Acct-Status-Type"] == "Stop" for x in r) == 40
            and r
        ),
        20,
    )
    assert sum(x["Acct-Status-Type"] == "Start" for x in recs) == 40
    stats = ctl_json(daemon, "stats")
    assert stats["sessions"] == 0 and stats["pool_in_use"] == 0, stats


def test_reload_changes_servers_and_secrets(net: Netns, failover_daemon: Daemon) -> None:
    d = failover_daemon
    original = d.config.read_text()
    fake = f'port = {FAKE_PORT}\nsecret = "{SECRET}"'
    assert fake in original
    try:
        # the first server is now the real one with a wrong secret: FreeRADIUS drops the
        # request (bad Message-Authenticator), the second entry (right secret) answers
        d.config.write_text(original.replace(fake, 'port = 1812\nsecret = "not-the-secret"'))
        assert ctl_json(d, "reload")["ok"] is True
        d.wait_log("changed: radius.servers")
        assert connect(net, d, "ruser", "ruser-pass", "pap")["ok"] is True
        d.wait_log(f"server {SERVER_IP}:1812: no answer to Access-Request for 'ruser' (try 2)")
        # a broken file is rejected and changes nothing
        d.config.write_text(original.replace(fake, f"port = {FAKE_PORT}"))
        out = ctl(d, "--json", "reload", check=False)
        assert out.returncode != 0
        r = json.loads(out.stdout)
        assert r["ok"] is False and "radius.server[0].secret: give exactly one" in r["error"], r
    finally:
        d.config.write_text(original)
        ctl_json(d, "reload")
