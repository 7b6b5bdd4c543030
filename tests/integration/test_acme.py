"""ACME with Debian's real pebble: the daemon obtains its certificate through TLS-ALPN-01
answered on its own SSTP listener, serves it, renews it while sessions run.

Topology: the daemon in ``sstpda-srv`` (10.231.100.1:443); pebble (ACME server, its
validation authority) and pebble-challtestsrv (the DNS that resolves the test name to the
daemon) in ``sstpda-cli`` (10.231.100.2), where the test clients run too. pebble validates
by connecting to 10.231.100.1:443 with ALPN ``acme-tls/1``, exactly as Let's Encrypt would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sstpd.records import StatsRecord
from sstpd.status.metrics import render_metrics
from tests.integration.ctl_client import HeldClient
from tests.integration.netns import ROOT, SERVER_IP, USERS, Daemon, Netns, namespaces
from tests.integration.pebble import DIRECTORY as PEBBLE
from tests.integration.pebble import (
    NAME,
    Pebble,
    acme_section,
    ctl,
    ctl_json,
    pebble_running,
    root_file,
    start_without_certificate,
    wait_issued,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
    pytest.mark.skipif(shutil.which("pebble") is None, reason="needs Debian's pebble"),
]

CTL = [sys.executable, "-m", "sstpd.ctl"]


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpda") as n:
        yield n


@pytest.fixture(scope="module")
def pebble(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    with pebble_running(Pebble(net, tmp_path_factory.mktemp("pebble"))) as p:
        yield p


@pytest.fixture(scope="module")
def daemon(
    net: Netns, pebble: Pebble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    d = Daemon(
        net,
        tmp_path_factory.mktemp("acme-daemon"),
        extra_config=acme_section(pebble, email="admin@example.test", retry_interval=600),
    )
    start_without_certificate(d)  # it must serve a placeholder and order one
    yield d
    d.stop()


@pytest.fixture(scope="module")
def root_ca(pebble: Pebble, daemon: Daemon) -> Path:
    return root_file(pebble, daemon)


def served_cert(net: Netns, server_name: str | None, alpn: list[str] | None) -> dict[str, Any]:
    """Handshake from the client namespace; the certificate the daemon presented."""
    code = (
        "import ssl,socket,json,hashlib,sys;"
        "c=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT);c.check_hostname=False;"
        "c.verify_mode=ssl.CERT_NONE;"
        f"alpn={alpn!r};"
        "alpn and c.set_alpn_protocols(alpn);"
        f"s=c.wrap_socket(socket.create_connection(({SERVER_IP!r},443),timeout=10),"
        f"server_hostname={server_name!r});"
        "d=s.getpeercert(True);"
        "print(json.dumps({'sha256':hashlib.sha256(d).hexdigest(),"
        "'alpn':s.selected_alpn_protocol(),"
        "'acme_ext':bytes.fromhex('06082b0601050507011f') in d}))"
    )
    r = net.run(net.cli, sys.executable, "-c", code, check=False, timeout=30)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
    return json.loads(r.stdout)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------


def test_obtains_certificate_through_tls_alpn_on_the_sstp_listener(daemon: Daemon) -> None:
    ans = wait_issued(daemon)
    cert = ans["certificate"]
    assert cert["names"] == [NAME]
    assert "Pebble" in cert["issuer"]
    acme = ans["acme"]
    assert acme["renewals"] == 1 and acme["last_error"] == ""
    # the next renewal is two thirds into the lifetime
    expected = cert["not_before"] + (cert["not_after"] - cert["not_before"]) * 2 / 3
    deadline = time.monotonic() + 10
    while ctl_json(daemon, "cert")["acme"]["next_renewal"] != pytest.approx(expected, abs=2):
        assert time.monotonic() < deadline, ctl_json(daemon, "cert")
        time.sleep(0.2)
    log = daemon.log_text()
    # pebble's validation authority connected to the SSTP listener with ALPN acme-tls/1
    assert f"ClientHello sni={NAME} alpn=acme-tls/1 -> challenge" in log
    assert "ACME: installed the certificate" in log
    # files: the account key and order state are private
    acme_dir = daemon.workdir / "acme"
    for f in ("account.key", "account.json", "order.json"):
        assert (acme_dir / f).stat().st_mode & 0o777 == 0o600, f
    assert json.loads((acme_dir / "order.json").read_text())["status"] == "valid"
    assert (daemon.workdir / "tls" / "server.key").stat().st_mode & 0o777 == 0o600
    # sstpctl cert in words
    text = ctl(daemon, "cert").stdout
    assert NAME in text and "Pebble" in text and "tls-alpn-01" in text


def test_client_verifying_pebble_root_gets_a_tunnel(
    daemon: Daemon, net: Netns, root_ca: Path
) -> None:
    wait_issued(daemon)
    res = net.client_tool(
        "ping",
        "--host",
        SERVER_IP,
        "--ca-file",
        str(root_ca),
        "--server-name",
        NAME,
    )
    assert res["replies"] == 3
    # the same client without the name in SNI/verification is refused by TLS
    r = net.run(
        net.cli,
        sys.executable,
        "-m",
        "tests.integration.client_tool",
        "connect",
        "--host",
        SERVER_IP,
        "--ca-file",
        str(root_ca),
        check=False,
    )
    assert r.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in (r.stdout + r.stderr)


def test_metrics_show_expiry_and_renewals(daemon: Daemon) -> None:
    st = ctl_json(daemon, "stats")
    cert = ctl_json(daemon, "cert")["certificate"]
    assert st["certificate_not_after"] == cert["not_after"]
    assert st["acme_renewals"] >= 1
    text = render_metrics(StatsRecord.from_json(st))
    fam = {f.name: f for f in text_string_to_metric_families(text)}
    expiry = fam["sstpd_certificate_expiry_timestamp_seconds"].samples
    assert [s.value for s in expiry] == [float(cert["not_after"])]
    renewals = {s.labels["result"]: s.value for s in fam["sstpd_certificate_renewals"].samples}
    assert renewals["ok"] == st["acme_renewals"] >= 1


def test_forced_renewal_keeps_open_session_new_session_binds_new_cert(
    daemon: Daemon, net: Netns, root_ca: Path
) -> None:
    old = wait_issued(daemon)["certificate"]
    alice = HeldClient(net, SERVER_IP, str(root_ca), "alice", USERS["alice"], NAME)
    try:
        assert alice.info["fingerprint"].replace(":", "").lower() == old["sha256"]
        r = ctl(daemon, "cert", "renew")
        assert "renewed" in r.stdout
        new = ctl_json(daemon, "cert")["certificate"]
        assert new["sha256"] != old["sha256"] and not new["self_signed"]
        # the open session still passes traffic, bound to the old certificate
        assert alice.ping(3) == 3
        rows = ctl_json(daemon, "sessions")["sessions"]
        assert [s["cert_hash"] for s in rows if s["user"] == "alice"] == [old["sha256"]]
        # a new session sees and binds to the new certificate
        bob = HeldClient(net, SERVER_IP, str(root_ca), "bob", USERS["bob"], NAME)
        try:
            assert bob.info["fingerprint"].replace(":", "").lower() == new["sha256"]
            rows = ctl_json(daemon, "sessions")["sessions"]
            assert [s["cert_hash"] for s in rows if s["user"] == "bob"] == [new["sha256"]]
            assert bob.ping(2) == 2
        finally:
            bob.stop()
    finally:
        alice.stop()
    assert ctl_json(daemon, "cert")["acme"]["renewals"] >= 2


def test_normal_clients_never_get_the_challenge_certificate(daemon: Daemon, net: Netns) -> None:
    """Handshakes with the same name, with and without SNI/ALPN, while pebble validates."""
    normal = wait_issued(daemon)["certificate"]["sha256"]
    renew = subprocess.Popen(
        [*CTL, "--socket", str(daemon.workdir / "control.sock"), "cert", "renew"],
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[dict[str, Any]] = []
    pending_seen = False
    while True:
        pending_seen |= bool(ctl_json(daemon, "cert")["acme"]["pending_challenges"])
        for sni, alpn in [
            (NAME, None),
            (None, None),
            (NAME, ["http/1.1"]),
            (NAME, ["acme-tls/1", "http/1.1"]),
        ]:
            seen.append(served_cert(net, sni, alpn))
        if renew.poll() is not None:
            break
    assert renew.wait() == 0, renew.stderr.read() if renew.stderr else ""
    renewed = ctl_json(daemon, "cert")["certificate"]["sha256"]
    assert seen
    for s in seen:
        assert "error" not in s, s
        assert s["sha256"] in (normal, renewed), s
        assert s["alpn"] != "acme-tls/1" and not s["acme_ext"], s
    # and a validator-like client outside validation gets nothing
    assert "error" in served_cert(net, NAME, ["acme-tls/1"])
    print(f"{len(seen)} handshakes during the renewal, challenge pending seen: {pending_seen}")


def daemon_fds(d: Daemon) -> int:
    assert d.proc is not None
    # the daemon is the child of "ip netns exec" (which execs it: the same pid)
    return len(os.listdir(f"/proc/{d.proc.pid}/fd"))


def test_bad_client_hellos_are_closed_and_leave_nothing(daemon: Daemon, net: Netns) -> None:
    """Garbage, truncated, empty/huge ALPN, oversized and 30 slow senders at the daemon:
    closed (slow ones within limits.setup_timeout = 10 s, the TCP-to-SSTP-request budget),
    never a challenge certificate, and the daemon's descriptors are back to where they
    were."""
    wait_issued(daemon)
    before = daemon_fds(daemon)
    r = net.run(
        net.cli,
        sys.executable,
        "-m",
        "tests.integration.hello_probe",
        SERVER_IP,
        "443",
        NAME,
        "30",
        timeout=120,
    )
    res = json.loads(r.stdout)
    for key, v in res.items():
        assert not v["acme"], key
        # "oversized" goes to OpenSSL (the parser never decides against a client), which
        # waits for the announced 64 KiB until the handshake timeout
        limit = 15 if key.startswith("slow") or key == "oversized" else 5
        assert v["closed_after"] < limit, (key, v)
    slow = [v["closed_after"] for k, v in res.items() if k.startswith("slow")]
    assert len(slow) == 30 and min(slow) > 8  # held until the timeout, not dropped early
    deadline = time.monotonic() + 10
    while daemon_fds(daemon) != before:
        assert time.monotonic() < deadline, (daemon_fds(daemon), before)
        time.sleep(0.2)
    st = ctl_json(daemon, "stats")
    assert st["handshakes_in_progress"] == 0
    assert "no complete ClientHello within 10 s, closing" in daemon.log_text()
    # and it still serves
    assert served_cert(net, NAME, None)["alpn"] is None


def test_ca_rejecting_keeps_current_certificate(
    daemon: Daemon, net: Netns, pebble: Pebble, root_ca: Path
) -> None:
    before = wait_issued(daemon)["certificate"]
    pebble.dns_a("10.231.100.99")  # pebble now validates against an address nobody has
    try:
        r = ctl(daemon, "cert", "renew", check=False)
    finally:
        pebble.dns_a(None)
    assert r.returncode == 1
    assert "validation failed" in r.stderr, r.stderr
    ans = ctl_json(daemon, "cert")
    assert ans["certificate"]["sha256"] == before["sha256"]
    assert "validation failed" in ans["acme"]["last_error"]
    assert ans["acme"]["next_renewal"] >= time.time() + 500  # backoff from retry_interval
    daemon.wait_log("still serving the current certificate, next attempt in 600 s")
    assert (
        net.client_tool(
            "ping", "--host", SERVER_IP, "--ca-file", str(root_ca), "--server-name", NAME
        )["replies"]
        == 3
    )


def test_ca_unreachable_keeps_current_certificate(
    daemon: Daemon, net: Netns, pebble: Pebble, root_ca: Path
) -> None:
    before = wait_issued(daemon)["certificate"]
    pebble.stop()
    r = ctl(daemon, "cert", "renew", check=False)
    assert r.returncode == 1
    assert f"cannot reach {PEBBLE}" in r.stderr, r.stderr
    assert ctl_json(daemon, "cert")["certificate"]["sha256"] == before["sha256"]
    assert ctl_json(daemon, "stats")["acme_renewal_failures"] >= 2
    daemon.wait_log(f"cannot reach {PEBBLE}")
    assert (
        net.client_tool(
            "ping", "--host", SERVER_IP, "--ca-file", str(root_ca), "--server-name", NAME
        )["replies"]
        == 3
    )
