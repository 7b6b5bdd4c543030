"""[acme] with server.workers = 2 and Debian's real pebble: the supervisor runs the ACME
manager, every worker answers TLS-ALPN-01 (pebble's validation connection lands on
whichever worker the kernel picks), the certificate is written once and every worker
serves it, and a renewal reaches both.

Topology as in test_acme.py: the daemon (supervisor + 2 workers sharing 443) in
``<prefix>-srv``, pebble and its DNS in ``<prefix>-cli`` with the test clients. Which
worker took a connection: the ``worker`` field of ``sessions``, and each worker's
``challenge_handshakes`` counter in the merged ``cert`` answer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.netns import ROOT, SERVER_IP, USERS, Daemon, Netns, namespaces
from tests.integration.pebble import (
    NAME,
    Pebble,
    acme_section,
    cert_state,
    ctl,
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

SESSIONS = 12  # P(all on one worker) = 2**-11
BLACKHOLE = "10.231.100.98"
BLACKHOLE_NEIGHBOUR = (
    *("ip", "neigh", "replace", BLACKHOLE, "lladdr", "02:00:00:5e:00:98"),
    *("dev", "sti-c", "nud", "permanent"),
)
PROBES = 24


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpak") as n:
        yield n


@pytest.fixture(scope="module")
def pebble(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    with pebble_running(Pebble(net, tmp_path_factory.mktemp("pebble-workers"))) as p:
        yield p


@pytest.fixture(scope="module")
def daemon(
    net: Netns, pebble: Pebble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    d = Daemon(
        net,
        tmp_path_factory.mktemp("acme-workers"),
        workers=2,
        extra_config=acme_section(pebble, retry_interval=600),
    )
    start_without_certificate(d)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def root_ca(pebble: Pebble, daemon: Daemon) -> Path:
    return root_file(pebble, daemon)


def served_by_workers(net: Netns, d: Daemon, root_ca: Path) -> dict[int, set[str]]:
    """Open ``SESSIONS`` tunnels that verify pebble's root and the name: worker -> the
    certificate hashes their sessions bound to (what that worker served)."""
    pool = net.popen(
        net.cli,
        sys.executable,
        "-m",
        "tests.integration.client_tool",
        "pool",
        "--host",
        SERVER_IP,
        "--ca-file",
        str(root_ca),
        "--server-name",
        NAME,
        "--user",
        "alice",
        "--password",
        USERS["alice"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert pool.stdin is not None and pool.stdout is not None
    try:
        pool.stdin.write(f"open {SESSIONS}\n")
        pool.stdin.flush()
        opened = json.loads(pool.stdout.readline())
        assert len(opened["opened"]) == SESSIONS, opened
        rows = json.loads(ctl(d, "--json", "sessions").stdout)["sessions"]
        assert len(rows) == SESSIONS
        by_worker: dict[int, set[str]] = {}
        for r in rows:
            by_worker.setdefault(r["worker"], set()).add(r["cert_hash"])
        return by_worker
    finally:
        pool.stdin.close()
        try:
            pool.wait(30)
        except subprocess.TimeoutExpired:
            pool.kill()
            pool.wait()


def handshakes(ans: dict[str, Any]) -> dict[int, int]:
    return {w["worker"]: w["challenge_handshakes"] for w in ans["workers"]}


# the probe: TLS-ALPN-01 like a validator, from the client namespace; waits for the
# first challenge answer (up to 60 s), then makes PROBES more connections at once
PROBE = f"""
import json, socket, ssl, time
EXT = bytes.fromhex("06082b0601050507011f")  # the OID 1.3.6.1.5.5.7.1.31, DER
def one():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols(["acme-tls/1"])
    try:
        s = c.wrap_socket(socket.create_connection(({SERVER_IP!r}, 443), timeout=5),
                          server_hostname={NAME!r})
    except (OSError, ssl.SSLError):
        return False
    der = s.getpeercert(True)
    s.close()
    return EXT in der
deadline = time.monotonic() + 60
first = False
while not (first := one()) and time.monotonic() < deadline:
    time.sleep(0.05)
answered = sum(one() for _ in range({PROBES})) if first else 0
print(json.dumps({{"first": first, "answered": answered}}))
"""


# ---------------------------------------------------------------------------------------


def test_obtains_certificate_with_two_workers(daemon: Daemon) -> None:
    ans = wait_issued(daemon)
    cert = ans["certificate"]
    assert cert["names"] == [NAME] and "Pebble" in cert["issuer"]
    assert ans["acme"]["renewals"] == 1 and ans["acme"]["last_error"] == ""
    # both workers loaded it; one of them answered pebble's validation
    assert [(w["worker"], w["running"], w["sha256"]) for w in ans["workers"]] == [
        (0, True, cert["sha256"]),
        (1, True, cert["sha256"]),
    ]
    assert sum(handshakes(ans).values()) >= 1
    log = daemon.log_text()
    assert "2 workers listening" in log
    # the challenge went to both workers' routers; the certificate was installed once
    assert log.count(f"ACME: answering the TLS-ALPN-01 challenge for {NAME}") == 2
    assert log.count("ACME: installed the certificate") == 1
    assert f"ClientHello sni={NAME} alpn=acme-tls/1 -> challenge" in log
    assert "PRIVATE KEY" not in log  # the challenge key went over the link, not the log
    text = ctl(daemon, "cert").stdout
    assert "worker 0" in text and "worker 1" in text and cert["sha256"] in text


def test_every_worker_serves_the_new_certificate(daemon: Daemon, net: Netns, root_ca: Path) -> None:
    sha = wait_issued(daemon)["certificate"]["sha256"]
    by_worker = served_by_workers(net, daemon, root_ca)
    assert by_worker == {0: {sha}, 1: {sha}}, by_worker


def test_a_pending_challenge_is_answered_by_every_worker(
    daemon: Daemon, net: Netns, pebble: Pebble
) -> None:
    """pebble is pointed at an address nobody has, so the challenge stays pending for
    seconds; meanwhile validator-like connections land on both workers and each answers
    with the challenge certificate."""
    before = handshakes(wait_issued(daemon))
    pebble.dns_a("10.231.100.99")
    probe = net.popen(net.cli, sys.executable, "-c", PROBE, stdout=subprocess.PIPE)
    try:
        r = ctl(daemon, "cert", "renew", check=False)
        out, _ = probe.communicate(timeout=120)
    finally:
        pebble.dns_a(None)
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    assert r.returncode == 1 and "validation failed" in r.stderr, r.stderr
    res = json.loads(out)
    assert res["first"] is True and res["answered"] >= 2, res
    after = handshakes(cert_state(daemon))
    grew = {w: after[w] - before[w] for w in after}
    assert grew[0] >= 1 and grew[1] >= 1, (before, after)
    assert sum(grew.values()) == res["answered"] + 1  # each probe answered by one worker
    # and once it is over, no worker answers acme-tls/1 any more
    assert cert_state(daemon)["acme"]["pending_challenges"] == []


def test_a_worker_restarted_during_a_pending_challenge_answers_it(
    daemon: Daemon, net: Netns, pebble: Pebble
) -> None:
    """A worker killed while pebble validates: the supervisor hands the pending challenge
    to the new worker process as soon as it is ready, so validator connections the kernel
    gives it are answered with the challenge certificate too."""
    wait_issued(daemon)
    # nobody there, and silently so: a neighbour entry with a MAC nobody has makes pebble's
    # connections wait for its dial timeout. (An address nobody answers ARP for fails in
    # seconds, and at once while the kernel remembers the failure from the test before:
    # the challenge then ended before the new worker was up, on a slow machine.)
    net.run(net.cli, *BLACKHOLE_NEIGHBOUR)
    pebble.dns_a(BLACKHOLE)
    sock = str(daemon.workdir / "control.sock")
    renew = subprocess.Popen(
        [sys.executable, "-m", "sstpd.ctl", "--socket", sock, "cert", "renew"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
    )
    probe = None
    try:
        deadline = time.monotonic() + 60
        while not cert_state(daemon)["acme"]["pending_challenges"]:
            assert time.monotonic() < deadline, "no challenge became pending"
            time.sleep(0.1)
        old = {int(k): int(v) for k, v in daemon.stats()["worker_pids"].items()}
        os.kill(old[1], signal.SIGKILL)
        while True:
            pids = {int(k): int(v) for k, v in daemon.stats()["worker_pids"].items()}
            workers = {w["worker"]: w for w in cert_state(daemon)["workers"]}
            if pids.get(1, old[1]) != old[1] and workers[1]["running"]:
                break
            assert time.monotonic() < deadline, (pids, workers)
            time.sleep(0.1)
        assert cert_state(daemon)["acme"]["pending_challenges"], "validation ended too soon"
        probe = net.popen(net.cli, sys.executable, "-c", PROBE, stdout=subprocess.PIPE)
        out, _ = probe.communicate(timeout=120)
        res = json.loads(out)
        assert res["first"] is True and res["answered"] == PROBES, res
        # the new worker 1 (its counters start at 0) answered some of them
        assert handshakes(cert_state(daemon))[1] >= 1, cert_state(daemon)
    finally:
        pebble.dns_a(None)
        if probe is not None and probe.poll() is None:
            probe.kill()
            probe.wait()
        _, err = renew.communicate(timeout=180)
        net.run(net.cli, "ip", "neigh", "del", BLACKHOLE, "dev", "sti-c", check=False)
    assert renew.returncode == 1 and "validation failed" in err, err
    assert cert_state(daemon)["acme"]["pending_challenges"] == []
    assert "worker 1" in daemon.log_text()


def test_forced_renewal_reaches_both_workers(daemon: Daemon, net: Netns, root_ca: Path) -> None:
    old = wait_issued(daemon)["certificate"]
    r = ctl(daemon, "cert", "renew")
    assert "renewed" in r.stdout
    ans = cert_state(daemon)
    new = ans["certificate"]
    assert new["sha256"] != old["sha256"] and "Pebble" in new["issuer"]
    assert {w["sha256"] for w in ans["workers"]} == {new["sha256"]}
    by_worker = served_by_workers(net, daemon, root_ca)
    assert by_worker == {0: {new["sha256"]}, 1: {new["sha256"]}}, by_worker
    st = json.loads(ctl(daemon, "--json", "stats").stdout)
    assert st["acme_renewals"] == ans["acme"]["renewals"] >= 2
    assert st["certificate_not_after"] == new["not_after"]
